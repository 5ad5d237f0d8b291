"""The one email rule: what the readers, Laposta and FreeScout take for an address.

The readers check every email cell of an export with it (`parse_email`: a bad
address is an error on that row), and Laposta and FreeScout check every
address again before sending it (the registry may hold addresses stored before
this rule), with the same answer.

The rule, decided for what a Sportlink export holds and what a mailing list
can deliver to: an address Laposta or FreeScout might take but no ordinary
mail server delivers (a quoted local part, an IP address, `localhost`) is
refused here, with its reason, instead of failing later at the destination.
Before this rule the readers took `jan..jansen@x.nl` that Laposta then
refused, and Laposta (Django's validate_email) took `jan@localhost`, which
the readers refused. tests/pipelines/test_emails.py holds a table of
addresses with the answer every caller gives.

- Whitespace around the address is not part of it (a space typed after it,
  an Excel re-save); an empty cell is "no email", never an error.
- One address per cell: `local@domain`, exactly one `@`, no spaces, `;` or `,`
  (`jan@x.nl; piet@x.nl` is two addresses and is refused, not guessed at).
- The part before the `@`: at most 64 characters of the ASCII letters, digits
  and ``! # $ % & ' * + / = ? ^ _ ` { | } ~ -``, with single dots between them
  (not first, not last, never two in a row). Quoted local parts
  (`"jan jansen"@x.nl`) and non-ASCII ones (`jöran@x.nl`, which needs
  SMTPUTF8 all along the way) are refused.
- The part after the `@` is a domain name on the internet: at least two labels
  of letters, digits and hyphens (no hyphen first or last, at most 63 each),
  the last one (the top-level domain) letters only or an `xn--` name. An
  internationalised domain (`jan@café.fr`) is accepted: it is checked in its
  IDNA (punycode) form and kept as written. `localhost`, a name without a dot,
  an IP address (`jan@[192.0.2.1]`) or a trailing dot are refused.
- At most 254 characters in all.
- Case: the registry keeps the address as the export writes it; Laposta,
  FreeScout and the parents are keyed by `normalise_email` (trimmed, lower
  case), so `Jan@X.nl` and `jan@x.nl` are one address.

An invalid address is reported with the reason (`email_problem`), e.g.
"email address 'jan@@x.nl' is not a valid email address (it has more than one @)".
"""

from __future__ import annotations

import re

# RFC 5321/5322 "atext": what may stand between the dots of a local part.
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TOP_LEVEL = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
# The same rule in one expression for the everyday case, an ASCII address: it
# accepts nothing the step-by-step check below refuses (which also names the
# reason), and reads a 50,000-member export several times faster.
_ATOM = _ATEXT.pattern
_VALID_ASCII = re.compile(
    rf"{_ATOM}(?:\.{_ATOM})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9-]{1,59})"
)


def normalise_email(value: str) -> str:
    """The address as a key: trimmed and in lower case ("" for no address)."""
    return (value or "").strip().lower()


def email_problem(value: str) -> str:
    """Why `value` (trimmed) is not a valid address, in plain words; "" when it is one."""
    address = value.strip()
    if (len(address) <= 254 and address.isascii() and _VALID_ASCII.fullmatch(address) is not None
            and address.index("@") <= 64):
        return ""
    return _problem(address)


def _problem(address: str) -> str:
    """The rule step by step, naming what is wrong (the fast path's reference)."""
    if not address:
        return "it is empty"
    if ";" in address or "," in address:
        return "it contains ; or , (one address per field)"
    if any(char.isspace() for char in address):
        return "it contains a space"
    if "@" not in address:
        return "it has no @"
    if address.count("@") > 1:
        return "it has more than one @"
    if len(address) > 254:
        return "it is longer than 254 characters"
    local, domain = address.split("@")
    if not local:
        return "nothing comes before the @"
    if not domain:
        return "nothing comes after the @"
    if len(local) > 64:
        return "the part before the @ is longer than 64 characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "the part before the @ has a dot first, last or twice in a row"
    for atom in local.split("."):
        if not _ATEXT.fullmatch(atom):
            char = next(c for c in atom if not _ATEXT.fullmatch(c))
            return f"{char!r} cannot be in the part before the @"
    if not _is_domain(domain):
        return f"{domain!r} after the @ is not a domain name such as example.nl"
    return ""


def is_valid_email(value: str) -> bool:
    """True when `value` (trimmed) is a valid address by the rule above."""
    return not email_problem(value)


def email_error(value: str, what: str = "email address") -> str:
    """The message for an invalid address ("" when it is valid)."""
    problem = email_problem(value)
    return f"{what} {value.strip()!r} is not a valid email address ({problem})" if problem else ""


def _is_domain(domain: str) -> bool:
    if not all(char.isalnum() or char in "-." for char in domain):
        return False  # also refuses characters IDNA would silently drop (a zero-width space)
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    labels = ascii_domain.split(".")
    return (len(labels) >= 2 and all(_LABEL.fullmatch(label) for label in labels)
            and _TOP_LEVEL.fullmatch(labels[-1]) is not None)
