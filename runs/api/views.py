"""The API's endpoints (routes in syncsite/urls.py, contract in runs/openapi.yaml)."""

from __future__ import annotations

from pathlib import Path

from django.db.models import QuerySet
from django.http import FileResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone

from runs.api.auth import ApiError, api_view
from runs.api.pagination import after_time_cursor, keyset_page, next_url, parse_id_cursor, time_cursor
from runs.api.params import (
    MATCHES,
    MAX_ID,
    PIPELINE_RE,
    PROBLEM_STATES,
    choice,
    identifier,
    integer,
    limit,
    only_from_body,
    param,
    parse_since,
    pipeline_name,
)
from runs.api.serializers import error_json, problem_json, run_json, step_json
from runs.isotime import iso
from runs.models import Run, RunError, RunStatus
from runs.pipeline import UnknownPipeline, all_pipelines, get_pipeline
from runs.selectors import MIN_PREFIX, identifier_prefix_q, latest_runs, problems_queryset
from runs.services import trigger_run
from runs.states import pipeline_states

OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"


@api_view()
def pipelines(request):
    registered = all_pipelines()
    now = timezone.now()
    current = pipeline_states(now=now)
    schedules = {name: s.schedule for name, s in current.items()}
    states = {name: s.state for name, s in current.items()}
    last = latest_runs([p.name for p in registered])
    results = []
    for pipeline in registered:
        # A ScheduleState, or None when the schedules could not be read (runs.states leaves it
        # empty then): the registered default applies.
        schedule = schedules.get(pipeline.name)
        run = last.get(pipeline.name)
        if schedule is None:
            cron, enabled, next_run, overdue = None, pipeline.schedule is not None, None, False
        else:
            cron, enabled, next_run, overdue = schedule.cron, schedule.enabled, schedule.next_run, schedule.overdue
        results.append(
            {
                "name": pipeline.name,
                "description": pipeline.description,
                "schedule": cron or pipeline.schedule,
                "enabled": bool(enabled),
                "next_run": iso(next_run),
                "overdue": bool(overdue),
                "state": states.get(pipeline.name, "never_run"),
                "last_run": run_json(run, request) if run is not None else None,
            }
        )
    return JsonResponse({"results": results})


@api_view()
def runs(request):
    qs: QuerySet[Run] = Run.objects.order_by("-started_at", "-id")
    if (pipeline := param(request, "pipeline")) is not None:
        qs = qs.filter(pipeline=pipeline_name(pipeline))
    if (status := choice(request, "status", RunStatus.values)) is not None:
        qs = qs.filter(status=status)
    if (since := param(request, "since")) is not None:
        qs = qs.filter(started_at__gte=parse_since(since))
    if (cursor := param(request, "cursor")) is not None:
        qs = after_time_cursor(qs, "started_at", cursor)
    page, more = keyset_page(qs, limit(request))
    next_ = next_url(request, time_cursor(page[-1].started_at, page[-1].pk)) if more else None
    return JsonResponse({"results": [run_json(r, request) for r in page], "next": next_})


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
    if (step := param(request, "step")) is not None:
        qs = qs.filter(step_id=integer("step", step, minimum=1, maximum=MAX_ID))
    if (cursor := param(request, "cursor")) is not None:
        qs = qs.filter(pk__gt=parse_id_cursor(cursor))
    page, more = keyset_page(qs, limit(request))
    next_ = next_url(request, str(page[-1].pk)) if more else None
    return JsonResponse(
        {"run_id": run.pk, "error_count": run.error_count, "results": [error_json(e) for e in page],
         "next": next_}
    )


@api_view(methods=("POST",), permissions=("runs.trigger_run",))
def trigger(request, name: str):
    try:
        if not PIPELINE_RE.fullmatch(name):
            raise UnknownPipeline(name)
        get_pipeline(name)
    except UnknownPipeline:
        raise ApiError(404, f"No pipeline named {name[:64]!r}; GET /api/pipelines/ lists them.") from None
    only = only_from_body(request)
    result = trigger_run(name, user=request.api_user, mode="api", only=only)
    body = {
        "queued": bool(result.queued),
        "message": result.message,
        "task_id": result.task_id or None,
        "running_run_id": result.running_run.pk if result.running_run is not None else None,
    }
    return JsonResponse(body, status=202 if result.queued else 409)


# A problem carries the latest error message of a record: the same data as a run's errors.
@api_view(permissions=("runs.view_run", "runs.view_runerror"))
def problems(request):
    """Open problems, newest first, or ?state=resolved; keyset-paginated like runs."""
    resolved = (choice(request, "state", PROBLEM_STATES) or "open") == "resolved"
    qs = problems_queryset(resolved=resolved)
    if (pipeline := param(request, "pipeline")) is not None:
        qs = qs.filter(pipeline=pipeline_name(pipeline))
    match = choice(request, "match", MATCHES)
    if (wanted := param(request, "identifier")) is not None:
        identifier("identifier", wanted)
        if match == "prefix" and len(wanted) >= MIN_PREFIX:
            qs = qs.filter(identifier_prefix_q(wanted))
        else:
            qs = qs.filter(identifier=wanted)
    order_field = "resolved_at" if resolved else "last_seen_at"
    if (cursor := param(request, "cursor")) is not None:
        qs = after_time_cursor(qs, order_field, cursor)
    page, more = keyset_page(qs, limit(request))
    next_ = None
    if more:
        last = page[-1]
        next_ = next_url(request, time_cursor(last.resolved_at if resolved else last.last_seen_at, last.pk))
    return JsonResponse({"results": [problem_json(p) for p in page], "next": next_})


def openapi(request):
    """The OpenAPI description (public: it describes, it does not disclose)."""
    return FileResponse(OPENAPI_FILE.open("rb"), content_type="application/yaml")
