"""The read-only JSON API (plus one action: start a run), described in runs/openapi.yaml.

Authentication: a staff session (the dashboard's login) or a per-user token
sent as `Authorization: Bearer <token>` (created and revoked in the admin,
stored hashed; the token's user must be an active staff member). A session
POST is CSRF-checked; a token POST is not (a browser never sends the header
on its own, which is what CSRF protection is about).

Lists use keyset (cursor) pagination: no COUNT(*) over history tables and
stable pages while new runs arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q
from django.http import FileResponse, HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.csrf import csrf_exempt

from runs.models import ApiToken, RecordProblem, Run, RunError, RunStatus, RunStep
from runs.pipeline import UnknownPipeline, all_pipelines, get_pipeline

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.yaml"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
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
        if not (token.user.is_active and token.user.is_staff):
            raise ApiError(401, "The token's user is not an active staff member.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return user, False
    raise ApiError(401, "Authentication required: a staff session or 'Authorization: Bearer <token>'.")


def _csrf_failure(request: HttpRequest) -> str | None:
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    response = check.process_view(request, None, (), {})
    return None if response is None else "CSRF check failed: send the csrftoken cookie and X-CSRFToken header."


def api_view(*, methods: tuple[str, ...] = ("GET",), permission: str | None = None) -> Callable:
    def decorate(view: Callable) -> Callable:
        @csrf_exempt  # checked below for sessions only
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method not in methods:
                response = _error(405, f"Method {request.method} not allowed.")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                user, via_token = authenticate(request)
                if not via_token and request.method not in SAFE_METHODS:
                    failure = _csrf_failure(request)
                    if failure:
                        raise ApiError(403, failure)
                if permission and not user.has_perm(permission):
                    raise ApiError(403, f"Permission {permission} required.")
                request.api_user = user
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return _error(exc.status, exc.message)

        return wrapper

    return decorate


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


# --- cursors ----------------------------------------------------------------------


def _encode_cursor(value: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> list:
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise ApiError(400, "Invalid cursor.") from None
    if not isinstance(value, list):
        raise ApiError(400, "Invalid cursor.")
    return value


def _limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit", "")
    if not raw:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "limit must be a whole number.") from None
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}.")
    return value


def _next_url(request: HttpRequest, cursor: str) -> str:
    params = request.GET.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{urlencode(sorted(params.items()))}")


def _parse_since(raw: str) -> datetime:
    try:
        value = parse_datetime(raw)
        if value is None:
            day = parse_date(raw)
            if day is not None:
                value = datetime(day.year, day.month, day.day)
    except ValueError:
        value = None
    if value is None:
        raise ApiError(400, "since must be an ISO 8601 date or date-time, e.g. 2025-01-31 or 2025-01-31T08:00:00Z.")
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value


# --- views ------------------------------------------------------------------------


@api_view()
def pipelines(request):
    from runs.health import pipeline_states
    from runs.selectors import latest_runs, schedule_states

    registered = all_pipelines()
    now = timezone.now()
    schedules = schedule_states(now)
    states = {p["name"]: p["state"] for p in pipeline_states(now=now)}
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
    if pipeline := request.GET.get("pipeline"):
        qs = qs.filter(pipeline=pipeline)
    if status := request.GET.get("status"):
        if status not in RunStatus.values:
            raise ApiError(400, f"status must be one of: {', '.join(RunStatus.values)}.")
        qs = qs.filter(status=status)
    if since := request.GET.get("since"):
        qs = qs.filter(started_at__gte=_parse_since(since))
    if cursor := request.GET.get("cursor"):
        value = _decode_cursor(cursor)
        try:
            started_at, pk = datetime.fromisoformat(value[0]), int(value[1])
        except (IndexError, TypeError, ValueError):
            raise ApiError(400, "Invalid cursor.") from None
        # Keyset: strictly after the last row of the previous page.
        qs = qs.filter(Q(started_at__lt=started_at) | Q(started_at=started_at, pk__lt=pk))
    limit = _limit(request)
    page = list(qs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_url = None
    if more:
        last = page[-1]
        next_url = _next_url(request, _encode_cursor([last.started_at.isoformat(), last.pk]))
    return JsonResponse({"results": [run_json(r, request) for r in page], "next": next_url})


def _get_run(pk: int) -> Run:
    run = Run.objects.filter(pk=pk).first()
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


@api_view()
def run_errors(request, pk: int):
    run = _get_run(pk)
    # runerror_run_step index narrows to the run; a run's errors are few enough to sort.
    # A parent run (`all`) counts its children's errors, so it lists them too.
    children = list(Run.objects.filter(parent_id=run.pk).values_list("id", flat=True)[:100])
    qs = RunError.objects.filter(run_id__in=[run.pk, *children]).order_by("id")
    if step := request.GET.get("step"):
        try:
            qs = qs.filter(step_id=int(step))
        except ValueError:
            raise ApiError(400, "step must be a step id.") from None
    if cursor := request.GET.get("cursor"):
        value = _decode_cursor(cursor)
        try:
            qs = qs.filter(pk__gt=int(value[0]))
        except (IndexError, TypeError, ValueError):
            raise ApiError(400, "Invalid cursor.") from None
    limit = _limit(request)
    page = list(qs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_url = _next_url(request, _encode_cursor([page[-1].pk])) if more else None
    return JsonResponse(
        {"run_id": run.pk, "error_count": run.error_count, "results": [error_json(e) for e in page],
         "next": next_url}
    )


_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _only_from_body(request: HttpRequest) -> list[str] | None:
    """The trigger's optional scope (record history): a JSON body {"only": [...]},
    or `only` form fields. Anything else with a body is refused, so a scope
    is never silently dropped (which would run every record)."""
    from runs.services import check_only

    if request.content_type in _FORM_TYPES:
        # The form was parsed already (the CSRF check reads it): use POST, not the body.
        values = request.POST.getlist("only") if "only" in request.POST else None
    else:
        if not request.body.strip():
            return None
        if request.content_type != "application/json":
            raise ApiError(400, 'Send the scope as JSON (Content-Type: application/json), e.g. '
                                '{"only": ["ABC1234"]}, or send no body.')
        try:
            body = json.loads(request.body)
        except ValueError:
            raise ApiError(400, 'The body must be JSON, e.g. {"only": ["ABC1234"]}, or empty.') from None
        if not isinstance(body, dict) or set(body) - {"only"}:
            raise ApiError(400, 'The body may only hold "only": a list of identifiers.')
        values = body.get("only")
    try:
        return check_only(values)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


@api_view(methods=("POST",), permission="runs.trigger_run")
def trigger(request, name: str):
    from runs.services import trigger_run

    try:
        get_pipeline(name)
    except UnknownPipeline as exc:
        raise ApiError(404, str(exc)) from None
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


def problem_json(problem: RecordProblem, request: HttpRequest) -> dict:
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
        "record_url": settings.SITE_URL + reverse("runs:record", args=[problem.identifier]),
    }


@api_view()
def problems(request):
    """Open problems, newest first, or ?state=resolved; keyset-paginated."""
    from runs.selectors import MIN_PREFIX, identifier_prefix_q, problems_queryset

    state = request.GET.get("state") or "open"
    if state not in ("open", "resolved"):
        raise ApiError(400, "state must be open or resolved.")
    resolved = state == "resolved"
    qs = problems_queryset(resolved=resolved)
    if pipeline := request.GET.get("pipeline"):
        qs = qs.filter(pipeline=pipeline)
    if identifier := request.GET.get("identifier", "").strip():
        if request.GET.get("match") == "prefix" and len(identifier) >= MIN_PREFIX:
            qs = qs.filter(identifier_prefix_q(identifier))
        else:
            qs = qs.filter(identifier=identifier)
    order_field = "resolved_at" if resolved else "last_seen_at"
    if cursor := request.GET.get("cursor"):
        value = _decode_cursor(cursor)
        try:
            at, pk = datetime.fromisoformat(value[0]), int(value[1])
        except (IndexError, TypeError, ValueError):
            raise ApiError(400, "Invalid cursor.") from None
        qs = qs.filter(Q(**{f"{order_field}__lt": at}) | Q(**{order_field: at, "pk__lt": pk}))
    limit = _limit(request)
    page = list(qs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_url = None
    if more:
        last = page[-1]
        next_url = _next_url(request, _encode_cursor([getattr(last, order_field).isoformat(), last.pk]))
    return JsonResponse({"results": [problem_json(p, request) for p in page], "next": next_url})


def openapi(request):
    """The OpenAPI description (public: it describes, it does not disclose)."""
    return FileResponse(OPENAPI_FILE.open("rb"), content_type="application/yaml")
