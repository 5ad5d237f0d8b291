"""The values of an export's cells: dates, amounts, emails, relatiecodes, names.

Every parser returns the value or raises BadValue with a message a volunteer
can act on (it becomes a RowError naming the file and row). `record_checker`
checks a converted record against the registry fields it goes to (length,
choices, digits) before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import TYPE_CHECKING, Any

from pipelines.emails import email_error

if TYPE_CHECKING:
    from pipelines.readers.files import Table


class BadValue(ValueError):
    pass



_DATE_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T].*)?$")
_DATE_NL = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?: .*)?$")
# Letters, digits and hyphens, 1 to 20 (Sportlink's `QX-4821`, a club's own codes), not only hyphens.
KNVB_ID_PATTERN = re.compile(r"^(?=.*[A-Z0-9])[A-Z0-9-]{1,20}$")


def parse_date(value: str, what: str = "date") -> date | None:
    if not value:
        return None
    if len(value) == 10 and value[4] == "-":
        try:
            return date.fromisoformat(value)  # the common case, in C
        except ValueError:
            pass
    match = _DATE_ISO.match(value)
    try:
        if match:
            return date(int(match[1]), int(match[2]), int(match[3]))
        match = _DATE_NL.match(value)
        if match:
            return date(int(match[3]), int(match[2]), int(match[1]))
    except ValueError:
        pass
    raise BadValue(f"{what} {value!r} is not a date (expected YYYY-MM-DD)")


def parse_email(value: str, what: str = "email address") -> str:
    """The address trimmed ("" for none); BadValue when it breaks the one email rule (pipelines.emails)."""
    value = value.strip()
    if value:
        error = email_error(value, what)
        if error:
            raise BadValue(error)
    return value


def parse_knvb_id(value: str) -> str:
    code = value.strip().upper()
    if not code:
        raise BadValue("the relatiecode (Rel. code) is missing")
    if not KNVB_ID_PATTERN.match(code):
        raise BadValue(f"relatiecode {value.strip()!r} is not a valid relatiecode (letters, digits and hyphens, "
                       "1 to 20 characters)")
    return code


def parse_gender(value: str) -> str:
    value = value.strip().casefold()
    if value in {"man", "male", "m", "jongen"}:
        return "M"
    if value in {"vrouw", "female", "v", "f", "meisje"}:
        return "V"
    return ""


def parse_amount(value: str, what: str = "amount") -> Decimal:
    """`€ 1.234,56` -> 1234.56; also `-€ 12,50`, `(12,50)`, `1234.56`."""
    raw = value
    text = value.replace("€", "").replace("EUR", "").replace("\u00a0", "").replace(" ", "").strip()
    if not text:
        return Decimal("0")
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1]
    if text.startswith("-"):
        negative, text = not negative, text[1:]
    elif text.endswith("-"):
        negative, text = not negative, text[:-1]
    if text.startswith("€"):
        text = text[1:]
    decimal_comma = text.rfind(",") > text.rfind(".")
    if "," in text and "." in text:
        text = text.replace(".", "").replace(",", ".") if decimal_comma else text.replace(",", "")
    elif "," in text:
        text = text.replace(",", ".") if text.count(",") == 1 else text.replace(",", "")
    elif text.count(".") > 1 or (text.count(".") == 1 and len(text.rsplit(".", 1)[1]) == 3):
        text = text.replace(".", "")  # Dutch thousands: `1.234`
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadValue(f"{what} {raw!r} is not an amount") from None
    if not amount.is_finite():
        raise BadValue(f"{what} {raw!r} is not an amount")
    return -amount if negative else amount


_NAAM = re.compile(r"^(?P<last>[^,]+),\s*(?P<initials>(?:[^\W\d_]{1,3}\.\s*)*)(?:\((?P<first>[^)]*)\)\s*)?"
                   r"(?P<infix>.*)$")


def split_naam(value: str) -> tuple[str, str, str, str]:
    """`Achternaam, V. (Roepnaam) tussenvoegsel` -> (first, infix, last, initials)."""
    match = _NAAM.match(value.strip())
    if not match:
        return "", "", value.strip(), ""
    return ((match["first"] or "").strip(), match["infix"].strip(), match["last"].strip(),
            " ".join(match["initials"].split()))


def multi(value: str) -> list[str]:
    """A comma-separated cell (`JO11-1,  JO11-2`) as a list."""
    if "," not in value:
        return [value] if value else []
    return [part.strip() for part in value.split(",") if part.strip()]



# --- fitting the registry ----------------------------------------------------------

# Record attribute -> (model, field, column key for the message). The limits
# are read from the model fields, so a changed max_length is checked at once.
FITS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "MemberRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("first_name", "Member", "first_name", "first_name"),
        ("infix", "Member", "infix", "infix"), ("last_name", "Member", "last_name", "last_name"),
        ("initials", "Member", "initials", "initials"), ("email", "Member", "email", "email"),
        ("gender", "Member", "gender", "gender"), ("member_type", "Member", "member_type", "member_type"),
        ("age_category", "Member", "age_category", "age_category"), ("local_teams", "Member", "local_teams", "teams"),
        ("phone", "Member", "phone", "phone"), ("mobile", "Member", "mobile", "mobile"),
        ("street", "Member", "street", "street"), ("house_number", "Member", "house_number", "house_number"),
        ("postcode", "Member", "postcode", "postcode"), ("city", "Member", "city", "city"),
    ),
    "ParentRecord": (
        ("email", "Parent", "email", "parent_email"), ("name", "Parent", "name", "parent_name"),
        ("phone", "Parent", "phone", "parent_phone"),
    ),
    "TeamRoleRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("team_id", "Team", "sportlink_id", "team_id"),
        ("team_name", "Team", "name", "team_name"), ("team_kind", "Team", "kind", "team_kind"),
        ("role", "TeamMembership", "role", "role"),
    ),
    "CommissieRoleRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("commissie_name", "Commissie", "name", "commissie_name"),
        ("commissie_id", "Commissie", "sportlink_id", "commissie_id"),
        ("role", "CommissieMembership", "role", "role"),
    ),
    "DisciplineRecord": (
        ("dossier_id", "DisciplineCase", "dossier_id", "dossier_id"), ("knvb_id", "Member", "knvb_id", "knvb_id"),
        ("match", "DisciplineCase", "match", "match"), ("team_name", "DisciplineCase", "team_name", "team_name"),
        ("sanction", "DisciplineCase", "sanction", "sanction"), ("fee", "DisciplineCase", "fee", "fee"),
        ("status", "DisciplineCase", "status", "status"),
    ),
    "ContributionRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("nikki_id", "Contribution", "nikki_id", "nikki_id"),
        ("total", "Contribution", "total", "total"), ("balance", "Contribution", "balance", "balance"),
        ("status", "Contribution", "status", "status"),
    ),
}


@cache
def _limits(record_type: str) -> tuple[tuple[str, str, int | None, frozenset | None, tuple | None], ...]:
    """(attribute, column key, max_length, choices, (max_digits, decimal_places)) per checked attribute."""
    from django.apps import apps

    out = []
    for attribute, model, name, column in FITS.get(record_type, ()):
        model_field = apps.get_model("pipelines", model)._meta.get_field(name)
        choices = frozenset(value for value, _label in model_field.flatchoices) if model_field.choices else None
        digits = (model_field.max_digits, model_field.decimal_places) \
            if getattr(model_field, "max_digits", None) else None
        out.append((attribute, column, getattr(model_field, "max_length", None), choices, digits))
    return tuple(out)


def record_checker(table: Table) -> Callable[[object], None]:
    """A function raising BadValue when a record does not fit its registry fields (see FITS).

    Outside a set-up Django (bench/sync.py's raw floor reads the export in a
    Django-free process) there are no fields to check against and nothing is
    written, so it checks nothing.
    """
    from django.apps import apps

    if not apps.ready:
        return lambda record: None
    cache: dict[type, tuple] = {}

    def check(record: Any) -> None:  # a MemberRecord, ParentRecord, ... (the attributes are in FITS)
        kind = type(record)
        limits = cache.get(kind)
        if limits is None:
            limits = cache[kind] = _limits(kind.__name__)
        for attribute, column, max_length, choices, digits in limits:
            value: Any = ", ".join(record.teams) if attribute == "local_teams" else getattr(record, attribute)
            if value is None or value == "":
                continue
            if max_length is not None and len(value) > max_length:
                raise BadValue(f"{_heading(table, column)} is {len(value):,} characters long; the registry keeps at "
                               f"most {max_length}. Shorten it in the export's source")
            if choices is not None and value not in choices:
                raise BadValue(f"{_heading(table, column)} {value!r} is not one of {', '.join(map(repr, choices))}")
            if digits is not None:
                _check_digits(value, digits, _heading(table, column))

    return check


def _heading(table: Table, column: str) -> str:
    if column.startswith("parent_"):
        return f"{column.split('_')[1]} of a parent"
    return repr(table.heading(column))


def _check_digits(value: Decimal, digits: tuple[int, int], heading: str) -> None:
    max_digits, places = digits
    if abs(value) >= Decimal(10) ** (max_digits - places):
        raise BadValue(f"{heading} {value} is too large (at most {max_digits - places} digits before the "
                       "decimal point)")
    # Stored with `places` decimals: more would be rounded without anyone noticing.
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise BadValue(f"{heading} {value} has more than {places} decimals")
