"""The write side of run history: the services that change what runs, shared by the
dashboard's action views (runs.action_views), the admin actions, the API, commands and tasks.

- trigger_run: queue a pipeline (run now, "Sync again" with `only`), refused while it runs or waits;
- cancel_run: ask a running run to stop;
- approve_removals: approve what a run held back and queue the pipeline once with removals allowed;
- release_tasks: take abandoned runs' tasks out of the broker;
- record_task_failure: record a task that failed before the runner could start it.

Reads live in runs.selectors.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from runs.models import HELD_REMOVALS_KEY, Mode, Run, RunError, RunStatus, RunStep
from runs.pipeline import get_pipeline
from runs.redact import redact, truncate

# --- run now / cancel (scheduling) ---------------------------------------------


@dataclass
class TriggerResult:
    """What `trigger_run` did, for a message to the person who asked."""

    queued: bool
    message: str
    running_run: Run | None = None
    task_id: str | None = None


#: The most identifiers one scoped run (`only`) may name.
ONLY_MAX = 500


def check_only(only) -> list[str] | None:
    """Validate a run's scope: None, or a list of 1..ONLY_MAX non-empty identifiers (ValueError)."""
    if only is None:
        return None
    if isinstance(only, str) or not isinstance(only, (list, tuple)):
        raise ValueError("only must be a list of identifiers, e.g. [\"ABC1234\"].")
    cleaned = []
    for value in only:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("only must list identifiers as non-empty strings.")
        if len(value) > 255:
            raise ValueError("An identifier in only is longer than 255 characters.")
        if value.strip() not in cleaned:
            cleaned.append(value.strip())
    if not cleaned:
        raise ValueError("only must name at least one identifier.")
    if len(cleaned) > ONLY_MAX:
        raise ValueError(f"only names {len(cleaned)} identifiers; at most {ONLY_MAX} per run.")
    return cleaned


def trigger_run(pipeline: str, *, user=None, mode: str = "dashboard", only: list[str] | None = None,
                allow_removals: bool = False) -> TriggerResult:
    """Queue pipeline `pipeline` on the django-q2 cluster, unless it is already running.

    The task is enqueued with `transaction.on_commit`, so it never starts
    before the caller's transaction is visible (in autocommit that is at
    once, and `task_id` is set). Refuses, without queueing, when a run of the
    pipeline is running or (ORM broker) a task for it is still waiting in the
    queue. Two requests racing past this check are still safe: the runner's
    lock records the second as a `skipped` run. Raises UnknownPipeline for a
    name that is not registered.

    `only`: identifiers to sync alone (see check_only; ValueError when invalid).
    `allow_removals` queues a run that applies
    removals the pipeline would otherwise hold (see approve_removals).
    """
    from django_q.tasks import async_task

    get_pipeline(pipeline)
    only = check_only(only)
    if mode not in Mode.values:
        raise ValueError(f"unknown mode {mode!r}")
    mode = str(mode)  # a plain str in the task payload, not the enum
    running = Run.objects.running().filter(pipeline=pipeline).order_by("-started_at").first()
    if running is not None:
        return TriggerResult(False, f"{pipeline} is already running (run #{running.pk}).", running_run=running)
    if _waiting_in_queue(pipeline):
        return TriggerResult(False, f"{pipeline} is already queued and will start shortly.")
    holder: dict[str, str] = {}
    triggered_by_id = user.pk if user is not None else None
    # Only an approved run carries the flag, so other payloads stay as they were.
    extra = {"allow_removals": True} if allow_removals else {}

    scope = {"only": only} if only else {}

    def enqueue() -> None:
        holder["task_id"] = async_task(
            "runs.tasks.run_pipeline_task", pipeline, mode=mode, triggered_by_id=triggered_by_id,
            q_options={"group": f"pipeline:{pipeline}"}, **scope, **extra,
        )

    transaction.on_commit(enqueue)
    what = f"{pipeline} for {', '.join(only)}" if only else pipeline
    return TriggerResult(True, f"{what} queued; it starts as soon as a worker is free.",
                         task_id=holder.get("task_id"))


def held_removals(run: Run) -> dict[str, int]:
    """What the run's steps held back (kind -> count), in one query; {} when nothing."""
    held: dict[str, int] = {}
    for detail in RunStep.objects.filter(run_id=run.pk).values_list("detail", flat=True):
        held.update((detail or {}).get(HELD_REMOVALS_KEY) or {})
    return held


def can_approve_removals(run: Run, *, held: dict | None = None) -> bool:
    """Whether the run page offers "Approve removals and run again" for this run.

    Only for a finished, not-yet-approved, real (not dry) run that held
    removals and is its pipeline's latest run: approving an older run would
    apply removals worked out from whatever export is there now, which nobody
    looked at.
    """
    if run.is_running or run.removals_approved_at is not None or run.dry_run:
        return False
    if not (held if held is not None else held_removals(run)):
        return False
    newer = Run.objects.filter(pipeline=run.pipeline, started_at__gt=run.started_at).exists()
    return not newer


def approve_removals(run: Run, *, user) -> TriggerResult:
    """Approve the removals `run` held and queue its pipeline once with removals allowed.

    The approval is claimed on the run with a conditional UPDATE in the same
    transaction as the queueing: a second click (or a second person) gets
    "already approved", and when the pipeline cannot be queued (it is running
    or queued) the approval is rolled back so it can be given again later.
    """
    if not can_approve_removals(run):
        if run.removals_approved_at is not None:
            who = run.removals_approved_by.get_username() if run.removals_approved_by else "someone"
            return TriggerResult(False, f"The removals of {run} were already approved by {who}.")
        return TriggerResult(False, f"{run} has no held removals to approve (or a newer run of "
                                    f"{run.pipeline} exists: approve that one).")
    with transaction.atomic():
        if not run.claim_removals_approval(user=user):
            return TriggerResult(False, f"The removals of {run} were already approved.")
        result = trigger_run(run.pipeline, user=user, mode=str(Mode.DASHBOARD), allow_removals=True)
        if not result.queued:
            transaction.set_rollback(True)
            run.removals_approved_at = run.removals_approved_by = None
            return result
    return TriggerResult(True, f"Removals approved: {run.pipeline} queued with removals allowed; it starts as "
                               "soon as a worker is free.", task_id=result.task_id)


def _waiting_in_queue(pipeline: str) -> bool:
    """Whether the ORM broker holds a run_pipeline_task for `pipeline` (Redis: not checked).

    The queue is a handful of rows at most; each payload is decoded here.
    """
    from django.conf import settings

    if "orm" not in settings.Q_CLUSTER:
        return False
    from django_q.conf import Conf
    from django_q.models import OrmQ

    for entry in OrmQ.objects.filter(key=Conf.CLUSTER_NAME).order_by("id")[:200]:
        task = entry.task
        if task.get("func") != "runs.tasks.run_pipeline_task":
            continue
        args, kwargs = task.get("args") or (), task.get("kwargs") or {}
        if (args[0] if args else kwargs.get("name")) == pipeline:
            return True
    return False


def release_tasks(task_ids, *, broker=None) -> int:
    """Take the django-q2 tasks `task_ids` out of the broker; returns how many were removed.

    For runs the reaper abandoned: their worker died, but the ORM broker keeps
    the task locked for `retry` seconds (3 h 10 m), which makes "Run now"
    refuse with "already queued", and then hands it to a worker again. A
    Redis broker pops a task when a worker takes it, so normally nothing is
    left there; a copy still in its list is removed all the same.
    """
    ids = {task_id for task_id in task_ids if task_id}
    if not ids:
        return 0
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    broker = broker or get_broker()
    if isinstance(broker, ORM):
        # The queue is a handful of rows; the task id is inside the signed payload.
        doomed = [entry.pk for entry in OrmQ.objects.filter(key=broker.list_key) if entry.task_id() in ids]
        return OrmQ.objects.filter(pk__in=doomed).delete()[0] if doomed else 0
    removed = 0
    connection = broker.connection
    for payload in connection.lrange(broker.list_key, 0, -1):
        try:
            task_id = SignedPackage.loads(payload).get("id")
        except Exception:  # noqa: BLE001, S112 - someone else's entry; leave it alone
            continue
        if task_id in ids:
            removed += connection.lrem(broker.list_key, 0, payload)
    return removed


def cancel_run(run: Run, *, user=None) -> bool:
    """Ask a running run to stop; True when this call made the request.

    The run's process notices within about a second (its tracker's writer
    polls the request) or at the next step boundary (a database read), on
    whichever host it runs, and ends the run as `cancelled`.
    """
    return run.request_cancel(user=user)


def record_task_failure(pipeline: str, *, mode: str, message: str, task_id: str = "",
                        triggered_by_id: int | None = None) -> Run:
    """Record a `failed` run for a task that failed before the runner could start it.

    (An unknown pipeline, bad task arguments.) One RunError carries the
    message, so the error explorer and alerts see it like any other failure.
    """
    text = truncate(redact(message), RunError.MESSAGE_MAX)
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.create(
            pipeline=pipeline[:64], mode=mode, status=RunStatus.FAILED, started_at=now, finished_at=now,
            duration_ms=0, message=text, error_count=1, task_id=(task_id or "")[:64],
            triggered_by_id=triggered_by_id, host=socket.gethostname()[:255], pid=os.getpid(),
        )
        RunError.objects.create(run=run, message=text, created_at=now)
    return run
