"""TOTP codes (RFC 6238: HMAC-SHA1, 6 digits, 30 s) with pyotp, for the sites' two-factor logins."""

from __future__ import annotations

import base64
import binascii

import pyotp


class _TOTP(pyotp.TOTP):
    # pyotp refuses secrets under 112 bits (NIST's advice for *issuing* them);
    # a secret the site already issued is what it is, e.g. a 16-character one.
    def byte_secret(self) -> bytes:
        secret = self.secret.replace(" ", "").upper()
        return base64.b32decode(secret + "=" * (-len(secret) % 8))


def code(secret: str) -> str:
    """The current code of a base32 secret; ValueError when it is not base32."""
    secret = secret.replace(" ", "").upper()
    try:
        totp = _TOTP(secret)
        totp.byte_secret()
        if not secret:
            raise ValueError("empty secret")
        return totp.now()
    except binascii.Error:
        raise ValueError("not a base32 secret") from None


def code_from_key(key: str) -> str:
    """Nikki: an `otpauth://` URL (a base32 secret plus its parameters), or a plain ASCII key whose
    bytes are the HMAC-SHA1 key itself."""
    if key.startswith("otpauth://"):
        parsed = pyotp.parse_uri(key)
        if not isinstance(parsed, pyotp.TOTP):  # otpauth://hotp/...: counter-based, not time-based
            raise ValueError("not a time-based (totp) otpauth:// URL")
        totp = _TOTP(parsed.secret, digits=parsed.digits, digest=parsed.digest, interval=parsed.interval)
        return totp.now()
    return code(base64.b32encode(key.encode("ascii")).decode())
