"""Health endpoints for uptime monitors: no login, tiny JSON, no sensitive data."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from runs import states
from runs.models import AlertState
from runs.outcomes import pending_outcomes
from runs.tracker import describe_db_problem

logger = logging.getLogger("runs.health")

#: States that make /health/pipelines/ answer 503.
UNHEALTHY = ("failed", "overdue")


#: The AlertState row /health/ rewrites to prove the database accepts a write.
WRITE_CHECK_SUBJECT = "health:write"


# csrf_exempt: nothing here changes state, and without it CSRF would answer an
# undeclared method with 403 before require_GET can answer 405.
@csrf_exempt
@never_cache
@require_GET
def health(request):
    """200 when the database answers a query and accepts a write, 503 naming what is wrong.

    The write is one UPDATE of one row (committed), so a read-only database,
    a full disk or a lock held past the timeout show here, not only on a
    run's stderr. Run outcomes still waiting in the spool (their run could
    not be recorded) also make it 503 until they are written.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # Logged for the operator; the body says nothing about why.
        logger.exception("health check: the database did not answer")
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    problem = write_problem()
    if problem:
        return JsonResponse({"status": "error", "database": problem}, status=503)
    waiting = len(pending_outcomes())
    if waiting:
        return JsonResponse({"status": "error", "database": "ok",
                             "tracking": f"{waiting} run outcome(s) could not be recorded yet"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def write_problem() -> str:
    """"" when the database accepts a small committed write, else why not (volunteer words)."""
    try:
        # One UPDATE, committed on its own (autocommit); the row is created once.
        if not AlertState.objects.filter(subject=WRITE_CHECK_SUBJECT).update(changed_at=timezone.now()):
            AlertState.objects.get_or_create(subject=WRITE_CHECK_SUBJECT, defaults={"state": "ok"})
    except Exception as exc:
        logger.exception("health check: the database did not accept a write")
        return describe_db_problem(exc)
    return ""


def pipeline_states(*, now=None) -> list[dict]:
    """Name and state per pipeline: ok, partial, failed, overdue, running or never_run (runs.states)."""
    return [{"name": s.name, "state": s.state} for s in states.pipeline_states(now=now).values()]


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
