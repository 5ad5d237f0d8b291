"""Scrubbing secrets and trimming text before it is stored or shown.

Each pattern is guarded by cheap substring tests, so the common case (a
message with nothing secret in it) costs a few `in` checks (and a `lower()`
when it has a ":" or "=") instead of a regex scan of a 1 KB traceback.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus, urlsplit

from django.conf import settings

MASK = "***"

# scheme://user:password@host -> scheme://***:***@host
_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@'\"]+:[^/\s@'\"]+@")

# api_key=..., "password": "...", Authorization: Bearer ..., X-FreeScout-API-Key: ...
# (_has_keyword spells these out: keep the two in step.)
_KEYWORDS = (
    "key",
    "token",
    "pass",
    "pwd",
    "secret",
    "auth",
    "credential",
)
_KEY_VALUE = re.compile(
    r"""(?ix)
    (
      ["']?
      \b(?:[a-z0-9_-]*api[_-]?key|apikey|[a-z_]*token|password|passwd|pwd|[a-z_]*secret|authorization
         |x-freescout-api-key|credentials?)\b
      ["']?
      \s*[:=]\s*
      ["']?
      (?:bearer\s+|basic\s+|token\s+)?
    )
    [^\s&'",;}<>]+
    """
)


def _encoded_forms(value: str) -> set[str]:
    """`value` as it may come back from a server: itself, URL-encoded (query
    strings, form bodies) and base64 as in an HTTP Basic-auth header (Laposta
    sends the key as the user name: base64 of "key:"), without the padding so
    it also matches inside a longer base64 text."""
    forms = {value, quote(value, safe=""), quote_plus(value, safe=""), quote(value)}
    for plain in (value, f"{value}:", f":{value}"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(plain.encode()).decode().rstrip("="))
    return forms


@lru_cache(maxsize=1)
def _known_secrets() -> tuple[str, ...]:
    # The configured values themselves: whatever shape they appear in
    # (an httpx repr, an echoed request), the value and its encoded forms
    # are removed.
    values: set[str] = set()
    configured = [getattr(settings, name, "") or "" for name in getattr(settings, "SECRET_SETTINGS", ())]
    # The database passwords (from DATABASE_URL) and the Redis broker's password.
    configured += [db.get("PASSWORD") or "" for db in settings.DATABASES.values()]
    redis_url = getattr(settings, "REDIS_URL", "") or ""
    configured.append(urlsplit(redis_url).password or "" if redis_url else "")
    for value in configured:
        if isinstance(value, str) and len(value) >= 6:
            values |= _encoded_forms(value)
    return tuple(sorted(values, key=len, reverse=True))


def clear_secret_cache() -> None:
    """Forget the configured secrets (tests change settings)."""
    _known_secrets.cache_clear()


def redact(text: str) -> str:
    """Return `text` with credentials, tokens and configured secrets masked."""
    if not text:
        return text
    for secret in _known_secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    if _may_hold_url_credentials(text):
        text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + f"{MASK}:{MASK}@", text)
    if _may_hold_key_value(text):
        text = _KEY_VALUE.sub(lambda m: m.group(1) + MASK, text)
    return text


def needs_redaction(text: str) -> bool:
    """Whether `redact(text)` could change `text`: its guards, without the work."""
    for secret in _known_secrets():
        if secret in text:
            return True
    return _may_hold_url_credentials(text) or _may_hold_key_value(text)


def any_needs_redaction(texts: Iterable[str]) -> bool:
    """`needs_redaction` for many texts with one check of them joined.

    Every guard is a substring test, so a text holds what a guard looks for
    only if the joined texts do: a False holds for each text (a guard matched
    across two texts only sends the caller the per-text way).
    """
    return needs_redaction("\n".join(texts))


def _may_hold_url_credentials(text: str) -> bool:
    return "://" in text and "@" in text


def _may_hold_key_value(text: str) -> bool:
    return (":" in text or "=" in text) and _has_keyword(text.lower())


def _has_keyword(low: str) -> bool:
    """Whether lower-cased `low` contains one of _KEYWORDS (spelled out: a third of
    `any(map(low.__contains__, _KEYWORDS))`, and every error's exception line has a ":")."""
    return ("key" in low or "token" in low or "pass" in low or "pwd" in low or "secret" in low
            or "auth" in low or "credential" in low)


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, saying that it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def truncate_traceback(text: str, limit: int) -> str:
    """Keep the end of a traceback (where the exception is) within `limit`."""
    if len(text) <= limit:
        return text
    marker = f"… ({len(text) - limit} characters cut)\n"
    head = limit // 4
    tail = limit - head - len(marker)
    return text[:head] + marker + text[-tail:]
