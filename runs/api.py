"""The read-only JSON API (plus one action: start a run), described in runs/openapi.yaml.

Authentication: a staff session (the dashboard's login) or a per-user token
sent as `Authorization: Bearer <token>` (created, given an optional expiry and
revoked in the admin, stored hashed; the token's user must be an active staff
member). A session POST is CSRF-checked; a token POST is not (a browser never
sends the header on its own, which is what CSRF protection is about).
Authorization is Django's model permissions, like the admin: `runs.view_run`
for everything, `runs.view_runerror` for a run's errors and for the open
problems (record history: a problem carries a record's latest error message),
`runs.trigger_run` to start a run (for every record, or `{"only": [...]}`).

The contract: every answer under /api/ is JSON, errors as {"error": "..."}
(unknown paths and ids, undeclared methods with `Allow`, and unexpected
exceptions included). Every parameter is checked exactly as openapi.yaml
declares it (patterns, formats, ranges, enums), so what the spec accepts the
server accepts and what it rejects the server answers with 400 and a message
that names the parameter. tests/runs/test_api_contract.py holds both to it.

Lists use keyset (cursor) pagination: no COUNT(*) over history tables and
stable pages while new runs arrive. Cursors are plain (see CURSOR_RE and
TIME_CURSOR_RE) so that every value of the declared pattern is a position the
server accepts, including every cursor it handed out.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import wraps
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from runs.models import ApiToken, RecordProblem, Run, RunError, RunStatus, RunStep
from runs.pipeline import UnknownPipeline, all_pipelines, get_pipeline

logger = logging.getLogger("runs.api")

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.yaml"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: Ids are 64-bit (BigAutoField); a bigger number names nothing and must not reach the database.
MAX_ID = 2**63 - 1
#: The patterns below are the ones openapi.yaml declares; keep them in step.
PIPELINE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
INTEGER_RE = re.compile(r"[0-9]{1,19}")
#: Errors list: the id of the last error on the previous page.
CURSOR_RE = re.compile(r"[0-9]{1,19}")
#: Runs and problems lists: "<microseconds since 1970-01-01 UTC>_<id>" of the last row on the previous
#: page (a run's started_at; a problem's last_seen_at, or resolved_at with state=resolved).
TIME_CURSOR_RE = re.compile(r"(-?[0-9]{1,19})_([0-9]{1,19})")
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
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
#: last_used_at is written at most this often per token (a GET should not write per request).
TOUCH_EVERY = timedelta(minutes=1)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="syncsite"'
    return response


def authenticate(request: HttpRequest):
    """Return (user, via_token) or raise ApiError(401)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise ApiError(401, "Malformed Authorization header; send 'Authorization: Bearer <token>'.")
        token = ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash(raw)).first()
        if token is None:
            raise ApiError(401, "Invalid token.")
        if token.revoked_at is not None:
            raise ApiError(401, "This token was revoked.")
        now = timezone.now()
        if token.is_expired(now):
            raise ApiError(401, "This token has expired; ask an administrator for a new one.")
        if not (token.user.is_active and token.user.is_staff):
            raise ApiError(401, "The token's user is not an active staff member.")
        if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return user, False
    raise ApiError(401, "Authentication required: a staff session or 'Authorization: Bearer <token>'.")


def _not_called(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the CSRF check never calls the view or the next middleware")


def _csrf_failure(request: HttpRequest) -> str | None:
    check = CsrfViewMiddleware(_not_called)
    check.process_request(request)
    response = check.process_view(request, _not_called, (), {})
    return None if response is None else "CSRF check failed: send the csrftoken cookie and X-CSRFToken header."


def api_view(*, methods: tuple[str, ...] = ("GET",), permissions: tuple[str, ...] = ("runs.view_run",)) -> Callable:
    """Method check (405 with Allow), authentication (401), CSRF for sessions and
    the model permissions (403), then the view; every outcome is JSON."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt  # checked below for sessions only
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method not in methods:
                method = str(request.method)[:20]
                response = _error(405, f"Method {method} not allowed here; use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                user, via_token = authenticate(request)
                if not via_token and request.method not in SAFE_METHODS:
                    failure = _csrf_failure(request)
                    if failure:
                        raise ApiError(403, failure)
                missing = [p for p in permissions if not user.has_perm(p)]
                if missing:
                    raise ApiError(403, f"Permission {', '.join(missing)} required; an administrator can grant it.")
                request.api_user = user  # type: ignore[attr-defined]  # for the view: who the token belongs to
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return _error(exc.status, exc.message)
            except MultiPartParserError:  # read by the CSRF check of a session POST
                return _error(400, "The multipart body could not be read; send JSON or form fields.")
            except Exception:
                # Logged with the traceback for the operator; the client gets the
                # documented JSON shape and nothing about the internals.
                logger.exception("API error: %s %s", request.method, request.path)
                return _error(500, "Internal error; it was logged for the administrator.")

        return wrapper

    return decorate


@csrf_exempt
def not_found(request: HttpRequest, path: str = ""):
    """Any other path under /api/: a JSON 404 (never Django's HTML page), for every method."""
    message = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            message += f" Did you mean {request.path}/ ?"
    return _error(404, message + " The endpoints are listed in /api/openapi.yaml.")


# --- serialisation ----------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_json(run: Run, request: HttpRequest) -> dict:
    return {
        "id": run.pk,
        "pipeline": run.pipeline,
        "parent_id": run.parent_id,
        "mode": run.mode,
        "status": run.status,
        "dry_run": run.dry_run,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_ms": run.duration_ms,
        "created": run.created,
        "updated": run.updated,
        "skipped": run.skipped,
        "failed": run.failed,
        "error_count": run.error_count,
        "message": run.message,
        "only": run.only or None,
        "url": settings.SITE_URL + run.get_absolute_url(),
        "api_url": request.build_absolute_uri(reverse("api:run", args=[run.pk])),
    }


def step_json(step: RunStep) -> dict:
    return {
        "id": step.pk,
        "position": step.position,
        "name": step.name,
        "status": step.status,
        "critical": step.critical,
        "started_at": _iso(step.started_at),
        "finished_at": _iso(step.finished_at),
        "duration_ms": step.duration_ms,
        "read": step.read,
        "created": step.created,
        "updated": step.updated,
        "skipped": step.skipped,
        "failed": step.failed,
        "total": step.total,
        "reason": step.reason,
    }


def error_json(error: RunError) -> dict:
    return {
        "id": error.pk,
        "step_id": error.step_id,
        "step_name": error.step_name,
        "identifier": error.identifier,
        "identifier_kind": error.identifier_kind,
        "message": error.message,
        "traceback": error.traceback,
        "created_at": _iso(error.created_at),
    }


# --- parameters and cursors ------------------------------------------------------


def _param(request: HttpRequest, name: str) -> str | None:
    """One query parameter: None when absent, 400 when given more than once."""
    values = request.GET.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"{name} was given {len(values)} times; give it once.")
    return values[0]


def _integer(name: str, raw: str, *, minimum: int, maximum: int) -> int:
    if not INTEGER_RE.fullmatch(raw):
        raise ApiError(400, f"{name} must be a whole number from {minimum} to {maximum}, got {raw[:40]!r}.")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ApiError(400, f"{name} must be a whole number from {minimum} to {maximum}, got {raw[:40]!r}.")
    return value


def _pipeline_name(raw: str) -> str:
    if not PIPELINE_RE.fullmatch(raw):
        raise ApiError(400, "pipeline must be a pipeline name: up to 64 letters, digits, '.', '_' or '-'.")
    return raw


def _limit(request: HttpRequest) -> int:
    raw = _param(request, "limit")
    if raw is None:
        return DEFAULT_LIMIT
    return _integer("limit", raw, minimum=1, maximum=MAX_LIMIT)


def _clamped(build: Callable[[], datetime], *, low: bool) -> datetime:
    """A moment that may fall outside Python's datetimes (year 0, 9999 with an
    offset): clamped to the first or last representable one, which selects the
    same runs."""
    try:
        return build().astimezone(UTC)
    except (OverflowError, ValueError):
        return EARLIEST if low else LATEST


def _parse_since(raw: str) -> datetime:
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


def _time_cursor(at: datetime, pk: int) -> str:
    """A keyset position: microseconds since 1970-01-01 UTC, `_`, the id."""
    delta = at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}_{pk}"


def _runs_cursor(run: Run) -> str:
    return _time_cursor(run.started_at, run.pk)


def _parse_time_cursor(raw: str) -> tuple[datetime, int]:
    """Any value of the declared shape (TIME_CURSOR_RE) is a position; a moment outside
    Python's datetimes is clamped to the first or last one, which selects the same rows."""
    match = TIME_CURSOR_RE.fullmatch(raw)
    if match is None:
        raise ApiError(400, "Invalid cursor: pass the cursor from the previous page's `next` unchanged.")
    micros, pk = int(match.group(1)), int(match.group(2))
    try:
        at = EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        at = EARLIEST if micros < 0 else LATEST
    return at, min(pk, MAX_ID)


def _parse_id_cursor(raw: str) -> int:
    if not CURSOR_RE.fullmatch(raw):
        raise ApiError(400, "Invalid cursor: pass the cursor from the previous page's `next` unchanged.")
    return min(int(raw), MAX_ID)


def _next_url(request: HttpRequest, cursor: str) -> str:
    params = request.GET.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{urlencode(sorted(params.items()))}")


# --- views ------------------------------------------------------------------------


@api_view()
def pipelines(request):
    from runs.selectors import latest_runs
    from runs.states import pipeline_states

    registered = all_pipelines()
    now = timezone.now()
    current = pipeline_states(now=now)
    schedules = {name: s.schedule for name, s in current.items()}
    states = {name: s.state for name, s in current.items()}
    last = latest_runs([p.name for p in registered])
    results = []
    for pipeline in registered:
        schedule = schedules.get(pipeline.name)
        run = last.get(pipeline.name)
        results.append(
            {
                "name": pipeline.name,
                "description": pipeline.description,
                "schedule": getattr(schedule, "cron", None) or pipeline.schedule,
                "enabled": bool(getattr(schedule, "enabled", pipeline.schedule is not None)),
                "next_run": _iso(getattr(schedule, "next_run", None)),
                "overdue": bool(getattr(schedule, "overdue", False)),
                "state": states.get(pipeline.name, "never_run"),
                "last_run": run_json(run, request) if run is not None else None,
            }
        )
    return JsonResponse({"results": results})


@api_view()
def runs(request):
    qs = Run.objects.order_by("-started_at", "-id")
    if (pipeline := _param(request, "pipeline")) is not None:
        qs = qs.filter(pipeline=_pipeline_name(pipeline))
    if (status := _param(request, "status")) is not None:
        if status not in RunStatus.values:
            raise ApiError(400, f"status must be one of: {', '.join(RunStatus.values)}.")
        qs = qs.filter(status=status)
    if (since := _param(request, "since")) is not None:
        qs = qs.filter(started_at__gte=_parse_since(since))
    if (cursor := _param(request, "cursor")) is not None:
        started_at, pk = _parse_time_cursor(cursor)
        # Keyset: strictly after the last row of the previous page.
        qs = qs.filter(Q(started_at__lt=started_at) | Q(started_at=started_at, pk__lt=pk))
    limit = _limit(request)
    page = list(qs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_url = _next_url(request, _runs_cursor(page[-1])) if more else None
    return JsonResponse({"results": [run_json(r, request) for r in page], "next": next_url})


def _get_run(pk: int) -> Run:
    # The URL takes any digits; a number past 64 bits names no run (and would overflow the query).
    run = Run.objects.filter(pk=pk).first() if pk <= MAX_ID else None
    if run is None:
        raise ApiError(404, f"No run #{pk}.")
    return run


@api_view()
def run_detail(request, pk: int):
    run = _get_run(pk)
    data = run_json(run, request)
    data["summary"] = run.summary
    data["steps"] = [step_json(s) for s in run.steps.order_by("position")]
    data["children"] = list(run.children.order_by("started_at", "id").values_list("id", flat=True)[:100])
    data["errors_url"] = request.build_absolute_uri(reverse("api:run-errors", args=[run.pk]))
    return JsonResponse(data)


@api_view(permissions=("runs.view_run", "runs.view_runerror"))
def run_errors(request, pk: int):
    run = _get_run(pk)
    # runerror_run_step index narrows to the run; a run's errors are few enough to sort.
    # A parent run (`all`) counts its children's errors, so it lists them too.
    children = list(Run.objects.filter(parent_id=run.pk).values_list("id", flat=True)[:100])
    qs = RunError.objects.filter(run_id__in=[run.pk, *children]).order_by("id")
    if (step := _param(request, "step")) is not None:
        qs = qs.filter(step_id=_integer("step", step, minimum=1, maximum=MAX_ID))
    if (cursor := _param(request, "cursor")) is not None:
        qs = qs.filter(pk__gt=_parse_id_cursor(cursor))
    limit = _limit(request)
    page = list(qs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_url = _next_url(request, str(page[-1].pk)) if more else None
    return JsonResponse(
        {"run_id": run.pk, "error_count": run.error_count, "results": [error_json(e) for e in page],
         "next": next_url}
    )


#: Form bodies. openapi.yaml declares the urlencoded one; a multipart form is read the same way
#: (what HTTP clients such as Django's test client send by default) but is not declared, because a
#: fuzzer's malformed multipart can be read as no fields at all. Django's request.POST reads
#: both; once the CSRF check of a session POST has read one, request.body can no longer be read.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
BODY_EXAMPLE = '{"only": ["ABC1234"]}'


def _identifier(name: str, value: object) -> str:
    """One identifier exactly as openapi.yaml's Identifier declares it."""
    if not isinstance(value, str) or not 1 <= len(value) <= IDENTIFIER_MAX or not IDENTIFIER_RE.fullmatch(value):
        raise ApiError(400, f"{name} must be an identifier: 1 to {IDENTIFIER_MAX} characters, "
                            "at least one of them not a space, no NUL.")
    return value


def _only_from_body(request: HttpRequest) -> list[str] | None:
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
        _identifier("Each identifier in only", value)
    try:
        return check_only(values)  # trimmed, repeats dropped
    except ValueError as exc:  # pragma: no cover - the checks above are stricter
        raise ApiError(400, str(exc)) from None


@api_view(methods=("POST",), permissions=("runs.trigger_run",))
def trigger(request, name: str):
    from runs.services import trigger_run

    try:
        if not PIPELINE_RE.fullmatch(name):
            raise UnknownPipeline(name)
        get_pipeline(name)
    except UnknownPipeline:
        raise ApiError(404, f"No pipeline named {name[:64]!r}; GET /api/pipelines/ lists them.") from None
    only = _only_from_body(request)
    result = trigger_run(name, user=request.api_user, mode="api", only=only)
    running = getattr(result, "running_run", None)
    body = {
        "queued": bool(result.queued),
        "message": result.message,
        "task_id": result.task_id or None,
        "running_run_id": getattr(running, "pk", running),
    }
    return JsonResponse(body, status=202 if result.queued else 409)


def _record_url(identifier: str) -> str | None:
    try:
        return settings.SITE_URL + reverse("runs:record", args=[identifier])
    except NoReverseMatch:  # e.g. a line break from a quoted CSV cell: no URL can carry it
        return None


def problem_json(problem: RecordProblem) -> dict:
    return {
        "id": problem.pk,
        "pipeline": problem.pipeline,
        "identifier": problem.identifier,
        "identifier_kind": problem.identifier_kind,
        "step_name": problem.step_name,
        "message": problem.message,
        "first_seen_at": _iso(problem.first_seen_at),
        "last_seen_at": _iso(problem.last_seen_at),
        "failing_runs": problem.failing_runs,
        "first_run_id": problem.first_run_id,
        "last_run_id": problem.last_run_id,
        "resolved_at": _iso(problem.resolved_at),
        "resolution": problem.resolution or None,
        "resolved_run_id": problem.resolved_run_id,
        "record_url": _record_url(problem.identifier),
    }


# A problem carries the latest error message of a record: the same data as a run's errors.
@api_view(permissions=("runs.view_run", "runs.view_runerror"))
def problems(request):
    """Open problems, newest first, or ?state=resolved; keyset-paginated like runs."""
    from runs.selectors import MIN_PREFIX, identifier_prefix_q, problems_queryset

    state = _param(request, "state")
    if state is None:
        state = "open"
    elif state not in PROBLEM_STATES:
        raise ApiError(400, f"state must be one of: {', '.join(PROBLEM_STATES)}.")
    resolved = state == "resolved"
    qs = problems_queryset(resolved=resolved)
    if (pipeline := _param(request, "pipeline")) is not None:
        qs = qs.filter(pipeline=_pipeline_name(pipeline))
    match = _param(request, "match")
    if match is not None and match not in MATCHES:
        raise ApiError(400, f"match must be one of: {', '.join(MATCHES)}.")
    if (identifier := _param(request, "identifier")) is not None:
        _identifier("identifier", identifier)
        if match == "prefix" and len(identifier) >= MIN_PREFIX:
            qs = qs.filter(identifier_prefix_q(identifier))
        else:
            qs = qs.filter(identifier=identifier)
    order_field = "resolved_at" if resolved else "last_seen_at"
    if (cursor := _param(request, "cursor")) is not None:
        at, pk = _parse_time_cursor(cursor)
        # Keyset: strictly after the last row of the previous page.
        qs = qs.filter(Q(**{f"{order_field}__lt": at}) | Q(**{order_field: at, "pk__lt": pk}))
    limit = _limit(request)
    page = list(qs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_url = None
    if more:
        last = page[-1]
        next_url = _next_url(request, _time_cursor(getattr(last, order_field), last.pk))
    return JsonResponse({"results": [problem_json(p) for p in page], "next": next_url})


def openapi(request):
    """The OpenAPI description (public: it describes, it does not disclose)."""
    return FileResponse(OPENAPI_FILE.open("rb"), content_type="application/yaml")
