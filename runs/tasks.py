"""django-q2 tasks: every function django-q2 calls (a Schedule's or a queued task's `func`).

Thin wrappers that take names and ids and call the code that does the work:
`run_pipeline_task` (the runner), and the maintenance tasks of
runs.scheduling.MAINTENANCE_TASKS: `reap_stale_runs_task`, `run_alert_checks`
(runs.alerts, runs.delivery) and `run_prune` (runs.retention).

Enqueue through runs.services.trigger_run (dashboard, admin, API) or let a
Schedule call them (see runs.scheduling). A pipeline task never raises without
leaving a trace in the run history: bad arguments or an unknown pipeline become
a `failed` Run with the message, besides django-q2's own failure record.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any

from django.dispatch import receiver
from django_q.signals import pre_execute

from runs.alerts import check_alerts
from runs.delivery import deliver_pending
from runs.models import Mode
from runs.outcomes import apply_spooled_outcomes
from runs.pipeline import UnknownPipeline
from runs.retention import prune_runs
from runs.runner import reap_stale_runs, run_pipeline
from runs.services import record_task_failure

logger = logging.getLogger("runs.tasks")

_current = threading.local()


@receiver(pre_execute, dispatch_uid="runs.tasks.remember_task_id")
def _remember_task_id(sender: Any, func: Any, task: dict, **kwargs: Any) -> None:
    # django-q2 does not hand a task its own id; the worker sends pre_execute
    # in the same process and thread right before calling the function.
    _current.task_id = task.get("id")


def current_task_id() -> str:
    """The django-q2 id of the task being executed in this thread ("" outside a worker)."""
    return getattr(_current, "task_id", None) or ""


def _pipeline_task(name: str, mode: str = Mode.SCHEDULED, triggered_by_id: int | None = None, *,
                   only: list[str] | None = None, allow_removals: bool = False) -> None:
    """The signature run_pipeline_task accepts (checked before running)."""


_SIGNATURE = inspect.signature(_pipeline_task)


def run_pipeline_task(*args: Any, **kwargs: Any) -> int | None:
    """run_pipeline_task(name, mode="scheduled", triggered_by_id=None, *, only=None, allow_removals=False) -> run id

    Runs pipeline `name` through the runner with the django-q2 task id
    recorded on the run. Arguments are checked here rather than by Python's
    call, so a Schedule with bad arguments is recorded as a failed run (and
    re-raised, so django-q2 lists it as a failure too).
    """
    task_id = current_task_id()
    try:
        bound = _SIGNATURE.bind(*args, **kwargs)
    except TypeError as exc:
        name = kwargs.get("name", args[0] if args else "")
        _fail(name, kwargs.get("mode"), f"Bad task arguments {_describe(args, kwargs)}: {exc}.", task_id)
        raise
    bound.apply_defaults()
    name, mode, triggered_by_id = bound.arguments["name"], bound.arguments["mode"], \
        bound.arguments["triggered_by_id"]
    only = bound.arguments["only"]
    if only is not None and (not isinstance(only, list) or not all(isinstance(i, str) for i in only)):
        message = f"Bad task arguments {_describe(args, kwargs)}: only must be a list of identifiers."
        _fail(name, mode, message, task_id)
        raise ValueError(message)
    allow_removals = bound.arguments["allow_removals"]
    if not isinstance(name, str) or mode not in Mode.values or not (
            triggered_by_id is None or isinstance(triggered_by_id, int)) or not isinstance(allow_removals, bool):
        message = f"Bad task arguments {_describe(args, kwargs)}: expected a pipeline name, a mode " \
                  f"({', '.join(Mode.values)}), a user id or None and allow_removals True or False."
        _fail(name, mode, message, task_id)
        raise ValueError(message)
    if triggered_by_id is not None and not _user_exists(triggered_by_id):
        # The user was deleted after queueing: run anyway, just not on their name.
        logger.warning("user #%s who queued %s no longer exists", triggered_by_id, name)
        triggered_by_id = None
    try:
        run = run_pipeline(name, mode=mode, triggered_by_id=triggered_by_id, task_id=task_id, only=only,
                           allow_removals=allow_removals)
    except UnknownPipeline as exc:
        _fail(name, mode, str(exc), task_id, triggered_by_id)
        raise
    except Exception as exc:
        # Outside the pipeline (it catches its own): record it, then let django-q2 see it.
        _fail(name, mode, f"The task failed before the run could be recorded: {exc}", task_id, triggered_by_id)
        raise
    return run.pk


def reap_stale_runs_task() -> int:
    """Maintenance: mark runs whose process died as abandoned (frees their lock)."""
    return len(reap_stale_runs())


def run_alert_checks() -> str:
    """Maintenance: queue notifications for changes (runs.alerts), then deliver (runs.delivery).

    A broken check (say, unreadable schedule rows) is logged and does not stop
    the delivery of what is already queued; the next run tries again.
    """
    try:
        # Runs that could not be recorded when they ran: recorded (and notified) now.
        apply_spooled_outcomes()
    except Exception:
        logger.exception("could not write the spooled run outcomes yet")
    try:
        queued = check_alerts()
    except Exception:
        logger.exception("alert checks failed; delivering what is queued")
        queued = []
    delivered = deliver_pending()
    return (
        f"queued {len(queued)}, sent {delivered.sent}, retrying {delivered.retrying}, "
        f"gave up {delivered.gave_up}"
    )


def run_prune() -> str:
    """Maintenance, daily: delete history past retention (runs.retention)."""
    return str(prune_runs())


def _user_exists(pk: int) -> bool:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=pk).exists()


def _describe(args: tuple, kwargs: dict) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts)[:200] + ")"


def _fail(name: Any, mode: Any, message: str, task_id: str, triggered_by_id: Any = None) -> None:
    logger.error("pipeline task for %r failed: %s", name, message)
    try:
        record_task_failure(
            str(name or "?"),
            mode=mode if mode in Mode.values else Mode.SCHEDULED,
            message=message,
            task_id=task_id,
            triggered_by_id=triggered_by_id if isinstance(triggered_by_id, int) and _user_exists(triggered_by_id)
            else None,
        )
    except Exception:
        logger.exception("could not record the failed task for %r", name)
