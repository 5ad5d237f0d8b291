"""RunTracker: the low-level recorder of one run.

Contract (kept from the tool this replaces)::

    t = RunTracker("people", mode="manual")
    t.start_run() -> run id, or None when the run could not be started
    sid = t.start_step("sportlink-download")
    t.end_step(sid, status="success", created=0, updated=0, skipped=0, failed=0, detail=None)
    t.record_error(step_id=sid, step_name="...", identifier=..., message=..., traceback=...)
    t.record_errors(step_name, step_id, errors)  # list of dicts/exceptions, or an int
    t.end_run(status=None, summary=None)          # None: computed; True/False accepted

Every public method is safety-wrapped: a tracking failure is logged and
swallowed, never raised into the pipeline.

Design: all database writes happen on a writer thread with its own database
connection, fed by a queue.

* Rows survive the pipeline's own transactions: a rolled-back `atomic()` in
  the pipeline's thread cannot take tracking rows with it.
* With SQLite's `transaction_mode="IMMEDIATE"`, a write on a second connection
  from the pipeline's own thread would wait on that thread's own write lock.
  A separate thread simply waits its turn (and retries "database is locked"
  until the run ends) while the pipeline goes on.
* The pipeline never waits on tracking I/O in its item loop: errors are
  queued and written in batches with `executemany`; counters live in memory
  and the writer flushes them, with the heartbeat, about once a second.
  `end_run` drains the queue and waits until everything is committed.

Only `start_run` waits for the writer (it must know whether it holds the
pipeline lock). Step ids handed out by `start_step` are local handles that
the writer maps to database ids, so starting a step never blocks either.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InternalError,
    OperationalError,
    ProgrammingError,
    connection,
    transaction,
)
from django.utils import timezone

from runs import shutdown
from runs.models import Run, RunError, RunStatus, RunStep, StepStatus
from runs.redact import redact, truncate, truncate_traceback
from runs.tracebacks import RedactedText, exception_message, format_exception

logger = logging.getLogger("runs.tracker")

DEFAULT_IDENTIFIER_KEYS: tuple[str, ...] = ("knvb_id", "email", "dossier_id", "team_name", "commissie_name")

# How the identifier kind is shown for the keys above.
IDENTIFIER_KINDS = {"team_name": "team", "commissie_name": "commissie"}

_STEP_STATUSES = set(StepStatus.values)
_RUN_STATUSES = set(RunStatus.values)
_ERROR_BATCH = 500
_DRAIN_TIMEOUT_S = 120.0


def _safe(default: Any = None) -> Callable:
    """Log and swallow any exception of a tracker method (the tracking contract)."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: RunTracker, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception:
                logger.exception("run tracking failed in %s (the pipeline goes on)", method.__name__)
                return default

        return wrapper

    return decorate


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


class _Stop:
    """Queue sentinel: write the final run row, then stop."""

    def __init__(self, fields: dict) -> None:
        self.fields = fields


class _Call:
    """Queue item: run a function on the writer's connection and hand back its result."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _PermanentError(Exception):
    pass


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_permanent(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("no such table", "no such column", "does not exist", "readonly", "read-only"))


class RunTracker:
    """Records one run. See the module docstring for the contract."""

    def __init__(
        self,
        pipeline: str,
        mode: str = "manual",
        *,
        parent_id: int | None = None,
        triggered_by_id: int | None = None,
        dry_run: bool = False,
        task_id: str = "",
        identifier_keys: Sequence[str] | None = None,
        flush_interval: float | None = None,
        only: Sequence[str] | None = None,
        allow_removals: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.allow_removals = allow_removals
        self.mode = mode
        self.parent_id = parent_id
        self.triggered_by_id = triggered_by_id
        self.dry_run = dry_run
        self.task_id = task_id or ""
        self.identifier_keys = tuple(identifier_keys or DEFAULT_IDENTIFIER_KEYS)
        self.flush_interval = flush_interval if flush_interval is not None else settings.RUNS_FLUSH_INTERVAL_S
        self.run_id: int | None = None
        self.status: str | None = None
        #: The id of the running run that holds the pipeline lock, when start_run was refused.
        self.held_by: int | None = None
        #: Set by the writer when someone asked this run to stop.
        self.cancel_event = threading.Event()
        #: Why, when it was not a person's cancel request (the scheduler is stopping).
        self.cancel_reason = ""
        self.steps: dict[int, StepState] = {}
        self.error_count = 0
        self.started_at: datetime | None = None
        self._started_mono = 0.0
        self._next_local_id = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._unflushed_errors = 0
        self._writer: _Writer | None = None
        self._ended = False
        #: The run's scope (runsync --only): identifiers, or None for every record.
        self.only = list(only) if only else None
        # Record history (runs.history.record_problems reads these at the end):
        # identifier -> (kind, latest message, step) of every error with an
        # identifier; the items processed (objects, identified lazily, or
        # identifiers); identifiers of records that left the registry.
        self.error_identifiers: dict[str, tuple[str, str, str]] = {}
        self.processed_items: list[Any] = []
        self.left_identifiers: set[str] = set()
        #: Why tracking failed (a volunteer-readable cause), or None while it works.
        self.problem: str | None = None
        #: Set once the final run row is committed by end_run.
        self.final_written = False
        #: Errors counted in error_count that the writer could not store.
        self.errors_lost = 0

    # -- run -----------------------------------------------------------------

    @_safe(default=None)
    def start_run(self) -> int | None:
        """Create the Run row (taking the pipeline lock) and start the writer.

        Returns the run id, or None when the run was not started: the pipeline
        is already running (`held_by` names that run and a `skipped` run is
        recorded) or the database could not be reached (logged).
        """
        if self._writer is not None:
            return self.run_id
        self.started_at = timezone.now()
        self._started_mono = time.monotonic()
        self._writer = _Writer(self)
        self._writer.start()
        call = _Call(self._insert_run)
        self._put(call, wake=True)
        # Generous: on a busy SQLite the writer waits its turn for the lock.
        if not call.done.wait(timeout=settings.SQLITE_BUSY_TIMEOUT_S * 3 + 5):
            logger.error("run tracking: could not create the run row for %s in time", self.pipeline)
            self.problem = "the database stayed locked by another writer"
            self._shutdown_writer()
            return None
        if call.error is not None:
            self.problem = describe_db_problem(call.error)
            self._shutdown_writer()
            raise call.error
        if self.held_by is not None:
            self._shutdown_writer()
            return None
        self.status = RunStatus.RUNNING
        return self.run_id

    def _insert_run(self) -> None:
        # Runs on the writer thread.
        common = dict(
            pipeline=self.pipeline,
            mode=self.mode,
            parent_id=self.parent_id,
            triggered_by_id=self.triggered_by_id,
            dry_run=self.dry_run,
            allow_removals=self.allow_removals,
            task_id=self.task_id,
            only=self.only or [],
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            started_at=self.started_at,
        )
        try:
            with transaction.atomic():
                run = Run.objects.create(status=RunStatus.RUNNING, heartbeat_at=self.started_at, **common)
        except IntegrityError:
            holder = Run.objects.running().filter(pipeline=self.pipeline).values_list("pk", flat=True).first()
            if holder is None:
                raise  # not the lock: a real integrity problem
            message = f"Skipped: {self.pipeline} is already running (run #{holder})."
            run = Run.objects.create(
                status=RunStatus.SKIPPED,
                finished_at=self.started_at,
                duration_ms=0,
                message=message,
                summary={"held_by": holder},
                **common,
            )
            self.held_by = holder
            self.status = RunStatus.SKIPPED
        self.run_id = run.pk

    @_safe(default=None)
    def end_run(
        self, status: str | bool | None = None, summary: dict | None = None, *, message: str = ""
    ) -> str | None:
        """Finish the run, drain every queued row and wait until it is committed.

        `status`: None computes it from the steps and errors; True means "the
        pipeline succeeded" (computed: success or partial); False is `failed`.
        Returns the final status.
        """
        if self._ended or self.run_id is None or self._writer is None:
            return self.status
        self._ended = True
        for state in self.steps.values():
            if state.status == StepStatus.RUNNING:
                self._finish_state(state, StepStatus.FAILED if status is False else StepStatus.CANCELLED,
                                   reason="The run ended before this step finished.")
        if status is None or status is True:
            final = compute_run_status([s.status for s in self.steps.values()], self.error_count)
        elif status is False:
            final = RunStatus.FAILED
        elif status in _RUN_STATUSES and status != RunStatus.RUNNING:
            final = status
        else:
            logger.error("run tracking: unknown run status %r, computing it instead", status)
            final = compute_run_status([s.status for s in self.steps.values()], self.error_count)
        self.status = str(final)
        finished = timezone.now()
        fields = {
            "status": self.status,
            "finished_at": finished,
            "duration_ms": int((time.monotonic() - self._started_mono) * 1000),
            "summary": summary or {},
            "message": truncate(redact(message or ""), RunError.MESSAGE_MAX),
        }
        self._put(_Stop(fields), wake=True)
        self._writer.join(timeout=_DRAIN_TIMEOUT_S)
        if self._writer.is_alive():
            logger.error("run tracking: run #%s was not fully written within %ss", self.run_id, _DRAIN_TIMEOUT_S)
        return self.status

    def _put(self, item: Any, *, wake: bool = False, errors: int = 0) -> None:
        """Queue an item for the writer. The writer is not woken per item (a
        thread switch per error would cost more than the error itself): it
        wakes on its flush interval, for a call or the stop, or when a batch
        of errors is waiting."""
        self._queue.put(item)
        if errors:
            self._unflushed_errors += errors
            if self._unflushed_errors >= _ERROR_BATCH * 4:
                self._unflushed_errors = 0
                wake = True
        if wake:
            self._wake.set()

    def _shutdown_writer(self) -> None:
        if self._writer is not None:
            self._put(_Stop({}), wake=True)
            self._writer.join(timeout=10)

    # -- steps ---------------------------------------------------------------

    def add_child_errors(self, count: int) -> None:
        """A child run's errors count for its parent too (`all` adds up)."""
        self.error_count += max(0, int(count or 0))

    @_safe(default=None)
    def start_step(self, name: str, *, critical: bool = True, total: int | None = None) -> int | None:
        """Start a step and return its id (a handle for end_step/record_error)."""
        if self.run_id is None or self._ended:
            return None
        self._next_local_id += 1
        state = StepState(local_id=self._next_local_id, name=str(name)[:100], position=len(self.steps) + 1,
                          critical=critical, total=total)
        self.steps[state.local_id] = state
        self._put(("step", state))
        return state.local_id

    @_safe(default=None)
    def end_step(
        self,
        step_id: int | None,
        status: str = StepStatus.SUCCESS,
        created: int | None = None,
        updated: int | None = None,
        skipped: int | None = None,
        failed: int | None = None,
        detail: dict | None = None,
        *,
        read: int | None = None,
        reason: str = "",
    ) -> None:
        """Finish a step with its status and counts (counts not given keep their live value)."""
        state = self.steps.get(step_id) if step_id is not None else None
        if state is None:
            if self.run_id is not None:
                logger.warning("run tracking: end_step for unknown step %r", step_id)
            return
        if status not in _STEP_STATUSES or status == StepStatus.RUNNING:
            raise ValueError(f"unknown step status {status!r}")
        for name, value in (("read", read), ("created", created), ("updated", updated),
                            ("skipped", skipped), ("failed", failed)):
            if value is not None:
                setattr(state, name, int(value))
        if detail:
            state.detail = dict(detail)
        self._finish_state(state, status, reason)

    def _finish_state(self, state: StepState, status: str, reason: str = "") -> None:
        state.reason = truncate(redact(reason or ""), RunError.MESSAGE_MAX)
        state.finished_at = timezone.now()
        state.duration_ms = int((time.monotonic() - state.started_mono) * 1000)
        # Last: the writer treats a non-running status as final and writes the
        # finished step (counts, reason, duration) on its next flush.
        state.status = status

    @_safe(default=None)
    def skip_step(self, name: str, reason: str, *, critical: bool = True) -> int | None:
        """Record a step that did not run, with the reason (and the criticality it has when it runs)."""
        sid = self.start_step(name, critical=critical)
        if sid is not None:
            self._finish_state(self.steps[sid], StepStatus.SKIPPED, reason)
        return sid

    # -- errors --------------------------------------------------------------

    @_safe(default=None)
    def record_error(
        self,
        *,
        step_id: int | None = None,
        step_name: str = "",
        identifier: Any = "",
        identifier_kind: str = "",
        message: Any = "",
        traceback: str = "",
    ) -> None:
        """Record one error. Redaction and truncation happen on the writer thread.

        Untracked (no run row), the error is only counted, so the outcome
        still says the run had errors."""
        if self.held_by is not None:
            return
        if self.run_id is None:
            self.error_count += 1
            return
        self._put(self._error_row(step_id, step_name, identifier, identifier_kind, message, traceback), errors=1)

    def _error_row(self, step_id: Any, step_name: str, identifier: Any, identifier_kind: str, message: Any,
                   traceback: str) -> tuple:
        if not step_name and step_id in self.steps:
            step_name = self.steps[step_id].name
        self.error_count += 1
        if identifier not in (None, ""):
            self.error_identifiers[str(identifier)[:255]] = (str(identifier_kind)[:32], str(message or ""),
                                                             str(step_name)[:100])
        # A float timestamp: the writer turns it into created_at (cheaper than timezone.now() here).
        return ("error", step_id, str(step_name)[:100], "" if identifier is None else str(identifier)[:255],
                str(identifier_kind)[:32], str(message) if message else "Unknown error", traceback or "", time.time())

    def record_exception(
        self, exc: BaseException, *, step_id: int | None = None, identifier: Any = "", identifier_kind: str = ""
    ) -> None:
        """Record an exception raised while handling one item (used by runs.pipeline)."""
        try:
            self.record_error(
                step_id=step_id,
                identifier=identifier,
                identifier_kind=identifier_kind,
                message=exception_message(exc),
                traceback=format_exception(exc),
            )
        except Exception:
            logger.exception("run tracking failed in record_exception (the pipeline goes on)")

    @_safe(default=None)
    def record_errors(self, step_name: str, step_id: int | None, errors: Any) -> None:
        """Record many errors: a list of dicts or exceptions, or an int count.

        For a dict the identifier is the first present of `identifier_keys`
        (knvb_id > email > dossier_id > team_name > commissie_name by default),
        the message `message`, else `error`, else "Unknown error". An int N > 0
        records one error saying the step reported N errors; 0, None and []
        record nothing.
        """
        if not errors:
            return
        if isinstance(errors, bool):
            raise TypeError("record_errors takes a list or a count, not a bool")
        if isinstance(errors, int):
            if errors > 0:
                noun = "error" if errors == 1 else "errors"
                self.record_error(step_id=step_id, step_name=step_name, message=f"Step reported {errors} {noun}")
            return
        if isinstance(errors, (dict, BaseException, str)):
            errors = [errors]
        if self.held_by is not None:
            return
        if self.run_id is None:
            self.error_count += len(errors)
            return
        rows = []
        for item in errors:
            if isinstance(item, BaseException):
                rows.append(self._error_row(step_id, step_name, "", "", exception_message(item),
                                            format_exception(item)))
            elif isinstance(item, dict):
                identifier, kind = self.identify(item)
                message = item.get("message") or item.get("error") or "Unknown error"
                rows.append(self._error_row(step_id, step_name, identifier, item.get("identifier_kind") or kind,
                                            message, item.get("traceback") or ""))
            else:
                rows.append(self._error_row(step_id, step_name, "", "", str(item), ""))
        # One queue item for the whole list: the writer takes it in one go.
        self._put(("errors", rows), errors=len(rows))

    def identify(self, obj: Any) -> tuple[str, str]:
        """The identifier and its kind for an item: a dict's or object's first present key."""
        if obj is None:
            return "", ""
        if isinstance(obj, dict):
            if obj.get("identifier"):
                return str(obj["identifier"]), str(obj.get("identifier_kind", ""))
            for key in self.identifier_keys:
                value = obj.get(key)
                if value not in (None, ""):
                    return str(value), IDENTIFIER_KINDS.get(key, key)
            return "", ""
        if isinstance(obj, (str, int)):
            return str(obj), ""
        for key in self.identifier_keys:
            value = getattr(obj, key, None)
            if value not in (None, ""):
                return str(value), IDENTIFIER_KINDS.get(key, key)
        return "", ""

    # -- live state ------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        totals = {"created": 0, "updated": 0, "skipped": 0, "failed": 0}
        for state in list(self.steps.values()):
            totals["created"] += state.created
            totals["updated"] += state.updated
            totals["skipped"] += state.skipped
            totals["failed"] += state.failed
        return totals

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_event.is_set()


class _Writer(threading.Thread):
    """Writes a tracker's rows on its own connection. See the module docstring."""

    def __init__(self, tracker: RunTracker) -> None:
        super().__init__(name=f"run-writer-{tracker.pipeline}", daemon=True)
        self.tracker = tracker
        self.step_pks: dict[int, int] = {}
        self.written: dict[int, tuple] = {}  # local step id -> counts last written
        self.pending_steps: list[StepState] = []
        self.pending_errors: list[tuple] = []
        self.prepared_errors: list[list] = []
        self.disabled = False
        self.errors_disabled = False
        self.last_totals: tuple | None = None

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            logger.exception("run tracking: the writer thread stopped")
            self.tracker.problem = describe_db_problem(exc)
        finally:
            connection.close()

    def _loop(self) -> None:
        q = self.tracker._queue
        interval = max(0.01, float(self.tracker.flush_interval))
        next_flush = time.monotonic() + interval
        stop: _Stop | None = None
        wake = self.tracker._wake
        while True:
            wake.wait(timeout=max(0.0, next_flush - time.monotonic()))
            wake.clear()
            while stop is None:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stop = item
                elif isinstance(item, _Call):
                    self._call(item)
                else:
                    self._take(item)
                if len(self.pending_errors) >= _ERROR_BATCH * 4 and self.tracker.run_id is not None:
                    wake.set()  # write this batch now, then come straight back for more
                    break
            now = time.monotonic()
            if stop is not None or now >= next_flush or len(self.pending_errors) >= _ERROR_BATCH * 4:
                if self.tracker.run_id is not None and not self.disabled:
                    self._flush_with_retry(final=stop)
                next_flush = time.monotonic() + interval
            if stop is not None:
                # Anything queued after the stop sentinel is written too.
                leftovers = False
                while True:
                    try:
                        extra = q.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(extra, (_Stop, _Call)):
                        self._take(extra)
                        leftovers = True
                if leftovers and self.tracker.run_id is not None and not self.disabled:
                    self._flush_with_retry(final=stop)
                return

    def _call(self, call: _Call) -> None:
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
        call.done.set()

    def _take(self, item: tuple) -> None:
        kind = item[0]
        if kind == "step":
            self.pending_steps.append(item[1])
        elif kind == "error":
            if self.errors_disabled:
                self.tracker.errors_lost += 1
            else:
                self.pending_errors.append(item)
        elif kind == "errors":
            if self.errors_disabled:
                self.tracker.errors_lost += len(item[1])
            else:
                self.pending_errors.extend(item[1])

    def _flush_with_retry(self, final: _Stop | None) -> None:
        delay = 0.05
        other_failures = 0
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S if final is not None else None
        last_problem = ""
        while True:
            try:
                self._flush(final)
                return
            except _PermanentError:
                return
            # PostgreSQL reports a missing table as ProgrammingError and a read-only
            # transaction as InternalError (SQLite: OperationalError for both).
            except (OperationalError, ProgrammingError, InternalError) as exc:
                last_problem = describe_db_problem(exc)
                if _is_permanent(exc):
                    if (self.prepared_errors or self.pending_errors) and not self.errors_disabled \
                            and "runerror" in str(exc).lower():
                        # Keep what can be kept: the run and its steps without the errors.
                        logger.error("run tracking: cannot store errors for run #%s: %s", self.tracker.run_id, exc)
                        self.errors_disabled = True
                        self._lose_errors()
                        continue
                    logger.error("run tracking disabled for run #%s: %s", self.tracker.run_id, exc)
                    self.tracker.problem = describe_db_problem(exc)
                    self.disabled = True
                    return
                if not _is_locked(exc):
                    other_failures += 1
                    connection.close()  # a lost connection is reopened on the next try
                    if other_failures > 5:
                        logger.error("run tracking: dropping a batch for run #%s: %s", self.tracker.run_id, exc)
                        self.tracker.problem = describe_db_problem(exc)
                        self._lose_errors()
                        self._drop_pending()
                        return
            except Exception as exc:
                # A row that cannot be written (bad value, e.g. a NUL byte on
                # PostgreSQL) must not block the rest forever. The suspects are
                # the error rows: drop them (counted as lost) and write the
                # counts and the final run row without them; only if that
                # fails too is the whole batch dropped.
                if self.prepared_errors or self.pending_errors:
                    logger.exception("run tracking: dropping %d error row(s) of run #%s that cannot be written",
                                     len(self.prepared_errors) + len(self.pending_errors), self.tracker.run_id)
                    self._lose_errors()
                    continue
                logger.exception("run tracking: dropping a batch for run #%s: %s", self.tracker.run_id, exc)
                self.tracker.problem = (describe_db_problem(exc) if isinstance(exc, DatabaseError)
                                        else f"a row could not be written ({type(exc).__name__})")
                self._lose_errors()
                self._drop_pending()
                return
            if final is None and not self.tracker._queue.empty():
                return  # keep queueing; the next flush retries with more rows
            if deadline is not None and time.monotonic() > deadline:
                logger.error("run tracking: gave up writing run #%s after %ss", self.tracker.run_id, _DRAIN_TIMEOUT_S)
                self.tracker.problem = last_problem or "the database did not accept the final write in time"
                return
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _lose_errors(self) -> None:
        """Errors that will never be stored no longer count in the run's error_count
        (it must agree with its RunError rows); the status still knows there were errors."""
        lost = len(self.pending_errors) + len(self.prepared_errors)
        self.tracker.errors_lost += lost
        self.pending_errors.clear()
        self.prepared_errors.clear()

    def _drop_pending(self) -> None:
        self.pending_steps.clear()
        self.pending_errors.clear()
        self.prepared_errors.clear()

    def _flush(self, final: _Stop | None) -> None:
        tracker = self.tracker
        run_id = tracker.run_id
        assert run_id is not None, "the writer only starts once the run's row exists"
        now = timezone.now()
        new_step_pks: dict[int, int] = {}
        # Redact and trim before taking the write lock: it is CPU work.
        self._prepare_errors()
        with transaction.atomic():
            for state in self.pending_steps:
                step = RunStep.objects.create(
                    run_id=run_id, position=state.position, name=state.name, critical=state.critical,
                    started_at=state.started_at, total=state.total, status=StepStatus.RUNNING,
                )
                new_step_pks[state.local_id] = step.pk
            pks = {**self.step_pks, **new_step_pks}
            # Live counters of running steps, and the final row of finished ones.
            changed: dict[int, tuple] = {}
            for state in list(tracker.steps.values()):
                pk = pks.get(state.local_id)
                if pk is None:
                    continue
                snapshot = state.counts()
                if self.written.get(state.local_id) == snapshot:
                    continue
                fields: dict[str, Any] = dict(read=state.read, created=state.created, updated=state.updated,
                              skipped=state.skipped, failed=state.failed, total=state.total)
                if state.status != StepStatus.RUNNING:
                    fields.update(status=state.status, finished_at=state.finished_at,
                                  duration_ms=state.duration_ms, reason=state.reason, detail=state.detail)
                RunStep.objects.filter(pk=pk).update(**fields)
                changed[state.local_id] = snapshot
            if self.prepared_errors:
                self._insert_errors(pks)
            totals = tracker.totals()
            run_fields: dict[str, Any] = {"heartbeat_at": now, **totals,
                                          "error_count": max(0, tracker.error_count - tracker.errors_lost)}
            if final is not None and final.fields:
                run_fields.update(final.fields)
            Run.objects.filter(pk=run_id).update(**run_fields)
        # Committed: only now does the in-memory bookkeeping move on.
        if final is not None and final.fields:
            tracker.final_written = True
        self.step_pks.update(new_step_pks)
        self.written.update(changed)
        self._drop_pending()
        if final is None and not tracker.cancel_event.is_set():
            requested = Run.objects.filter(pk=run_id).values_list("cancel_requested_at", flat=True).first()
            if requested is not None:
                tracker.cancel_event.set()
        if final is None and not tracker.cancel_event.is_set() and shutdown.stop_requested():
            tracker.cancel_reason = shutdown.SHUTDOWN_REASON
            tracker.cancel_event.set()

    def _prepare_errors(self) -> None:
        adapt = connection.ops.adapt_datetimefield_value
        run_id, pipeline = self.tracker.run_id, self.tracker.pipeline[:64]
        last_ms, last_value = None, None
        for _, step_id, step_name, identifier, kind, message, tb, created in self.pending_errors:
            # Millisecond precision is plenty; errors of one burst share the adapted value.
            ms = int(created * 1000)
            if ms != last_ms:
                last_ms, last_value = ms, adapt(datetime.fromtimestamp(ms / 1000, tz=UTC))
            self.prepared_errors.append([
                run_id,
                step_id,  # a local step id until _insert_errors maps it
                pipeline,
                step_name,
                redact(identifier),
                kind,
                truncate(redact(message), RunError.MESSAGE_MAX),
                truncate_traceback(tb if type(tb) is RedactedText else redact(tb), RunError.TRACEBACK_MAX),
                last_value,
            ])
        self.pending_errors.clear()

    def _insert_errors(self, pks: dict[int, int]) -> None:
        # Multi-row INSERTs of _ROWS_PER_INSERT rows, no model instances (3-4x
        # cheaper than bulk_create, measured by bench/tracker.py). Not
        # executemany: that releases and retakes the GIL once per row, and
        # against a CPU-bound pipeline thread each retake waits out the
        # interpreter's switch interval (a convoy: a 2,000-row batch took over
        # a second during the benchmark loop). One statement per 100 rows
        # gives the GIL back 100x less often and is faster on its own too.
        # On SQLite the raw connection is used with "?" placeholders: Django's
        # cursor wrapper rewrites "%s" with a regex on every execute.
        width = len(_ERROR_COLUMNS)
        rows = [(r[0], pks.get(r[1]) if r[1] is not None else None, *r[2:]) for r in self.prepared_errors]
        per_statement = max(1, min(_ROWS_PER_INSERT, (connection.features.max_query_params or 999) // width))
        sqlite = connection.vendor == "sqlite"
        # wrap_database_errors: the raw connection raises sqlite3's own
        # exceptions; the retry logic expects Django's (locked vs missing table).
        with connection.cursor() as cursor, connection.wrap_database_errors:
            execute = connection.connection.execute if sqlite else cursor.execute
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                execute(_insert_sql(len(chunk), width, "?" if sqlite else "%s"),
                        [value for row in chunk for value in row])


_ERROR_COLUMNS = ("run_id", "step_id", "pipeline", "step_name", "identifier", "identifier_kind", "message",
                  "traceback", "created_at")


# 100 rows x 9 columns = 900 parameters: within SQLite's historical limit of 999.
_ROWS_PER_INSERT = 100


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int, width: int, placeholder: str) -> str:
    quote = connection.ops.quote_name
    one = "(" + ", ".join([placeholder] * width) + ")"
    return "INSERT INTO {} ({}) VALUES {}".format(  # noqa: S608 - quoted identifiers, bound params
        quote(RunError._meta.db_table), ", ".join(quote(c) for c in _ERROR_COLUMNS), ", ".join([one] * rows)
    )
