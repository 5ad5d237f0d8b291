"""The overview page's cards: one per registered pipeline, built on runs.states."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

from runs.models import Run, RunStatus, RunStep
from runs.pipeline import CardNote
from runs.states import PipelineState, pipeline_states

#: How many recent runs a card summarises (success rate, sparkline).
CARD_WINDOW = 30


@dataclass
class Card(PipelineState):
    """A pipeline's state as its card shows it (the view adds its notes and links)."""

    running_steps: list[RunStep] = field(default_factory=list)
    # Filled in by the overview view for the user who looks.
    run_now_url: str | None = None
    notes: list[CardNote] = field(default_factory=list)
    open_problems: int = 0
    open_problems_capped: bool = False

    @property
    def last_finished(self) -> Run | None:
        return next((r for r in self.runs if r.status != RunStatus.RUNNING), None)

    @property
    def success_rate(self) -> tuple[int, int] | None:
        """(successful, finished) over the window; skipped runs did not try, so they don't count."""
        finished = [r for r in self.runs if r.status not in (RunStatus.RUNNING, RunStatus.SKIPPED)]
        if not finished:
            return None
        return sum(r.status == RunStatus.SUCCESS for r in finished), len(finished)

    @property
    def success_percent(self) -> int | None:
        rate = self.success_rate
        return None if rate is None else round(100 * rate[0] / rate[1])

    @property
    def colour(self) -> str:
        run = self.last_finished
        if run is not None and run.not_configured:
            return "not_configured"
        return run.status if run is not None else "never"

    @property
    def badge(self) -> str:
        """The card's status badge: the last finished run, running, not configured,
        waiting for its first run (scheduled, not overdue) or never run."""
        if self.last_finished is not None:
            return self.colour
        if self.runs:
            return "running"
        schedule = self.schedule
        return "waiting" if schedule is not None and schedule.waiting and schedule.enabled else "never"


def overview_cards(now: datetime | None = None) -> list[Card]:
    """One card per registered pipeline: the states' four queries, plus one for
    the steps of the runs that are going now (run_position constraint index)."""
    base = [f.name for f in fields(PipelineState)]
    cards = [Card(**{name: getattr(state, name) for name in base})
             for state in pipeline_states(now=now, window=CARD_WINDOW).values()]
    running = {card.running.pk: card for card in cards if card.running is not None}
    if running:
        for step in RunStep.objects.filter(run_id__in=running).order_by("run_id", "position"):
            running[step.run_id].running_steps.append(step)
    return cards
