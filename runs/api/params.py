"""The API's parameters, checked exactly as runs/openapi.yaml declares them
(patterns, formats, ranges, enums): what the spec accepts the server accepts,
and what it rejects is a 400 whose message names the parameter."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime

from django.http import HttpRequest
from django.utils import timezone

from runs.api.auth import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: Ids are 64-bit (BigAutoField); a bigger number names nothing and must not reach the database.
MAX_ID = 2**63 - 1
#: The patterns below are the ones openapi.yaml declares; keep them in step.
PIPELINE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
INTEGER_RE = re.compile(r"[0-9]{1,19}")
#: A record's identifier (openapi.yaml's Identifier): at least one character not a space, no NUL.
IDENTIFIER_RE = re.compile(r"[^\x00]*[^\s\x00][^\x00]*", re.S)
IDENTIFIER_MAX = 255
PROBLEM_STATES = ("open", "resolved")
MATCHES = ("exact", "prefix")
#: RFC 3339 full-date and date-time (what `format: date` / `date-time` mean in the spec; `t`/`z` may be lower case).
DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
DATE_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)

#: Form bodies. openapi.yaml declares the urlencoded one; a multipart form is read the same way
#: (what HTTP clients such as Django's test client send by default) but is not declared, because a
#: fuzzer's malformed multipart can be read as no fields at all. Django's request.POST reads
#: both; once the CSRF check of a session POST has read one, request.body can no longer be read.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
BODY_EXAMPLE = '{"only": ["ABC1234"]}'


def param(request: HttpRequest, name: str) -> str | None:
    """One query parameter: None when absent, 400 when given more than once."""
    values = request.GET.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"{name} was given {len(values)} times; give it once.")
    return values[0]


def integer(name: str, raw: str, *, minimum: int, maximum: int) -> int:
    if not INTEGER_RE.fullmatch(raw):
        raise ApiError(400, f"{name} must be a whole number from {minimum} to {maximum}, got {raw[:40]!r}.")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ApiError(400, f"{name} must be a whole number from {minimum} to {maximum}, got {raw[:40]!r}.")
    return value


def pipeline_name(raw: str) -> str:
    if not PIPELINE_RE.fullmatch(raw):
        raise ApiError(400, "pipeline must be a pipeline name: up to 64 letters, digits, '.', '_' or '-'.")
    return raw


def limit(request: HttpRequest) -> int:
    raw = param(request, "limit")
    if raw is None:
        return DEFAULT_LIMIT
    return integer("limit", raw, minimum=1, maximum=MAX_LIMIT)


def choice(request: HttpRequest, name: str, choices) -> str | None:
    """An enum parameter: None when absent, else one of `choices` (400 otherwise)."""
    value = param(request, name)
    if value is not None and value not in choices:
        raise ApiError(400, f"{name} must be one of: {', '.join(choices)}.")
    return value


def identifier(name: str, value: object) -> str:
    """One identifier exactly as openapi.yaml's Identifier declares it."""
    if not isinstance(value, str) or not 1 <= len(value) <= IDENTIFIER_MAX or not IDENTIFIER_RE.fullmatch(value):
        raise ApiError(400, f"{name} must be an identifier: 1 to {IDENTIFIER_MAX} characters, "
                            "at least one of them not a space, no NUL.")
    return value


# --- since: RFC 3339 dates and date-times ---------------------------------------------


def _clamped(build: Callable[[], datetime], *, low: bool) -> datetime:
    """A moment that may fall outside Python's datetimes (year 0, 9999 with an
    offset): clamped to the first or last representable one, which selects the
    same runs."""
    try:
        return build().astimezone(UTC)
    except (OverflowError, ValueError):
        return EARLIEST if low else LATEST


def parse_since(raw: str) -> datetime:
    """RFC 3339 full-date (midnight in the site's time zone) or date-time, exactly
    what openapi.yaml's `format: date` / `date-time` accept."""
    message = ("since must be an RFC 3339 date or date-time, e.g. 2025-01-31 or 2025-01-31T08:00:00Z, "
               f"got {raw[:40]!r}.")
    if match := DATE_RE.fullmatch(raw):
        year, month, day = (int(g) for g in match.groups())
        if year == 0:
            _check_day(0, month, day, message)
            return EARLIEST
        day_ = _day(year, month, day, message)
        return _clamped(lambda: timezone.make_aware(datetime(day_.year, day_.month, day_.day)), low=year < 5000)
    match = DATE_TIME_RE.fullmatch(raw)
    if match is None:
        raise ApiError(400, message)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, sign, off_h, off_m = match.group(7), match.group(9), match.group(10), match.group(11)
    offset_min = 0
    if sign:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ApiError(400, message)
        offset_min = (int(off_h) * 60 + int(off_m)) * (-1 if sign == "-" else 1)
    # A leap second (hh:mm:60) exists only as the last second of a UTC day.
    if hour > 23 or minute > 59 or second > 60 or (second == 60 and (hour * 60 + minute - offset_min) % 1440 != 1439):
        raise ApiError(400, message)
    if year == 0:
        _check_day(0, month, day, message)
        return EARLIEST
    day_ = _day(year, month, day, message)
    # A leap second is taken as the last instant of its minute.
    micro = 999_999 if second == 60 else int((fraction or ".0")[1:7].ljust(6, "0"))
    naive = datetime(day_.year, day_.month, day_.day, hour, minute, min(second, 59), micro)
    tz = timezone.get_fixed_timezone(offset_min)
    return _clamped(lambda: naive.replace(tzinfo=tz), low=year < 5000)


def _day(year: int, month: int, day: int, message: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise ApiError(400, message) from None


def _check_day(year: int, month: int, day: int, message: str) -> None:
    # Year 0 (1 BC) is a leap year in RFC 3339's proleptic calendar; 2000 has the same month lengths.
    _day(2000, month, day, message)


# --- the trigger's body ---------------------------------------------------------------


def only_from_body(request: HttpRequest) -> list[str] | None:
    """The trigger's optional scope (record history), as openapi.yaml declares it:
    a JSON body {"only": [...]} (an empty body or {} is a full run), or repeated
    `only` form fields. Anything else with a body is refused, so a scope is never
    silently dropped (which would run every record)."""
    from runs.services import ONLY_MAX, check_only

    if request.content_type in FORM_TYPES:
        # The form was parsed already (the CSRF check reads it): use POST, not the body.
        values = request.POST.getlist("only")
        if not values:
            return None
    else:
        if not request.body.strip():
            return None
        if request.content_type != "application/json":
            raise ApiError(400, f"Send the scope as JSON (Content-Type: application/json), e.g. {BODY_EXAMPLE}, "
                                "or as `only` form fields, or send no body.")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise ApiError(400, f"The body must be JSON, e.g. {BODY_EXAMPLE}, or empty.") from None
        if not isinstance(body, dict) or set(body) - {"only"}:
            raise ApiError(400, 'The body may only hold "only": a list of identifiers.')
        if "only" not in body:
            return None
        values = body["only"]
        if not isinstance(values, list) or not values:
            raise ApiError(400, f"only must be a list of 1 to {ONLY_MAX} identifiers, e.g. {BODY_EXAMPLE}.")
    if len(values) > ONLY_MAX:
        raise ApiError(400, f"only names {len(values)} identifiers; at most {ONLY_MAX} per run.")
    for value in values:
        identifier("Each identifier in only", value)
    try:
        return check_only(values)  # trimmed, repeats dropped
    except ValueError as exc:  # pragma: no cover - the checks above are stricter
        raise ApiError(400, str(exc)) from None
