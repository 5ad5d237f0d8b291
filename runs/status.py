"""A finished run's status, derived from its steps and errors (with or without tracking)."""

from __future__ import annotations

from collections.abc import Iterable

from runs.models import RunStatus, StepStatus


def compute_run_status(
    step_statuses: Iterable[str], error_count: int, child_statuses: Iterable[str] = ()
) -> str:
    """The one place a finished run's status is derived from its steps and errors.

    A run that got to the end is `success` when no step failed and nothing was
    recorded as an error, else `partial`. A run whose every step was skipped
    (nothing was configured to do: a missing API key) is `skipped`. A parent
    run (`all`) is never better than its worst child; a child that could not
    run because it was already running makes the parent `partial` (the runner
    leaves not-configured children out of `child_statuses`). `failed` and
    `cancelled` for the run itself are decided by the runner (an exception
    escaped / a cancel was honoured).

    Used both with and without run tracking, so the outcome a volunteer sees
    on the command line never depends on whether the runs table was writable.
    """
    step_statuses = list(step_statuses)
    status = RunStatus.SUCCESS
    if error_count or any(s in (StepStatus.FAILED, StepStatus.PARTIAL) for s in step_statuses):
        status = RunStatus.PARTIAL
    elif step_statuses and all(s == StepStatus.SKIPPED for s in step_statuses):
        status = RunStatus.SKIPPED
    worst: dict[str, int] = {RunStatus.SUCCESS: 0, RunStatus.SKIPPED: 1, RunStatus.PARTIAL: 2, RunStatus.CANCELLED: 3,
             RunStatus.ABANDONED: 4, RunStatus.FAILED: 4}
    for child in child_statuses:
        child = RunStatus.FAILED if child == RunStatus.ABANDONED else child
        if child == RunStatus.SKIPPED:
            child = RunStatus.PARTIAL  # a child that could not run makes the whole incomplete
        if worst.get(child, 0) > worst[status]:
            status = RunStatus(child)
    return str(status)
