"""Health endpoints for uptime monitors: no login, tiny JSON, no sensitive data."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from runs.models import Run, RunStatus
from runs.pipeline import all_pipelines

logger = logging.getLogger("runs.health")

#: States that make /health/pipelines/ answer 503.
UNHEALTHY = ("failed", "overdue")


# csrf_exempt: nothing here changes state, and without it CSRF would answer an
# undeclared method with 403 before require_GET can answer 405.
@csrf_exempt
@never_cache
@require_GET
def health(request):
    """200 when the database answers a query, 503 when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # Logged for the operator; the body says nothing about why.
        logger.exception("health check: the database did not answer")
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def pipeline_states(*, now=None) -> list[dict]:
    """Name and state per pipeline: ok, partial, failed, overdue, running or never_run.

    `failed`: the latest finished run failed or was abandoned; `overdue`: no
    run started since the last scheduled slot plus the grace period.
    """
    from runs.selectors import schedule_states

    schedules = schedule_states(now)
    result = []
    for pipeline in all_pipelines():
        runs = list(
            Run.objects.filter(pipeline=pipeline.name)
            .exclude(status__in=(RunStatus.SKIPPED, RunStatus.CANCELLED))
            .order_by("-started_at", "-id")
            .values_list("status", flat=True)[:2]
        )
        schedule = schedules.get(pipeline.name)
        last_finished = next((s for s in runs if s != RunStatus.RUNNING), None)
        if schedule is not None and getattr(schedule, "overdue", False):
            state = "overdue"
        elif last_finished in (RunStatus.FAILED, RunStatus.ABANDONED):
            state = "failed"
        elif runs and runs[0] == RunStatus.RUNNING:
            state = "running"
        elif last_finished is None:
            state = "never_run"
        else:
            state = "partial" if last_finished == RunStatus.PARTIAL else "ok"
        result.append({"name": pipeline.name, "state": state})
    return result


@csrf_exempt
@never_cache
@require_GET
def health_pipelines(request):
    """200 when no pipeline is overdue or failing, 503 otherwise."""
    try:
        pipelines = pipeline_states()
    except Exception:
        logger.exception("health check: could not read pipeline states")
        return JsonResponse({"status": "error"}, status=503)
    healthy = not any(p["state"] in UNHEALTHY for p in pipelines)
    return JsonResponse({"status": "ok" if healthy else "failing", "pipelines": pipelines},
                        status=200 if healthy else 503)
