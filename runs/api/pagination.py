"""Keyset (cursor) pagination for the API's lists: no COUNT(*) over history
tables and stable pages while new runs arrive.

Cursors are plain (see CURSOR_RE and TIME_CURSOR_RE) so that every value of the
pattern openapi.yaml declares is a position the server accepts, including every
cursor it handed out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from django.http import HttpRequest

from runs.api.auth import ApiError
from runs.api.params import EARLIEST, LATEST, MAX_ID

#: Errors list: the id of the last error on the previous page.
CURSOR_RE = re.compile(r"[0-9]{1,19}")
#: Runs and problems lists: "<microseconds since 1970-01-01 UTC>_<id>" of the last row on the previous
#: page (a run's started_at; a problem's last_seen_at, or resolved_at with state=resolved).
TIME_CURSOR_RE = re.compile(r"(-?[0-9]{1,19})_([0-9]{1,19})")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BAD_CURSOR = "Invalid cursor: pass the cursor from the previous page's `next` unchanged."


def time_cursor(at: datetime, pk: int) -> str:
    """A keyset position: microseconds since 1970-01-01 UTC, `_`, the id."""
    delta = at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}_{pk}"


def parse_time_cursor(raw: str) -> tuple[datetime, int]:
    """Any value of the declared shape (TIME_CURSOR_RE) is a position; a moment outside
    Python's datetimes is clamped to the first or last one, which selects the same rows."""
    match = TIME_CURSOR_RE.fullmatch(raw)
    if match is None:
        raise ApiError(400, BAD_CURSOR)
    micros, pk = int(match.group(1)), int(match.group(2))
    try:
        at = EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        at = EARLIEST if micros < 0 else LATEST
    return at, min(pk, MAX_ID)


def parse_id_cursor(raw: str) -> int:
    if not CURSOR_RE.fullmatch(raw):
        raise ApiError(400, BAD_CURSOR)
    return min(int(raw), MAX_ID)


def after_time_cursor(qs: QuerySet, field: str, raw: str) -> QuerySet:
    """Keyset on (field, id) descending: strictly after the last row of the previous page."""
    at, pk = parse_time_cursor(raw)
    return qs.filter(Q(**{f"{field}__lt": at}) | Q(**{field: at, "pk__lt": pk}))


def keyset_page(qs: QuerySet, limit: int) -> tuple[list, bool]:
    """The first `limit` rows and whether there are more (one row more is read, never counted)."""
    page = list(qs[: limit + 1])
    return page[:limit], len(page) > limit


def next_url(request: HttpRequest, cursor: str) -> str:
    params = request.GET.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{urlencode(sorted(params.items()))}")
