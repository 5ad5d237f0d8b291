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

All database writes happen on a writer thread (runs.writer.Writer) with its
own connection, fed by a queue: the pipeline never waits on tracking I/O in
its item loop. Errors are queued as plain tuples (redacted and trimmed on the
writer thread); step counters live in memory (`StepState`), and the writer
flushes them with the heartbeat about once a second. `end_run` queues the
final run row and waits until everything is committed.

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
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from runs.identifiers import DEFAULT_IDENTIFIER_KEYS, IDENTIFIER_KINDS, identify
from runs.models import Run, RunError, RunStatus, StepStatus
from runs.redact import redact, truncate
from runs.status import compute_run_status
from runs.tracebacks import RedactedText, exception_text, format_parts
from runs.writer import (
    DRAIN_TIMEOUT_S,
    ERROR_BATCH,
    Call,
    CancelEvent,
    StepState,
    Stop,
    Writer,
    WriterReport,
    describe_db_problem,
    step_totals,
)

__all__ = ["DEFAULT_IDENTIFIER_KEYS", "IDENTIFIER_KINDS", "CancelEvent", "RunTracker", "StepState",
           "compute_run_status", "describe_db_problem"]

logger = logging.getLogger("runs.tracker")

_IDENTIFIER_MAX = RunError.IDENTIFIER_MAX
_STEP_STATUSES = set(StepStatus.values)
_RUN_STATUSES = set(RunStatus.values)


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
        self.cancel_event = CancelEvent()
        self.steps: dict[int, StepState] = {}
        self.error_count = 0
        self.started_at: datetime | None = None
        self._started_mono = 0.0
        self._next_local_id = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._unflushed_errors = 0
        self._writer: Writer | None = None
        # The writer reports back here: problem, errors_lost, final_written, cancel_reason.
        self._report = WriterReport()
        #: The error texts the writer redacted, each once (runs.history.resolve_problems reuses them).
        self.redactions = self._report.redactions
        self._ended = False
        #: The run's scope (runsync --only): identifiers, or None for every record.
        self.only = list(only) if only else None
        # Record history (runs.history.resolve_problems reads these at the end):
        # the identifiers that had an error; the items processed (objects,
        # identified lazily, or identifiers); identifiers of records that left
        # the registry. (The writer opens and updates the problems themselves.)
        self.error_identifiers: set[str] = set()
        self.processed_items: list[Any] = []
        self.left_identifiers: set[str] = set()

    @property
    def problem(self) -> str | None:
        """Why tracking failed (a volunteer-readable cause), or None while it works."""
        return self._report.problem

    @problem.setter
    def problem(self, value: str | None) -> None:
        self._report.problem = value

    @property
    def cancel_reason(self) -> str:
        """Why the run was cancelled when it was not a person's request (the scheduler is stopping)."""
        return self._report.cancel_reason

    @cancel_reason.setter
    def cancel_reason(self, value: str) -> None:
        self._report.cancel_reason = value

    @property
    def final_written(self) -> bool:
        """Whether end_run's final run row is committed."""
        return self._report.final_written

    @property
    def errors_lost(self) -> int:
        """Errors counted in error_count that the writer could not store."""
        return self._report.errors_lost

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
        self._writer = Writer(pipeline=self.pipeline, rows=self._queue, wake=self._wake, steps=self.steps,
                              cancel_event=self.cancel_event, report=self._report,
                              flush_interval=self.flush_interval, problems=not self.dry_run)
        self._writer.start()
        call = Call(self._insert_run, sets_run_id=True)
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
        self.run_id, self.held_by = call.result
        if self.held_by is not None:
            self.status = RunStatus.SKIPPED
            self._shutdown_writer()
            return None
        self.status = RunStatus.RUNNING
        return self.run_id

    def _insert_run(self) -> tuple[int, int | None]:
        """INSERT the run row (on the writer thread); returns its id and, when the
        pipeline lock was taken, the id of the run holding it (the row is `skipped`)."""
        common = dict(pipeline=self.pipeline, mode=self.mode, parent_id=self.parent_id,
                      triggered_by_id=self.triggered_by_id, dry_run=self.dry_run, allow_removals=self.allow_removals,
                      task_id=self.task_id, only=self.only or [], host=socket.gethostname()[:255], pid=os.getpid(),
                      started_at=self.started_at)
        try:
            with transaction.atomic():
                run = Run.objects.create(status=RunStatus.RUNNING, heartbeat_at=self.started_at, **common)
            return run.pk, None
        except IntegrityError:
            holder = Run.objects.running().filter(pipeline=self.pipeline).values_list("pk", flat=True).first()
            if holder is None:
                raise  # not the lock: a real integrity problem
            message = f"Skipped: {self.pipeline} is already running (run #{holder})."
            run = Run.objects.create(status=RunStatus.SKIPPED, finished_at=self.started_at, duration_ms=0,
                                     message=message, summary={"held_by": holder}, **common)
            return run.pk, holder

    @_safe(default=None)
    def end_run(
        self, status: str | bool | None = None, summary: dict | None = None, *, message: str = "",
        wait: bool = True,
    ) -> str | None:
        """Finish the run, drain every queued row and wait until it is committed.

        `status`: None computes it from the steps and errors; True means "the
        pipeline succeeded" (computed: success or partial); False is `failed`.
        Returns the final status. With `wait=False` the final row is only
        queued: call `wait_written()` before reading what the run wrote.
        """
        if self._ended or self.run_id is None or self._writer is None or self.held_by is not None:
            return self.status  # a refused start already wrote its `skipped` run
        self._ended = True
        final: str
        for state in self.steps.values():
            if state.status == StepStatus.RUNNING:
                self._finish_state(state, StepStatus.FAILED if status is False else StepStatus.CANCELLED,
                                   reason="The run ended before this step finished.")
        if status is False:
            final = RunStatus.FAILED
        elif status in _RUN_STATUSES and status != RunStatus.RUNNING:
            final = str(status)
        else:
            if status is not None and status is not True:
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
        self._put(Stop(fields, error_count=self.error_count), wake=True)
        if wait:
            self.wait_written()
        return self.status

    @_safe(default=None)
    def wait_written(self) -> None:
        """Wait until the writer has committed everything end_run queued (or gave up)."""
        if self._writer is None or not self._ended:
            return
        self._writer.join(timeout=DRAIN_TIMEOUT_S)
        if self._writer.is_alive():
            logger.error("run tracking: run #%s was not fully written within %ss", self.run_id, DRAIN_TIMEOUT_S)

    def _put(self, item: Any, *, wake: bool = False, errors: int = 0) -> None:
        """Queue an item for the writer. The writer is not woken per item (a
        thread switch per error would cost more than the error itself): it
        wakes on its flush interval, for a call or the stop, or when a batch
        of errors is waiting."""
        self._queue.put(item)
        if errors:
            self._unflushed_errors += errors
            if self._unflushed_errors >= ERROR_BATCH:
                self._unflushed_errors = 0
                wake = True
        if wake:
            self._wake.set()

    def _shutdown_writer(self) -> None:
        if self._writer is not None:
            self._put(Stop({}), wake=True)
            self._writer.join(timeout=10)

    # -- steps ---------------------------------------------------------------

    def add_child_errors(self, count: int) -> None:
        """A child run's errors count for its parent too (`all` adds up)."""
        count = max(0, int(count or 0))
        self.error_count += count
        if count and self.run_id is not None and not self._ended:
            self._put(("child_errors", count))

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

    def item_error(self, step_id: int | None, step_name: str, identifier: Any, identifier_kind: str,
                   error: Any) -> None:
        """`record_error` for one failed item (runs.pipeline.Step.fail_item): positional
        arguments and no wrapper, as a sync may fail thousands of items. `error` is the
        exception (its traceback's exception line is redacted on the writer's thread,
        runs.tracebacks.format_parts) or a message."""
        try:
            if self.held_by is not None:
                return
            if self.run_id is None:
                self.error_count += 1
                return
            if isinstance(error, BaseException):
                row = self._exception_row(step_id, step_name, identifier, identifier_kind, error)
            else:
                row = self._error_row(step_id, step_name, identifier, identifier_kind, error, "")
            self._put(row, errors=1)
        except Exception:
            logger.exception("run tracking failed in item_error (the pipeline goes on)")

    def _exception_row(self, step_id: Any, step_name: str, identifier: Any, identifier_kind: str,
                       exc: BaseException) -> tuple:
        """The queued row of an exception: its message (`str(exc)` taken once, or its class's
        name) and its traceback in two parts (runs.tracebacks.format_parts)."""
        text = exception_text(exc)
        head, line = format_parts(exc, text)
        return self._error_row(step_id, step_name, identifier, identifier_kind, text or type(exc).__name__,
                               head, line, True)

    def _error_row(self, step_id: Any, step_name: str, identifier: Any, identifier_kind: str, message: Any,
                   traceback: str, line: str = "", redacted: bool = False) -> tuple:
        """The queued row. `redacted`: `traceback` is (a RedactedText is too); `line`: an
        exception line still to be redacted and appended to it (runs.tracebacks.format_parts)."""
        if not step_name and step_id in self.steps:
            step_name = self.steps[step_id].name
        self.error_count += 1
        step_name, kind = str(step_name)[:100], str(identifier_kind)[:32]
        message = str(message) if message else ""
        identifier = "" if identifier is None or identifier == "" else str(identifier)[:_IDENTIFIER_MAX]
        if identifier:
            self.error_identifiers.add(identifier)
        # A float timestamp (the writer makes it created_at: cheaper than timezone.now()). Plain values
        # only (a str traceback, flagged "already redacted"): the GC untracks such a tuple at its first
        # pass, so queued rows never reach the old generation (a RedactedText did: full collections).
        if type(traceback) is RedactedText:
            traceback, redacted = str(traceback), True
        return ("error", step_id, step_name, identifier, kind, message or "Unknown error", traceback or "", redacted,
                line, time.time())

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
                rows.append(self._exception_row(step_id, step_name, "", "", item))
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
        """The identifier and its kind for an item (runs.identifiers.identify, this pipeline's keys)."""
        return identify(obj, self.identifier_keys)

    # -- live state ------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        return step_totals(self.steps)
