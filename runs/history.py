"""Record history: what a run changed per record, and problems until they are fixed.

Two halves, both generic (the engine knows identifiers, not members):

* `ChangeLog` collects the RecordChange rows of one batch of registry writes.
  The club app's sync helpers fill it while they write a batch and call
  `write()` inside the same transaction, so a change row exists exactly when
  its registry row was written: one `executemany` INSERT per batch (no model
  instances), nothing at all for an unchanged run or a dry run.

      log = ChangeLog(step, record_type="member", identifier_kind="knvb_id")
      log.created("ABC123")
      log.updated("ABC123", old={"city": "Ede"}, new={"city": "Epe"})
      log.retired("ABC123", {"is_former": [False, True]})
      log.write()           # in the batch's transaction

* Problems (RecordProblem: one open row per pipeline and identifier) follow
  the run's errors: the writer thread upserts them with each batch of
  RunErrors (`upsert_problems`, one INSERT ... ON CONFLICT), and at the end
  of the run `resolve_problems(tracker)` resolves the open problems the run
  processed without an error (the tracker has collected, in memory, the
  identifiers that had an error and the items the run processed:
  `step.item(...)` and `step.processed(...)`) and those of records that left
  (retired) in every pipeline.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from runs.bulksql import execute_rows, select_rows
from runs.models import ChangeAction, RecordChange, RecordProblem, RunError
from runs.redact import any_needs_redaction, truncate

if TYPE_CHECKING:
    from runs.pipeline import Step
    from runs.tracker import RunTracker

logger = logging.getLogger("runs.history")

#: Identifier kinds that name a line of an export, not a record: no problem is opened for them.
NOT_A_RECORD = frozenset({"row"})


def plain(value: Any) -> Any:
    """A JSON-safe copy of a registry value (dates as ISO strings, decimals as strings)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _same(old: Any, new: Any) -> bool:
    if old == new:
        return True
    # A decimal column read back as Decimal("1.50") vs a new "1.5"; a date vs its string.
    return plain(old) == plain(new)


class ChangeLog:
    """The RecordChange rows of one batch; see the module docstring."""

    _COLUMNS = ("run_id", "pipeline", "step_name", "identifier", "identifier_kind", "record_type", "label",
                "action", "changes", "created_at")

    def __init__(self, step: Step, *, record_type: str, identifier_kind: str = "") -> None:
        run = step.run
        self.step = step
        self.run_id = run.run_id
        # Untracked runs (no run row to point at) and dry runs record nothing.
        self.enabled = run.run_id is not None and not run.dry_run
        self.pipeline = run.name[:64]
        self.step_name = step.name[:100]
        self.record_type = record_type[:64]
        self.identifier_kind = identifier_kind[:32]
        self.rows: list[tuple[str, str, str, dict]] = []  # (identifier, label, action, changes)
        self.left: list[str] = []

    def created(self, identifier: Any, *, label: str = "") -> None:
        """A new row: its values are on the record page's registry panel."""
        if self.enabled:
            self.rows.append((str(identifier), label, ChangeAction.CREATED, {}))

    def updated(self, identifier: Any, old: dict[str, Any], new: dict[str, Any], *, label: str = "",
                restored_when: tuple[str, Any] | None = None) -> bool:
        """An updated row: records the fields whose value differs (old and new).

        `restored_when=(field, value)`: the update is a restore when the old
        row had `field == value` (e.g. ("is_former", True)). Returns whether
        anything differed (a row whose hash changed without a field change,
        e.g. a parent's children, records nothing).
        """
        if not self.enabled:
            return False
        changes = {name: [plain(old.get(name)), plain(value)] for name, value in new.items()
                   if name in old and not _same(old[name], value)}
        if not changes:
            return False
        action = ChangeAction.UPDATED
        if restored_when is not None and old.get(restored_when[0]) == restored_when[1]:
            action = ChangeAction.RESTORED
        self.rows.append((str(identifier), label, action, changes))
        return True

    def retired(self, identifier: Any, changes: dict[str, Sequence[Any]], *, label: str = "") -> None:
        """A row that left the export (marked former, closed, ended): its problems resolve too."""
        if self.enabled:
            identifier = str(identifier)
            self.rows.append((identifier, label, ChangeAction.RETIRED,
                              {name: [plain(a), plain(b)] for name, (a, b) in changes.items()}))
            self.left.append(identifier)

    def write(self) -> int:
        """INSERT the collected rows (call it inside the batch's transaction); returns how many."""
        rows, self.rows = self.rows, []
        if not rows:
            return 0
        ops = connection.ops
        field = RecordChange._meta.get_field("changes")
        now = ops.adapt_datetimefield_value(timezone.now())
        empty = field.get_db_prep_save({}, connection)
        prefix = (self.run_id, self.pipeline, self.step_name)
        params = [(*prefix, identifier[:255], self.identifier_kind, self.record_type, label[:200], str(action),
                   field.get_db_prep_save(changes, connection) if changes else empty, now)
                  for identifier, label, action, changes in rows]
        qn = ops.quote_name
        placeholders = ", ".join(["%s"] * len(self._COLUMNS))
        sql = (f"INSERT INTO {qn(RecordChange._meta.db_table)} "  # noqa: S608 - quoted names, bound values
               f"({', '.join(qn(c) for c in self._COLUMNS)}) VALUES ({placeholders})")
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
        if self.left:
            self.step.run.tracker.left_identifiers.update(self.left)
            self.left = []
        return len(params)

    def discard(self) -> None:
        """Forget the collected rows (the batch rolled back)."""
        self.rows = []
        self.left = []


# --- problems ---------------------------------------------------------------------


_UPSERTED = ("identifier", "identifier_kind", "step_name", "message", "pipeline", "first_seen_at", "last_seen_at",
             "first_run", "last_run")
_PER_ROW = 4  # the first four vary per row; the rest are the statement's constants


def upsert_problems(problems: dict[str, tuple[str, str, str]], *, pipeline: str, run_id: int,
                    now: datetime) -> None:
    """Open or update the problems of one batch of errors.

    `problems`: redacted identifier (at most 255 characters) -> (kind, step,
    redacted message), the batch's latest error per identifier. Called by the
    run's writer thread (runs.errorrows) in the transaction that INSERTs the
    batch's RunErrors, so a problem is there exactly when its error is.

    Multi-row INSERT ... ON CONFLICT statements on the partial unique index
    `recordproblem_open_unique` (the pipeline's open problem for the
    identifier): a new identifier opens a problem; an open one takes the
    latest message, step and kind (an empty kind keeps the old one), is seen
    now, and counts one more failing run the first time this run fails it (a
    later batch of the same run only refreshes the message). No read, no row
    in Python: the database matches them, off the pipeline's interpreter lock.
    """
    at = connection.ops.adapt_datetimefield_value(now)
    params = [value for identifier, (kind, step, message) in problems.items()
              for value in (identifier, kind, step, message)]
    # What every row shares is bound once per statement, not once per row (binding holds the GIL).
    execute_rows(_upsert_sql, params, width=_PER_ROW, constants=(pipeline, at, at, run_id, run_id))


@functools.lru_cache(maxsize=16)
def _upsert_sql(rows: int, placeholder: str, padded: bool) -> str:
    qn = connection.ops.quote_name
    table = qn(RecordProblem._meta.db_table)
    col = {name: qn(_column(name)) for name in (*_UPSERTED, "failing_runs", "resolved_at", "resolution")}
    # The rows as a SELECT (SQLite's UPSERT needs a WHERE after a SELECT anyway), then the
    # statement's constants (parameters bound once: pipeline, seen at, run) and two literals.
    source = select_rows(rows, _PER_ROW, placeholder, padded=padded)
    constants = ", ".join([placeholder] * (len(_UPSERTED) - _PER_ROW))
    last_run, kind = col["last_run"], col["identifier_kind"]
    # Identifiers come from the model's _meta (quoted); values are parameters.
    return (
        f"INSERT INTO {table} AS p ({', '.join(col[name] for name in _UPSERTED)}, {col['failing_runs']}, "  # noqa: S608
        f"{col['resolution']}) SELECT *, {constants}, 1, '' FROM ({source}) AS r WHERE true "
        f"ON CONFLICT ({col['pipeline']}, {col['identifier']}) WHERE {col['resolved_at']} IS NULL DO UPDATE SET "
        f"{col['failing_runs']} = p.{col['failing_runs']} + CASE WHEN p.{last_run} IS NOT NULL "
        f"AND p.{last_run} = excluded.{last_run} THEN 0 ELSE 1 END, "
        f"{col['message']} = excluded.{col['message']}, {col['step_name']} = excluded.{col['step_name']}, "
        f"{kind} = CASE WHEN excluded.{kind} <> '' THEN excluded.{kind} ELSE p.{kind} END, "
        f"{col['last_seen_at']} = excluded.{col['last_seen_at']}, {last_run} = excluded.{last_run}"
    )


def problem_identifier(redacted: str) -> str:
    """A redacted error identifier as a problem stores it (at most RunError.IDENTIFIER_MAX characters)."""
    return truncate(redacted, RunError.IDENTIFIER_MAX)


def resolve_problems(tracker: RunTracker) -> dict[str, int]:
    """Resolve the problems a finished run fixed, and those of records that left.

    The run's errors have opened and updated their problems as they were
    written (`upsert_problems`); what is left for the end of the run:

    * `fixed`: the pipeline's open problems this run did not fail (their last
      run is another) whose identifier it processed without an error;
    * `left`: every pipeline's open problems on a record that left the registry
      in this run (unless this run also had an error on it).

    Returns counts (resolved, left). Dry runs and untracked runs change nothing.
    """
    counts = {"resolved": 0, "left": 0}
    if tracker.run_id is None or tracker.held_by is not None or tracker.dry_run:
        return counts
    run_id, now = tracker.run_id, timezone.now()
    # Index: recordproblem_open_unique (pipeline, identifier) where open.
    with connection.cursor() as cursor:
        query = (RecordProblem.objects.filter(pipeline=tracker.pipeline[:64], resolved_at__isnull=True)
                 .exclude(last_run_id=run_id).order_by().values_list("identifier", "pk").query)
        cursor.execute(*query.sql_with_params())
        candidates = dict(cursor.fetchall())
    # Identifiers compare as the problems store them (`stored_identifiers`): the ones this
    # run had an error on, processed and left.
    failed: set[str] = set()
    if candidates or tracker.left_identifiers:
        failed = stored_identifiers(tracker, tracker.error_identifiers)
    wanted = candidates.keys() - failed
    fixed = [candidates[i] for i in _processed_identifiers(tracker, wanted)] if wanted else []
    left = sorted(stored_identifiers(tracker, tracker.left_identifiers) - failed)
    with transaction.atomic():
        for start in range(0, len(fixed), 500):
            counts["resolved"] += RecordProblem.objects.filter(pk__in=fixed[start:start + 500]).update(
                resolved_at=now, resolved_run_id=run_id, resolution=RecordProblem.Resolution.FIXED)
        for start in range(0, len(left), 500):
            # Any pipeline's: the record is gone, nothing will ever process it again.
            counts["left"] += RecordProblem.objects.filter(
                identifier__in=left[start:start + 500], resolved_at__isnull=True).update(
                resolved_at=now, resolved_run_id=run_id, resolution=RecordProblem.Resolution.LEFT)
    return counts


def _column(name: str) -> str:
    """RecordProblem's database column for a concrete field."""
    return cast(Field, RecordProblem._meta.get_field(name)).column


def stored_identifiers(tracker: RunTracker, identifiers: Collection[str]) -> set[str]:
    """`identifiers` as a problem stores them, the way the tracker and the writer make them
    (runs.tracker, runs.errorrows): cut to RunError.IDENTIFIER_MAX, redacted, and cut again.
    One check of them all joined; only if it finds something is each redacted on its own
    (once per run: `tracker.redactions`)."""
    limit = RunError.IDENTIFIER_MAX
    # Rarely over the limit: no new string per identifier. (The lengths are read before the
    # set is made: a set's scattered strings take several times longer to visit.)
    if max(map(len, identifiers), default=0) > limit:
        cut = {identifier[:limit] for identifier in identifiers}
    else:
        cut = set(identifiers)
    if not any_needs_redaction(cut):
        return cut
    return {problem_identifier(redacted) for redacted in map(tracker.redactions.identifier, cut)}


def _processed_identifiers(tracker: RunTracker, wanted: set[str]) -> set[str]:
    """Which of `wanted` (stored identifiers) the run processed, compared as stored. Items
    are identified only now, and only when a problem is open: a run without problems pays
    one list append per item."""
    identify = tracker.identify
    return wanted & stored_identifiers(
        tracker, [item if isinstance(item, str) else identify(item)[0] for item in tracker.processed_items])


def identifiers_in(values: Iterable[Any]) -> list[str]:
    """Clean a list of identifiers given by a person: stripped, non-empty, unique, in order."""
    seen: dict[str, None] = {}
    for value in values:
        text = str(value).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)
