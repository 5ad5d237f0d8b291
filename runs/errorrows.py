"""A run's errors on their way to the database: the writer thread's half of error tracking.

The pipeline's thread queues each error as a tuple of plain values
(runs.tracker); the writer (runs.writer) takes them into an `ErrorRows`,
which, on each flush:

* prepares them: redacted and trimmed. A batch's identifiers and messages
  are checked with one look at them joined, and so are the exception lines
  of failed items' tracebacks (runs.tracebacks.format_parts: the frames come
  redacted); only a batch that holds something a redaction could touch has
  its texts redacted one by one, each distinct text once per run
  (`Redactions`);
* INSERTs them as RunErrors, in multi-row statements;
* upserts their problems (runs.history.upsert_problems) in the same
  transaction: the latest error per identifier of the batch, unless the run is
  a dry run or the identifier names an export line (`NOT_A_RECORD`). If that
  fails, the transaction is retried without problems for the rest of the run
  (`ProblemsUnwritable`).

Rows stay here until the flush's transaction commits (`clear`), so a retried
flush writes them again; `lose` drops the ones that can never be written.
"""

from __future__ import annotations

import functools
import itertools
import logging
import operator
import time
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connection

from runs.bulksql import execute_rows, select_rows, values
from runs.history import NOT_A_RECORD, problem_identifier, upsert_problems
from runs.models import RunError
from runs.redact import any_needs_redaction, redact, truncate, truncate_traceback

logger = logging.getLogger("runs.tracker")

_ERROR_COLUMNS = ("run_id", "step_id", "pipeline", "step_name", "identifier", "identifier_kind", "message",
                  "traceback", "created_at")
_TRACEBACK = _ERROR_COLUMNS.index("traceback")
# A queued error's identifier and message (runs.tracker: ("error", step_id, step_name, identifier, kind, message, ...)).
_IDENTIFIER, _MESSAGE = operator.itemgetter(3), operator.itemgetter(5)
# A run with more distinct texts than this redacts the rest without remembering them.
_REDACTIONS_MAX = 50_000


class ProblemsUnwritable(Exception):  # noqa: N818 - reads as "raise ProblemsUnwritable"
    """A batch's problem upsert failed: its transaction is rolled back and the flush retried,
    now without problems (`ErrorRows.problems_on` is off), so the errors are kept."""


class Redactions:
    """Redacted texts of one run, each computed once: the writer fills it for the batches
    that hold something to redact (`ErrorRows.prepare`), runs.history.resolve_problems
    reads it at the end."""

    def __init__(self) -> None:
        self.identifiers: dict[str, str] = {}
        self.messages: dict[str, str] = {}

    def identifier(self, text: str) -> str:
        """`redact(text)`."""
        done = self.identifiers.get(text)
        if done is None:
            done = redact(text)
            if len(self.identifiers) < _REDACTIONS_MAX:
                self.identifiers[text] = done
        return done

    def message(self, text: str) -> str:
        """`truncate(redact(text), RunError.MESSAGE_MAX)`."""
        done = self.messages.get(text)
        if done is None:
            done = truncate(redact(text), RunError.MESSAGE_MAX)
            if len(self.messages) < _REDACTIONS_MAX:
                self.messages[text] = done
        return done


class ErrorRows:
    """One run's error rows between the queue and the database; see the module docstring."""

    def __init__(self, *, pipeline: str, redactions: Redactions, problems: bool) -> None:
        self.pipeline = pipeline[:64]
        self.redactions = redactions
        #: Whether errors open and update problems (not in a dry run; off after a failed upsert).
        self.problems_on = problems
        self.pending: list[tuple] = []  # as queued: ("error", step_id, step_name, identifier, ...)
        #: The prepared rows' values, flat (len(_ERROR_COLUMNS) per row): the INSERTs' parameters.
        #: Plain values only: nothing here for the garbage collector to track.
        self.prepared: list[Any] = []
        #: The prepared rows' problems: problem identifier -> (kind, step, message), the latest error's.
        self.problems: dict[str, tuple[str, str, str]] = {}
        self._stamps: _Stamps | None = None  # made on the writer's thread, for its connection

    def __len__(self) -> int:
        return len(self.pending) + len(self.prepared) // len(_ERROR_COLUMNS)

    def clear(self) -> None:
        self.pending.clear()
        self.prepared.clear()
        self.problems.clear()

    def lose(self) -> int:
        """Drop every row not yet written; returns how many errors that loses."""
        lost = len(self)
        self.clear()
        return lost

    def prepare(self, run_id: int, step_pks: dict[int, int]) -> None:
        """Redact and trim the pending rows, their steps' local ids mapped to database ids
        (CPU work, done before the write lock is taken)."""
        if not self.pending:
            return
        if self._stamps is None:
            self._stamps = _Stamps()
        pipeline, stamp, redactions = self.pipeline, self._stamps, self.redactions
        tb_max, message_max = RunError.TRACEBACK_MAX, RunError.MESSAGE_MAX
        # The batch's identifiers and messages, checked joined: every guard of runs.redact is a
        # substring test. A clean batch (the rule) keeps its texts. Not a memo of every text:
        # remembering a run's 10,000 new texts held the GIL longer than this check does.
        clean = not any_needs_redaction(itertools.chain(map(_IDENTIFIER, self.pending), map(_MESSAGE, self.pending)))
        prepared = self.prepared
        extend, problems = prepared.extend, self.problems if self.problems_on else None
        # Exception lines of failed items' tracebacks (runs.tracebacks.format_parts): redacted
        # below, all with one check.
        lines: list[str] = []
        line_at: list[int] = []  # where in `prepared` each such traceback went
        heads: list[str] = []  # and the rest of it
        last_ms, last_value = None, None
        for _, step_id, step_name, identifier, kind, message, tb, tb_redacted, line, created in self.pending:
            # Millisecond precision is plenty; errors of one burst share the value.
            ms = int(created * 1000)
            if ms != last_ms:
                last_ms, last_value = ms, stamp(ms)
            if not tb_redacted:
                tb = redact(tb)
            if line:
                lines.append(line)
                line_at.append(len(prepared) + _TRACEBACK)
                heads.append(tb)
                tb += line
            if not clean:
                identifier, message = redactions.identifier(identifier), redactions.message(message)
            elif len(message) > message_max:
                message = truncate(message, message_max)
            extend((
                run_id,
                step_pks.get(step_id),  # None: a run-wide error (or a step that was never written)
                pipeline,
                step_name,
                identifier,
                kind,
                message,
                tb if len(tb) <= tb_max else truncate_traceback(tb, tb_max),
                last_value,
            ))
            if problems is not None and identifier and kind not in NOT_A_RECORD:
                # A dict: the batch's latest error per identifier wins (one row per identifier
                # in an upsert statement: PostgreSQL refuses to update a row twice in one),
                # and, like the upsert, an empty kind keeps the one known.
                key = problem_identifier(identifier)
                if not kind and key in problems:
                    kind = problems[key][0]
                problems[key] = (kind, step_name, message)
        # One check for all the lines; only when it fails is each redacted on its own.
        if lines and any_needs_redaction(lines):
            for at, head, line in zip(line_at, heads, lines, strict=True):
                prepared[at] = truncate_traceback(head + redact(line), tb_max)
        self.pending.clear()

    def write(self, *, run_id: int, now: datetime) -> None:
        """INSERT the prepared rows and upsert their problems (inside the flush's transaction;
        a failed upsert raises `ProblemsUnwritable` after turning problems off)."""
        if self.prepared:
            execute_rows(_insert_sql, self.prepared, width=len(_ERROR_COLUMNS))
        if self.problems and self.problems_on:
            try:
                upsert_problems(self.problems, pipeline=self.pipeline, run_id=run_id, now=now)
            except DatabaseError as exc:
                # The errors are what the run page shows; problems follow them again from the next
                # run. Not a savepoint per batch: two more statements, each a wait for the GIL.
                logger.exception("run tracking: cannot update the open problems of run #%s; "
                                 "its errors are kept", run_id)
                self.problems_on = False
                raise ProblemsUnwritable from exc


class _Stamps:
    """`created_at` for a time in milliseconds, as the database takes it.

    Django's `adapt_datetimefield_value` costs a few microseconds (time zone
    conversion, then str()); on SQLite with UTC connections its result is a
    plain text that is built here from the second (formatted once) and the
    milliseconds. Any other database or time zone takes Django's way.
    """

    _PROBE = datetime(2001, 2, 3, 4, 5, 6, 7000, tzinfo=UTC)

    def __init__(self) -> None:
        self.adapt = connection.ops.adapt_datetimefield_value
        self.text = self.adapt(self._PROBE) == "2001-02-03 04:05:06.007000"
        self.second = -1
        self.prefix = ""

    def __call__(self, ms: int) -> Any:
        if not self.text:
            return self.adapt(datetime.fromtimestamp(ms / 1000, tz=UTC))
        second, rest = divmod(ms, 1000)
        if second != self.second:
            self.second, self.prefix = second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        # str(datetime) leaves out a zero fraction: the same text Django would store.
        return f"{self.prefix}.{rest:03d}000" if rest else self.prefix


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int, placeholder: str, padded: bool) -> str:
    quote = connection.ops.quote_name
    width = len(_ERROR_COLUMNS)
    # A full chunk as plain VALUES (a quarter cheaper for SQLite than the SELECT a padded one needs).
    source = select_rows(rows, width, placeholder, padded=True) if padded else values(rows, width, placeholder)
    return "INSERT INTO {} ({}) {}".format(  # noqa: S608 - quoted identifiers, bound params
        quote(RunError._meta.db_table), ", ".join(quote(c) for c in _ERROR_COLUMNS), source
    )
