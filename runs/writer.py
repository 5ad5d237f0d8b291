"""The run tracker's writer thread: every database write of a run, on its own connection.

`runs.tracker.RunTracker` (the pipeline's side) starts one `Writer` per run
and hands it what it needs, nothing more: the queue it feeds, the wake event,
the run's live `StepState`s (the pipeline thread writes their counters, the
writer only reads them), the cancel event and a `WriterReport` through which
the writer reports back (a tracking problem, errors it could not store,
whether the final run row is committed, why it cancelled the run).

* Rows survive the pipeline's own transactions: a rolled-back `atomic()` in
  the pipeline's thread cannot take tracking rows with it.
* With SQLite's `transaction_mode="IMMEDIATE"`, a write on a second connection
  from the pipeline's own thread would wait on that thread's own write lock.
  A separate thread simply waits its turn (and retries "database is locked"
  until the run ends) while the pipeline goes on.
* The pipeline never waits on tracking I/O in its item loop: errors are queued and written in
  batches by `runs.errorrows.ErrorRows` (redacted here: one joined check a batch, text by
  text only when it finds something; multi-row INSERTs), and the problems they open or update are upserted in the
  same transaction (runs.history.upsert_problems): the end of the run only resolves. Counters live in
  memory and are flushed, with the heartbeat and the run's error count, every
  flush interval (RUNS_FLUSH_INTERVAL_S, 1 s); each such flush also notices a
  cancel request or a scheduler shutdown and sets the cancel event. Between
  them, as soon as ERROR_BATCH errors wait, they are written on their own, so
  what is left for the end of the run is small. The `Stop` item writes the
  final run row (with the tracker's final error count) and ends the thread.

Queue items: `Call` (run a function here, e.g. the run row's INSERT, and hand
back its result), `Stop`, and tuples ("step", StepState), ("error", *row),
("errors", [rows]) and ("child_errors", n); anything else is ignored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError, InternalError, OperationalError, ProgrammingError, connection, transaction
from django.utils import timezone

from runs import shutdown
from runs.errorrows import ErrorRows, ProblemsUnwritable, Redactions
from runs.models import Run, RunStep, StepStatus

logger = logging.getLogger("runs.tracker")

#: The writer is woken to write errors once this many are waiting (it also wakes on its interval).
ERROR_BATCH = 1000
#: How long the final write may keep retrying a locked database.
DRAIN_TIMEOUT_S = 120.0


def describe_db_problem(exc: BaseException) -> str:
    """A volunteer-readable cause for a database error (never the raw text: it
    can carry host names or SQL)."""
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "the database is read-only"
    if "disk" in text and "full" in text or "no space left" in text or "diskfull" in text:
        return "the disk is full"
    if _is_locked(exc):
        return "the database stayed locked by another writer"
    if "no such table" in text or "does not exist" in text:
        return "the run tables are missing (run `manage.py migrate`)"
    return f"the database did not accept a write ({type(exc).__name__})"


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_permanent(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("no such table", "no such column", "does not exist", "readonly", "read-only"))


class Stop:
    """Queue item: write the final run row (`fields`; none: just the counters), then stop."""

    def __init__(self, fields: dict, error_count: int | None = None) -> None:
        self.fields = fields
        #: The run's final error count as the tracker counted it (None: the writer's own tally).
        self.error_count = error_count


class Call:
    """Queue item: run a function on the writer's connection and hand back its result.

    With `sets_run_id`, the result is (the run's id, ...): the writer writes that run from then on.
    """

    def __init__(self, fn: Callable[[], Any], *, sets_run_id: bool = False) -> None:
        self.fn = fn
        self.sets_run_id = sets_run_id
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class CancelEvent(threading.Event):
    """The run's cancel event, whose state is also a plain attribute: `Item.__enter__`
    reads `flag` for every item of a sync, and `Event.is_set` is a Python-level call."""

    flag = False

    def set(self) -> None:
        self.flag = True
        super().set()

    def clear(self) -> None:
        self.flag = False
        super().clear()


@dataclass
class StepState:
    """In-memory state of one step; the pipeline thread writes the counters,
    the writer thread reads them when it flushes."""

    local_id: int
    name: str
    position: int
    critical: bool = True
    started_at: datetime = field(default_factory=timezone.now)
    started_mono: float = field(default_factory=time.monotonic)
    status: str = StepStatus.RUNNING
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    total: int | None = None
    reason: str = ""
    detail: dict = field(default_factory=dict)
    finished_at: datetime | None = None
    duration_ms: int | None = None

    def counts(self) -> tuple:
        return (self.read, self.created, self.updated, self.skipped, self.failed, self.total, self.status)

    @property
    def held_removals(self) -> dict:
        """Like RunStep.held_removals: kind -> count of the removals this step held back."""
        return self.detail.get("held_removals") or {}


def step_totals(steps: dict[int, StepState]) -> dict[str, int]:
    """A run's counts: the sum of its steps' (read while the pipeline thread may write them)."""
    totals = {"created": 0, "updated": 0, "skipped": 0, "failed": 0}
    for state in list(steps.values()):
        totals["created"] += state.created
        totals["updated"] += state.updated
        totals["skipped"] += state.skipped
        totals["failed"] += state.failed
    return totals


@dataclass
class WriterReport:
    """What the writer tells the tracker (read on the pipeline's thread)."""

    #: Why tracking failed (a volunteer-readable cause), or None while it works.
    problem: str | None = None
    #: Errors the writer could not store (they no longer count in the stored error_count).
    errors_lost: int = 0
    #: Set once the final run row is committed.
    final_written: bool = False
    #: Why the writer set the cancel event when no person asked (the scheduler is stopping).
    cancel_reason: str = ""
    redactions: Redactions = field(default_factory=Redactions)


class Writer(threading.Thread):
    """Writes one run's rows on its own connection. See the module docstring."""

    def __init__(self, *, pipeline: str, rows: queue.SimpleQueue, wake: threading.Event,
                 steps: dict[int, StepState], cancel_event: threading.Event, report: WriterReport,
                 flush_interval: float, problems: bool = True) -> None:
        super().__init__(name=f"run-writer-{pipeline}", daemon=True)
        self.pipeline = pipeline
        self.queue = rows
        self.wake = wake
        self.steps = steps
        self.cancel_event = cancel_event
        self.report = report
        self.flush_interval = flush_interval
        self.run_id: int | None = None
        self.errors_taken = 0  # error rows taken from the queue, plus child runs' errors
        self.step_pks: dict[int, int] = {}
        self.written: dict[int, tuple] = {}  # local step id -> counts last written
        self.pending_steps: list[StepState] = []
        # The errors taken and not yet committed (with the problems they open or update).
        self.errors = ErrorRows(pipeline=pipeline, redactions=report.redactions, problems=problems)
        self.disabled = False
        self.errors_disabled = False

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            logger.exception("run tracking: the writer thread stopped")
            self.report.problem = describe_db_problem(exc)
        finally:
            connection.close()

    def _writable(self) -> bool:
        return self.run_id is not None and not self.disabled

    def _loop(self) -> None:
        q, wake = self.queue, self.wake
        interval = max(0.01, float(self.flush_interval))
        next_flush = time.monotonic() + interval
        stop: Stop | None = None
        while True:
            wake.wait(timeout=max(0.0, next_flush - time.monotonic()))
            wake.clear()
            while stop is None:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Stop):
                    stop = item
                elif isinstance(item, Call):
                    self._call(item)
                else:
                    self._take(item)
            if stop is not None or time.monotonic() >= next_flush:
                if self._writable():
                    self._flush_with_retry(final=stop)
                next_flush = time.monotonic() + interval
            elif len(self.errors.pending) >= ERROR_BATCH and self._writable():
                # Between heartbeats, a batch of errors is written on its own (no counters, no
                # cancel check): small batches keep the drain at the end of the run short.
                self._flush_with_retry(final=None, full=False)
            if stop is not None:
                # Anything queued after the stop item is written too.
                leftovers = False
                while True:
                    try:
                        extra = q.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(extra, (Stop, Call)):
                        self._take(extra)
                        leftovers = True
                if leftovers and self._writable():
                    self._flush_with_retry(final=stop)
                return

    def _call(self, call: Call) -> None:
        delay = 0.05
        while True:
            try:
                call.result = call.fn()
                break
            except OperationalError as exc:
                if _is_locked(exc):
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                call.error = exc
                break
            except BaseException as exc:  # handed back to the caller's thread
                call.error = exc
                break
        if call.sets_run_id and call.error is None:
            self.run_id = call.result[0]
        call.done.set()

    def _take(self, item: tuple) -> None:
        kind = item[0]
        if kind == "step":
            self.pending_steps.append(item[1])
        elif kind == "error":
            self.errors_taken += 1
            if self.errors_disabled:
                self.report.errors_lost += 1
            else:
                self.errors.pending.append(item)
        elif kind == "errors":
            self.errors_taken += len(item[1])
            if self.errors_disabled:
                self.report.errors_lost += len(item[1])
            else:
                self.errors.pending.extend(item[1])
        elif kind == "child_errors":
            self.errors_taken += item[1]

    def _flush_with_retry(self, final: Stop | None, *, full: bool = True) -> None:
        delay = 0.05
        other_failures = 0
        deadline = time.monotonic() + DRAIN_TIMEOUT_S if final is not None else None
        last_problem = ""
        while True:
            try:
                self._flush(final, full=full)
                return
            except ProblemsUnwritable:
                continue  # rolled back; the same rows again, without their problems
            # PostgreSQL reports a missing table as ProgrammingError and a read-only
            # transaction as InternalError (SQLite: OperationalError for both).
            except (OperationalError, ProgrammingError, InternalError) as exc:
                last_problem = describe_db_problem(exc)
                if _is_permanent(exc):
                    if self.errors and not self.errors_disabled \
                            and "runerror" in str(exc).lower():
                        # Keep what can be kept: the run and its steps without the errors.
                        logger.error("run tracking: cannot store errors for run #%s: %s", self.run_id, exc)
                        self.errors_disabled = True
                        self._lose_errors()
                        continue
                    logger.error("run tracking disabled for run #%s: %s", self.run_id, exc)
                    self.report.problem = describe_db_problem(exc)
                    self.disabled = True
                    return
                if not _is_locked(exc):
                    other_failures += 1
                    connection.close()  # a lost connection is reopened on the next try
                    if other_failures > 5:
                        logger.error("run tracking: dropping a batch for run #%s: %s", self.run_id, exc)
                        self.report.problem = describe_db_problem(exc)
                        self._lose_errors()
                        self._drop_pending()
                        return
            except Exception as exc:
                # A row that cannot be written (bad value, e.g. a NUL byte on
                # PostgreSQL) must not block the rest forever. The suspects are
                # the error rows: drop them (counted as lost) and write the
                # counts and the final run row without them; only if that
                # fails too is the whole batch dropped.
                if self.errors:
                    logger.exception("run tracking: dropping %d error row(s) of run #%s that cannot be written",
                                     len(self.errors), self.run_id)
                    self._lose_errors()
                    continue
                logger.exception("run tracking: dropping a batch for run #%s: %s", self.run_id, exc)
                self.report.problem = (describe_db_problem(exc) if isinstance(exc, DatabaseError)
                                       else f"a row could not be written ({type(exc).__name__})")
                self._lose_errors()
                self._drop_pending()
                return
            if final is None and not self.queue.empty():
                return  # keep queueing; the next flush retries with more rows
            if deadline is not None and time.monotonic() > deadline:
                logger.error("run tracking: gave up writing run #%s after %ss", self.run_id, DRAIN_TIMEOUT_S)
                self.report.problem = last_problem or "the database did not accept the final write in time"
                return
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _lose_errors(self) -> None:
        """Errors that will never be stored no longer count in the run's error_count
        (it must agree with its RunError rows); the status still knows there were errors."""
        self.report.errors_lost += self.errors.lose()

    def _drop_pending(self) -> None:
        self.pending_steps.clear()
        self.errors.clear()

    def _write_steps(self, pks: dict[int, int]) -> dict[int, tuple]:
        """UPDATE the live counters of running steps and the final row of finished ones that
        changed since they were last written; returns their snapshots."""
        changed: dict[int, tuple] = {}
        for state in list(self.steps.values()):
            pk = pks.get(state.local_id)
            snapshot = state.counts()
            if pk is None or self.written.get(state.local_id) == snapshot:
                continue
            fields: dict[str, Any] = dict(read=state.read, created=state.created, updated=state.updated,
                                          skipped=state.skipped, failed=state.failed, total=state.total)
            if state.status != StepStatus.RUNNING:
                fields.update(status=state.status, finished_at=state.finished_at,
                              duration_ms=state.duration_ms, reason=state.reason, detail=state.detail)
            RunStep.objects.filter(pk=pk).update(**fields)
            changed[state.local_id] = snapshot
        return changed

    def _write_run(self, run_id: int, final: Stop | None, now: datetime) -> None:
        """UPDATE the run row: the heartbeat, the totals and the error count (and the final fields)."""
        counted = self.errors_taken if final is None or final.error_count is None else final.error_count
        fields: dict[str, Any] = {"heartbeat_at": now, **step_totals(self.steps),
                                  "error_count": max(0, counted - self.report.errors_lost)}
        if final is not None and final.fields:
            fields.update(final.fields)
        Run.objects.filter(pk=run_id).update(**fields)

    def _create_steps(self, run_id: int) -> None:
        """INSERT the steps started since the last flush, committed before their errors (which
        then carry the steps' database ids from the start)."""
        created: dict[int, int] = {}
        with transaction.atomic():
            for state in self.pending_steps:
                created[state.local_id] = RunStep.objects.create(
                    run_id=run_id, position=state.position, name=state.name, critical=state.critical,
                    started_at=state.started_at, total=state.total, status=StepStatus.RUNNING,
                ).pk
        self.step_pks.update(created)
        self.pending_steps.clear()

    def _flush(self, final: Stop | None, *, full: bool = True) -> None:
        """Write what is pending: new steps first, then in one transaction the errors (with their
        problems) and, with `full` (the heartbeat), the counters and the run row; after the
        commit, a full flush looks for a cancel request."""
        report = self.report
        run_id = self.run_id
        assert run_id is not None, "the writer only flushes once the run's row exists"
        now = timezone.now()
        if self.pending_steps:
            self._create_steps(run_id)
        pks = self.step_pks
        # Redact and trim before taking the write lock: it is CPU work.
        self.errors.prepare(run_id, pks)
        changed: dict[int, tuple] = {}
        with transaction.atomic():
            self.errors.write(run_id=run_id, now=now)
            if full:
                changed = self._write_steps(pks)
                self._write_run(run_id, final, now)
        # Committed: only now does the in-memory bookkeeping move on.
        if final is not None and final.fields:
            report.final_written = True
        self.written.update(changed)
        self._drop_pending()
        if not full:
            return
        if final is None and not self.cancel_event.is_set():
            requested = Run.objects.filter(pk=run_id).values_list("cancel_requested_at", flat=True).first()
            if requested is not None:
                self.cancel_event.set()
        if final is None and not self.cancel_event.is_set() and shutdown.stop_requested():
            report.cancel_reason = shutdown.SHUTDOWN_REASON
            self.cancel_event.set()
