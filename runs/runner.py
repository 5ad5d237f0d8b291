"""The runner: the only way a pipeline runs (runsync, django-q2 tasks, the dashboard)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runs.history import resolve_problems
from runs.models import Run, RunError, RunStatus, RunStep, StepStatus
from runs.models.run import span_ms
from runs.outcomes import apply_spooled_outcomes, spool_outcome
from runs.pipeline import Cancelled, PipelineRun, get_pipeline
from runs.redact import redact, truncate
from runs.services import release_tasks
from runs.tracebacks import exception_message, format_exception
from runs.tracker import RunTracker, compute_run_status

logger = logging.getLogger("runs.runner")


def run_pipeline(
    name: str,
    *,
    mode: str = "manual",
    dry_run: bool = False,
    parent: Run | int | None = None,
    triggered_by_id: int | None = None,
    task_id: str = "",
    on_start: Callable[[RunTracker], None] | None = None,
    only: list[str] | None = None,
    allow_removals: bool = False,
) -> Run:
    """Run pipeline `name` and return its finished Run.

    Takes the pipeline lock (a unique constraint on running runs): when the
    pipeline is already running, a `skipped` run naming the holder is recorded
    and returned. The pipeline runs inside try/finally, so an exception,
    KeyboardInterrupt or SystemExit still finishes the run (`failed`); the two
    latter are re-raised afterwards. A honoured cancel request ends it
    `cancelled`. Raises UnknownPipeline for a name that is not registered.

    `only`: identifiers to sync alone (`run.only`, recorded on the run).
    The run's errors open and update problems as they are written; after the
    run, the records it processed without an error resolve theirs
    (runs.history.resolve_problems).
    `allow_removals` lets through removals the pipeline would hold back as a
    likely mistake (recorded on the run).
    """
    pipeline = get_pipeline(name)
    parent_id = parent.pk if isinstance(parent, Run) else parent
    try:
        reap_stale_runs()
    except Exception:
        logger.exception("could not reap stale runs")

    tracker = RunTracker(
        name,
        mode=mode,
        parent_id=parent_id,
        triggered_by_id=triggered_by_id,
        dry_run=dry_run,
        task_id=task_id,
        identifier_keys=pipeline.identifier_keys,
        only=only,
        allow_removals=allow_removals,
    )
    tracker.start_run()
    if tracker.held_by is not None:
        logger.warning("%s is already running (run #%s); recorded run #%s as skipped",
                       name, tracker.held_by, tracker.run_id)
        return _load(tracker, name)
    if tracker.run_id is None:
        tracker.problem = tracker.problem or "the run could not be recorded"
        logger.error("run tracking is unavailable (%s); %s runs untracked", tracker.problem, name)

    run = PipelineRun(pipeline, tracker, dry_run=dry_run, mode=mode, triggered_by_id=triggered_by_id,
                      allow_removals=allow_removals, run_pipeline=run_pipeline)
    if on_start is not None:
        on_start(tracker)
    status: str | None = None
    message = ""
    escaped: BaseException | None = None
    try:
        pipeline.func(run)
    except Cancelled:
        status, message = RunStatus.CANCELLED, tracker.cancel_reason or "Cancelled on request."
    except BaseException as exc:  # noqa: BLE001 - the run must finish whatever happened
        status = RunStatus.FAILED
        message = exception_message(exc)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            message = f"Interrupted ({type(exc).__name__})."
            escaped = exc
        if not getattr(exc, "_syncsite_recorded", False):
            tracker.record_error(step_name=run.current_step.name if run.current_step else "",
                                 step_id=run.current_step.id if run.current_step else None,
                                 message=message, traceback=format_exception(exc))
        logger.error("pipeline %s failed: %s", name, message)
    finally:
        run.finish()
        if status is None:
            # The pipeline's own step states, tracked or not: the outcome never
            # depends on whether the runs table could be written.
            status = compute_run_status([s.status for s in run.step_states()], tracker.error_count,
                                        run.child_statuses)
            if status == RunStatus.SKIPPED:
                message = not_configured_message(run.step_states())
        tracker.end_run(status=status, summary=run.summary, message=message)
        _resolve_problems(tracker)
    if escaped is not None:
        raise escaped
    if tracker.run_id is not None and tracker.final_written:
        return _load(tracker, name)
    return _untracked_outcome(tracker, run, status, message)


def not_configured_message(states) -> str:
    """Why a run whose every step was skipped did nothing: the steps' reasons, once each."""
    reasons = list(dict.fromkeys(s.reason.strip() for s in states if s.reason.strip()))
    return "Not configured: " + ("; ".join(reasons) if reasons else "every step was skipped") + "."


def _untracked_outcome(tracker: RunTracker, run: PipelineRun, status: str, message: str) -> Run:
    """The outcome of a run whose record could not be written (or finished).

    Built from what the pipeline itself saw, so the caller (runsync, the task)
    still reports the truth; the cause is in `message` and `tracking_problem`.
    The outcome is spooled and written to the history as soon as the database
    accepts writes again (runs.outcomes).
    """

    states = run.step_states()
    problem = tracker.problem or "the run could not be recorded"
    totals = {key: sum(getattr(s, key) for s in states) for key in ("created", "updated", "skipped", "failed")}
    note = f"Run tracking failed: {problem}."
    finished = timezone.now()
    started = tracker.started_at or finished
    outcome = Run(
        pk=tracker.run_id, pipeline=tracker.pipeline, mode=tracker.mode, parent_id=tracker.parent_id,
        dry_run=tracker.dry_run, status=status, started_at=started, finished_at=finished,
        duration_ms=span_ms(started, finished),
        error_count=tracker.error_count,
        message=truncate(redact(f"{message} {note}" if message else note), RunError.MESSAGE_MAX),
        summary=run.summary, **totals,
    )
    # Not fields: what runsync reports about an outcome that is not in the database.
    outcome.tracking_problem = problem  # type: ignore[attr-defined]
    outcome.untracked_steps = states  # type: ignore[attr-defined]
    logger.error("%s ended %s but its record could not be written: %s", tracker.pipeline, status, problem)
    try:
        spool_outcome(outcome, steps=states, cause=problem)
    except Exception:
        logger.exception("could not spool the outcome of %s", tracker.pipeline)
    return outcome


def _resolve_problems(tracker: RunTracker) -> None:
    """runs.history.resolve_problems, once the run's rows are committed. Like
    tracking itself: a failure is logged, never raised into the run."""
    if tracker.run_id is None or not tracker.final_written:
        return
    try:
        resolve_problems(tracker)
    except Exception:
        logger.exception("could not resolve the open problems of run #%s", tracker.run_id)


def _load(tracker: RunTracker, name: str) -> Run:
    if tracker.run_id is not None:
        try:
            return Run.objects.get(pk=tracker.run_id)
        except Exception:
            logger.exception("could not load run #%s", tracker.run_id)
    # Untracked: give the caller an unsaved Run with what is known.
    totals = tracker.totals()
    return Run(pipeline=name, status=tracker.status or RunStatus.FAILED, error_count=tracker.error_count, **totals)


def reap_stale_runs(*, now: datetime | None = None, stale_after: timedelta | None = None) -> list[int]:
    """Mark running runs whose heartbeat stopped as `abandoned`; returns their ids.

    The process that ran them died (SIGKILL, power loss, OOM), so nothing
    else will ever finish them. Moving them out of `running` frees the lock.
    Each run is claimed with a conditional UPDATE, so two reapers on two
    hosts never both claim one.
    """
    now = now or timezone.now()
    # Outcomes that could not be written when they happened go first: a run
    # they finish must get its real reason, not "abandoned".

    try:
        apply_spooled_outcomes()
    except Exception:
        logger.exception("could not write the spooled run outcomes yet")
    stale_after = stale_after or timedelta(seconds=settings.RUNS_STALE_AFTER_S)
    cutoff = now - stale_after
    candidates = list(
        Run.objects.running()
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
        .values_list("pk", "started_at", "heartbeat_at", "task_id")
    )
    reaped, dead_tasks = [], []
    for pk, started_at, heartbeat_at, task_id in candidates:
        last_seen = heartbeat_at or started_at
        with transaction.atomic():
            claimed = Run.objects.filter(pk=pk, status=RunStatus.RUNNING, heartbeat_at=heartbeat_at).update(
                status=RunStatus.ABANDONED,
                finished_at=last_seen,
                duration_ms=span_ms(started_at, last_seen),
                message=(
                    "Abandoned: the process running this pipeline stopped without finishing it "
                    f"(no heartbeat since {timezone.localtime(last_seen):%Y-%m-%d %H:%M:%S})."
                ),
            )
            if claimed:
                RunStep.objects.filter(run_id=pk, status=StepStatus.RUNNING).update(
                    status=StepStatus.FAILED,
                    finished_at=last_seen,
                    duration_ms=None,
                    reason="The process stopped during this step.",
                )
                reaped.append(pk)
                dead_tasks.append(task_id)
    if reaped:
        logger.warning("marked %d stale run(s) as abandoned: %s", len(reaped), reaped)
        _release_dead_tasks(dead_tasks)
    return reaped


def _release_dead_tasks(task_ids: list[str]) -> None:
    """The queue's lock on an abandoned run's task would block "Run now" for
    hours and then start the task again: one attempt means one."""
    try:
        release_tasks(task_ids)
    except Exception:
        logger.exception("could not release the queued tasks of abandoned runs")
