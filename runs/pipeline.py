"""The pipeline API: a registry and the friendly layer over RunTracker.

    from runs.pipeline import register

    @register("people", schedule="0 8,11,14,17 * * *")
    def people(run):
        with run.step("sportlink-download") as step:
            rows = read_export()
            step.read(len(rows))
        with run.step("rondo-club-sync", total=len(rows)) as step:
            for row in rows:
                with step.item(row):      # an exception here becomes a RunError
                    ...                   # for this item; the loop goes on
                    step.created()        # or updated() / skipped()
        run.skip_step("laposta-submit", "LAPOSTA_API_KEY is not set")

A step that raises is `failed`; unless it was opened with `critical=False`
the exception ends the run as `failed`. `step.skip(reason)` ends a step as
`skipped`. Cancellation is checked when a step starts (a database read) and
before every item (an in-memory flag the tracker's writer sets).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runs import shutdown
from runs.models import HELD_REMOVALS_KEY, Run, RunStatus, StepStatus
from runs.tracebacks import exception_message, format_exception
from runs.tracker import DEFAULT_IDENTIFIER_KEYS, RunTracker, StepState

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger("runs.pipeline")


class Cancelled(BaseException):  # noqa: N818 - reads as "raise Cancelled"
    """Raised at a step or item boundary after a cancel was requested.

    A BaseException, like KeyboardInterrupt, so that a pipeline's own
    `except Exception` cannot swallow it.
    """


class SkipStep(Exception):  # noqa: N818
    """Raised by `step.skip(reason)` to end a step as skipped."""


class UnknownPipeline(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        known = ", ".join(sorted(_registry)) or "none"
        return f"Unknown pipeline {self.name!r}. Known pipelines: {known}."


@dataclass(frozen=True)
class Pipeline:
    name: str
    func: Callable[[PipelineRun], Any]
    schedule: str | None = None
    description: str = ""
    identifier_keys: tuple[str, ...] = DEFAULT_IDENTIFIER_KEYS
    #: Alerting on a `partial` run (the alerts read this).
    alert_on_partial: bool = True


_registry: dict[str, Pipeline] = {}


def register(
    name: str,
    *,
    schedule: str | None = None,
    description: str = "",
    identifier_keys: Sequence[str] | None = None,
    alert_on_partial: bool = True,
) -> Callable[[Callable], Callable]:
    """Register a pipeline function under `name` with its default cron schedule."""

    def decorate(func: Callable[[PipelineRun], Any]) -> Callable[[PipelineRun], Any]:
        if schedule is not None:
            from croniter import croniter

            if not croniter.is_valid(schedule):
                raise ValueError(f"pipeline {name!r}: invalid cron schedule {schedule!r}")
        _registry[name] = Pipeline(
            name=name,
            func=func,
            schedule=schedule,
            description=description or (func.__doc__ or "").strip().split("\n")[0],
            identifier_keys=tuple(identifier_keys or DEFAULT_IDENTIFIER_KEYS),
            alert_on_partial=alert_on_partial,
        )
        return func

    return decorate


def unregister(name: str) -> None:
    _registry.pop(name, None)


def get_pipeline(name: str) -> Pipeline:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownPipeline(name) from None


def all_pipelines() -> list[Pipeline]:
    """Registered pipelines in registration order."""
    return list(_registry.values())


@dataclass(frozen=True)
class CardNote:
    """A line an app adds to a pipeline's card on the overview (work waiting for a person)."""

    text: str
    url: str = ""


_card_notes: dict[str, list[Callable[[Any], CardNote | None]]] = {}


def add_card_note(pipeline: str, func: Callable[[Any], CardNote | None]) -> None:
    """Show `func(user)` on `pipeline`'s overview card; it returns a CardNote, or None for nothing.

    The hook lets an app put its own figures on a card without `runs`
    importing the app: the app registers when its module is imported.
    `func` runs on every overview request, so it should cost one query.
    """
    notes = _card_notes.setdefault(pipeline, [])
    if func not in notes:
        notes.append(func)


def card_notes(pipeline: str, user: Any) -> list[CardNote]:
    """The notes registered for `pipeline` that have something to say to `user`."""
    notes = []
    for func in _card_notes.get(pipeline, ()):
        try:
            note = func(user)
        except Exception:  # a broken note must not take the overview down
            logger.exception("overview: the card note %r of %s failed", func, pipeline)
            continue
        if note is not None:
            notes.append(note)
    return notes


class Item:
    """Context manager around one item: an exception becomes a RunError.

    A step hands out one `Item` again and again (`Step.item`): a sync wraps
    every member in one, so creating it is most of the cost of tracking an
    item. A nested item, or one asked for on another thread, gets its own.
    """

    __slots__ = ("step", "obj", "identifier", "busy", "_cancel", "_append")

    def __init__(self, step: Step, obj: Any, identifier: Any) -> None:
        self.step = step
        self.obj = obj
        self.identifier = identifier
        self.busy = True
        self._cancel = step._cancel
        self._append = step._processed.append

    def __enter__(self) -> Item:
        if self._cancel.flag:
            self.busy = False
            raise Cancelled()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        self.busy = False
        if exc_type is None:
            # Processed: identified lazily, at the end of the run, and only
            # when the pipeline has open problems (runs.history).
            self._append(self.obj if self.identifier is None else str(self.identifier))
            return False
        if not isinstance(exc, Exception) or isinstance(exc, SkipStep):
            return False
        self.step.fail_item(exc, obj=self.obj, identifier=self.identifier)
        return True


class Step:
    """One step of a run; see the module docstring."""

    def __init__(self, run: PipelineRun, name: str, *, critical: bool = True, total: int | None = None) -> None:
        self.run = run
        self.name = name
        self.critical = critical
        self._initial_total = total
        self._tracker = run.tracker
        self._cancel = run.tracker.cancel_event
        self._processed = run.tracker.processed_items
        self._item: Item | None = None  # the Item `item()` hands out again (see Item)
        self._thread = get_ident()
        self.id: int | None = None
        self._held: list[str] = []
        # Counts are kept here when tracking could not start, so a pipeline
        # (and its tests) behave the same with or without a database.
        self.state = StepState(local_id=0, name=name, position=0, critical=critical, total=total)

    # counters: cheap in-memory increments; the writer thread flushes them
    def read(self, n: int = 1) -> None:
        self.state.read += n

    def created(self, n: int = 1) -> None:
        self.state.created += n

    def updated(self, n: int = 1) -> None:
        self.state.updated += n

    def skipped(self, n: int = 1) -> None:
        self.state.skipped += n

    def failed(self, n: int = 1) -> None:
        self.state.failed += n

    @property
    def total(self) -> int | None:
        return self.state.total

    @total.setter
    def total(self, value: int | None) -> None:
        self.state.total = value

    @property
    def detail(self) -> dict:
        return self.state.detail

    def item(self, obj: Any = None, *, identifier: Any = None) -> Item:
        """Wrap the handling of one item (a member, a team, ...)."""
        item = self._item
        if item is None or item.busy or get_ident() != self._thread:
            item = Item(self, obj, identifier)
            if self._item is None and get_ident() == self._thread:
                self._item = item
            return item
        item.busy = True
        item.obj = obj
        item.identifier = identifier
        return item

    def fail_item(self, exc: BaseException | str, *, obj: Any = None, identifier: Any = None,
                  identifier_kind: str = "") -> None:
        """Count one failed item and record why (an exception or a message)."""
        self.state.failed += 1
        if identifier is None:
            identifier, kind = self._tracker.identify(obj)
        else:
            kind = identifier_kind
        self._tracker.item_error(self.id, self.name, identifier, kind or identifier_kind, exc)

    def processed(self, identifiers: Any) -> None:
        """Mark records as handled without an error outside `step.item` (e.g.
        rows found unchanged in bulk, or sent to a destination): their open
        problems resolve at the end of the run unless they also had an error."""
        self._processed.extend(str(i) for i in identifiers)

    def record_errors(self, errors: Any) -> None:
        """Record errors reported by a helper: a list of dicts/exceptions, or a count."""
        self._tracker.record_errors(self.name, self.id, errors)

    def skip(self, reason: str) -> None:
        """End this step now as `skipped`, with the reason."""
        raise SkipStep(reason)

    def hold_removals(self, kind: str, count: int, message: str) -> None:
        """Record that this step held back `count` removals of `kind` (the pipeline decides when).

        One RunError carries `message` (what was held, why, how to approve);
        the step ends `partial` with the message as its reason, and
        `detail["held_removals"][kind] = count` tells the run page and
        runsync that approving (a run with `allow_removals`) would apply them.
        """
        self.state.detail.setdefault(HELD_REMOVALS_KEY, {})[kind] = count
        self._held.append(message)
        self._tracker.record_error(step_id=self.id, step_name=self.name, identifier=kind,
                                   identifier_kind=HELD_REMOVALS_KEY, message=message)

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def __enter__(self) -> Step:
        self.run.check_cancelled(query=True)
        self.id = self._tracker.start_step(self.name, critical=self.critical, total=self._initial_total)
        tracked = self._tracker.steps.get(self.id) if self.id is not None else None
        if tracked is not None:
            self.state = tracked
        self.run.current_step = self
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        self.run.current_step = None
        self._item = None  # it points back at this step: no cycle left for the GC to find
        state = self.state
        if exc_type is None:
            status = StepStatus.PARTIAL if state.failed or self._held else StepStatus.SUCCESS
            reason, swallow = " ".join(self._held), False
        elif issubclass(exc_type, SkipStep):
            status, reason, swallow = StepStatus.SKIPPED, str(exc), True
        elif issubclass(exc_type, Cancelled):
            status, reason, swallow = StepStatus.CANCELLED, self._tracker.cancel_reason or "Cancelled on request.", \
                False
        elif isinstance(exc, Exception):
            status, reason = StepStatus.FAILED, exception_message(exc)
            self._tracker.record_error(step_id=self.id, step_name=self.name, message=reason,
                                       traceback=format_exception(exc))
            exc._syncsite_recorded = True  # type: ignore[attr-defined]  # a mark: the runner must not record it twice
            swallow = not self.critical
        else:  # KeyboardInterrupt, SystemExit
            status, reason, swallow = StepStatus.FAILED, f"Interrupted ({exc_type.__name__}).", False
        self._tracker.end_step(self.id, status=status, reason=reason)
        state.status = status
        if self.id is None:
            state.reason = reason
            state.position = len(self.run.local_steps) + 1
            self.run.local_steps.append(state)
        return swallow


class PipelineRun:
    """What a pipeline function receives: steps, child runs, cancellation."""

    def __init__(self, pipeline: Pipeline, tracker: RunTracker, *, dry_run: bool = False, mode: str = "manual",
                 triggered_by_id: int | None = None, allow_removals: bool = False,
                 run_pipeline: Callable[..., Run] | None = None) -> None:
        self.pipeline = pipeline
        self.name = pipeline.name
        self.tracker = tracker
        self.dry_run = dry_run
        #: Removals that look like a mistake were approved for this run
        #: (`runsync --allow-removals`, the run page's approve button): the
        #: pipeline applies them instead of holding them (Step.hold_removals).
        self.allow_removals = allow_removals
        self.mode = mode
        self.triggered_by_id = triggered_by_id
        self.summary: dict[str, Any] = {}
        self.child_statuses: list[str] = []
        #: How a child run is started (runs.runner.run_pipeline, handed over by
        #: the runner, so this module never imports the runner).
        self._run_pipeline = run_pipeline
        self.current_step: Step | None = None
        #: The run's scope: None for every record, else the identifiers of
        #: `runsync --only` (a frozenset, case-folded). A scoped run reads the
        #: export, processes and sends only those records, and never retires,
        #: ends or deletes anything; every pipeline honours it (see in_scope).
        self.only: frozenset[str] | None = (
            frozenset(str(i).strip().casefold() for i in tracker.only) if tracker.only else None)
        #: Steps recorded without tracking (no run row): the outcome is derived from these.
        self.local_steps: list[StepState] = []
        self._on_finish: list[Callable[[], Any]] = []

    @property
    def run_id(self) -> int | None:
        return self.tracker.run_id

    def in_scope(self, *identifiers: Any) -> bool:
        """Whether a record belongs to this run: always without `only`, else
        when any of its identifiers (relatiecode, email, team, ...) is named."""
        if self.only is None:
            return True
        return any(i is not None and str(i).strip().casefold() in self.only for i in identifiers)
    def on_finish(self, callback: Callable[[], Any]) -> None:
        """Call `callback` when the run ends, however it ends (last registered, first called).

        For resources a run holds across its steps, e.g. a logged-in browser.
        """
        self._on_finish.append(callback)

    def finish(self) -> None:
        """Run the on_finish callbacks (the runner does this); a failing one is logged, never raised."""
        while self._on_finish:
            callback = self._on_finish.pop()
            try:
                callback()
            except Exception:
                logger.exception("run %s: an on_finish callback failed", self.run_id)

    def step(self, name: str, *, critical: bool = True, total: int | None = None) -> Step:
        return Step(self, name, critical=critical, total=total)

    def skip_step(self, name: str, reason: str, *, critical: bool = True) -> None:
        """Record a step that does not run (e.g. a destination is not configured).

        `critical`: as the step would be when it runs, so the run page and the
        status treat a skipped step like a run one.
        """
        self.check_cancelled(query=False)
        if self.tracker.skip_step(name, reason, critical=critical) is None:
            self._local(name, StepStatus.SKIPPED, reason=reason)

    def _local(self, name: str, status: str, *, reason: str = "", **counts: Any) -> StepState:
        state = StepState(local_id=0, name=name, position=len(self.local_steps) + 1, status=status,
                          reason=reason, **counts)
        self.local_steps.append(state)
        return state

    def step_states(self) -> list[StepState]:
        """Every step of this run as the pipeline saw it, tracked or not."""
        if self.tracker.run_id is not None:
            return list(self.tracker.steps.values())
        return list(self.local_steps)

    def check_cancelled(self, *, query: bool = False) -> None:
        """Raise Cancelled if a cancel was requested.

        With `query`, ask the database now (done at step boundaries); the
        writer thread also notices within about a second.
        """
        if not self.tracker.cancel_event.is_set() and query and self.tracker.run_id is not None:
            try:
                requested = Run.objects.filter(pk=self.tracker.run_id).values_list(
                    "cancel_requested_at", flat=True).first()
            except Exception:
                logger.exception("run tracking: could not check for a cancel request")
                requested = None
            if requested is not None:
                self.tracker.cancel_event.set()
        if not self.tracker.cancel_event.is_set() and query and shutdown.stop_requested():
            self.tracker.cancel_reason = shutdown.SHUTDOWN_REASON
            self.tracker.cancel_event.set()
        if self.tracker.cancel_event.is_set():
            raise Cancelled()

    def run_child(self, name: str) -> Run:
        """Run another pipeline as a child of this run and show it as a step here.

        The child tracks its own steps; this run gets one step named after the
        child with the child's status and totals. A failing child does not stop
        the parent: the caller goes on with the next.
        """
        if self._run_pipeline is None:
            raise RuntimeError("this run was not started by the runner, so it cannot start child runs")
        self.check_cancelled(query=True)
        sid = self.tracker.start_step(name, critical=False)
        child = self._run_pipeline(name, mode=self.mode, dry_run=self.dry_run, parent=self.tracker.run_id,
                             triggered_by_id=self.triggered_by_id, only=self.tracker.only,
                             allow_removals=self.allow_removals)
        # A child with nothing configured is a skipped step here, not a problem
        # (compute_run_status: only a child that could not run counts).
        if not child.not_configured:
            self.child_statuses.append(child.status)
        # Its errors are this run's errors too: the parent adds up.
        self.tracker.add_child_errors(child.error_count)
        step_of_child: dict[str, str] = {
            RunStatus.SUCCESS: StepStatus.SUCCESS,
            RunStatus.PARTIAL: StepStatus.PARTIAL,
            RunStatus.SKIPPED: StepStatus.SKIPPED,
            RunStatus.CANCELLED: StepStatus.CANCELLED,
        }
        step_status = step_of_child.get(child.status, StepStatus.FAILED)
        self.tracker.end_step(
            sid, status=step_status, created=child.created, updated=child.updated, skipped=child.skipped,
            failed=child.failed, detail={"child_run": child.pk}, reason=child.message,
        )
        if sid is None:
            self._local(name, step_status, reason=child.message, created=child.created, updated=child.updated,
                        skipped=child.skipped, failed=child.failed)
        if child.status == RunStatus.CANCELLED:
            raise Cancelled()
        return child
