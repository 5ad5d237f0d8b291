"""The state of every pipeline: its recent runs, its schedule and one word for its health.

`pipeline_states()` is the one place that works this out; the health
endpoint, the alerts (overdue), the JSON API and the overview all read it.
Four queries whatever the number of pipelines or the size of the history:

1. the newest `window` runs of every pipeline (one UNION ALL, run_pipeline_started);
2. the newest two runs of every pipeline that were not skipped or cancelled
   (the same shape; what `state` is read from);
3. the pipelines' django-q2 Schedule rows;
4. when each schedule started counting (PipelineSettings).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from runs.models import Run, RunStatus
from runs.pipeline import Pipeline, all_pipelines
from runs.scheduling import ScheduleState, pipeline_schedule_states
from runs.selectors import recent_runs_per_pipeline

logger = logging.getLogger("runs.states")

#: Runs that say nothing about a pipeline's health: nobody tried (skipped) or a person stopped it.
NO_OUTCOME = (RunStatus.SKIPPED, RunStatus.CANCELLED)


@dataclass
class PipelineState:
    """One registered pipeline as the dashboard, the health check and the alerts see it."""

    pipeline: Pipeline
    #: Its newest runs, newest first (at most the `window` asked for).
    runs: list[Run]
    #: Its schedule (None when the schedule tables could not be read).
    schedule: ScheduleState | None
    #: ok, partial, failed, overdue, running or never_run: `failed` when the
    #: latest finished run failed or was abandoned, `overdue` when no run
    #: started since the last scheduled slot plus the grace period.
    state: str

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def last(self) -> Run | None:
        return self.runs[0] if self.runs else None

    @property
    def running(self) -> Run | None:
        last = self.last
        return last if last is not None and last.status == RunStatus.RUNNING else None


def health_state(outcome_runs: list[Run], schedule: ScheduleState | None) -> str:
    """The one word for a pipeline, from its newest runs that were not skipped or cancelled."""
    statuses = [run.status for run in outcome_runs]
    last_finished = next((s for s in statuses if s != RunStatus.RUNNING), None)
    if schedule is not None and schedule.overdue:
        return "overdue"
    if last_finished in (RunStatus.FAILED, RunStatus.ABANDONED):
        return "failed"
    if statuses and statuses[0] == RunStatus.RUNNING:
        return "running"
    if last_finished is None:
        return "never_run"
    return "partial" if last_finished == RunStatus.PARTIAL else "ok"


def pipeline_states(*, now: datetime | None = None, window: int = 1,
                    strict: bool = False) -> dict[str, PipelineState]:
    """The state of every registered pipeline, by name, in registration order.

    `window`: how many of each pipeline's newest runs to load (the overview
    cards summarise 30). Unreadable schedule tables are logged and leave
    `schedule` None, so a page still renders; with `strict` they raise (the
    alerts must not take "unreadable" for "nothing is overdue").
    """
    now = now or timezone.now()
    pipelines = all_pipelines()
    names = [p.name for p in pipelines]
    recent = recent_runs_per_pipeline(names, max(1, window))
    # A running run is never skipped or cancelled, and at most one runs at a
    # time, so two runs hold the latest finished one.
    outcomes = recent_runs_per_pipeline(names, 2, exclude_statuses=NO_OUTCOME)
    last_started = {name: runs[0].started_at for name, runs in recent.items() if runs}
    try:
        schedules = pipeline_schedule_states(now=now, last_started=last_started)
    except Exception:
        if strict:
            raise
        logger.exception("could not read the schedule states")
        schedules = {}
    return {
        p.name: PipelineState(
            pipeline=p,
            runs=recent[p.name][:max(1, window)],
            schedule=schedules.get(p.name),
            state=health_state(outcomes[p.name], schedules.get(p.name)),
        )
        for p in pipelines
    }
