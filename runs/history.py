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

* `record_problems(tracker)` runs once at the end of a run (the runner calls
  it). The tracker has collected, in memory, the identifiers that had an
  error and the items the run processed (`step.item(...)` and
  `step.processed(...)`). One query loads the pipeline's open problems; the
  errors open or update problems, identifiers processed without an error
  resolve theirs, and records that left (retired) resolve every pipeline's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from runs.models import ChangeAction, RecordChange, RecordProblem
from runs.redact import truncate

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


def record_problems(tracker: RunTracker) -> dict[str, int]:
    """Open, update and resolve RecordProblems from a finished run; see the module docstring.

    Returns counts (opened, updated, resolved, left). Dry runs and untracked
    runs change nothing.
    """
    return write_problems(plan_problems(tracker))


@dataclass
class ProblemPlan:
    """What `write_problems` changes: worked out by `plan_problems` (one read),
    so the runner can do that while the writer thread drains the run's rows."""

    pipeline: str
    run_id: int
    now: datetime
    new: list[tuple[str, str, str, str]]  # (identifier, kind, step, message) to open
    changed: list[tuple]  # (*_UPDATED values, pk): message, step or kind changed
    again: list[int]  # pks failing the same way again
    fixed: list[int]  # pks the run processed without an error
    left: list[str]  # identifiers of records that left the registry


def plan_problems(tracker: RunTracker) -> ProblemPlan | None:
    """Read the pipeline's open problems and work out what the run changes
    (None for a dry run or an untracked run: nothing)."""
    if tracker.run_id is None or tracker.held_by is not None or tracker.dry_run:
        return None
    now = timezone.now()
    # The writer redacted these texts for the run's RunErrors: each is redacted once per run
    # (the message cut like RunError.message). The caches' dicts first: cheaper than a call.
    redactions = tracker.redactions
    redacted_ids, redacted_messages = redactions.identifiers, redactions.messages
    errors: dict[str, tuple[str, str, str]] = {}
    for identifier, (kind, message, step_name) in tracker.error_identifiers.items():
        if kind in NOT_A_RECORD:
            continue
        redacted = redacted_ids.get(identifier) or redactions.identifier(identifier)
        errors[redacted if len(redacted) <= 255 else truncate(redacted, 255)] = (kind, message, step_name)
    pipeline = tracker.pipeline[:64]
    # Index: recordproblem_open_unique (pipeline, identifier) where open.
    # Plain rows, not model instances (nor the ORM's per-row values_list
    # handling): a run with 10,000 failing records reads and rewrites 10,000
    # problems (bench/tracker.py).
    query = (RecordProblem.objects.filter(pipeline=pipeline, resolved_at__isnull=True).order_by()
             .values_list("identifier", "pk", "last_run_id", "failing_runs", "identifier_kind", "message",
                          "step_name").query)
    with connection.cursor() as cursor:
        cursor.execute(*query.sql_with_params())
        open_problems = {row[0]: row[1:] for row in cursor.fetchall()}
    fixed: list[int] = []
    if open_problems:
        candidates = open_problems.keys() - errors.keys()
        if candidates:
            processed = _processed_identifiers(tracker, candidates)
            fixed = [open_problems[i][0] for i in candidates & processed]
    new, changed, again = [], [], []
    run_id = tracker.run_id
    for identifier, (kind, message, step_name) in errors.items():
        text = redacted_messages.get(message) or redactions.message(message)
        problem = open_problems.get(identifier)
        if problem is None:
            new.append((identifier, kind[:32], step_name[:100], text))
            continue
        pk, last_run_id, failing_runs, old_kind, old_text, old_step = problem
        step_name, kind = step_name[:100], kind[:32] or old_kind
        if last_run_id != run_id and (text, step_name, kind) == (old_text, old_step, old_kind):
            again.append(pk)  # the same failure again: only the run's own fields change
            continue
        if last_run_id != run_id:
            failing_runs += 1
        changed.append((failing_runs, text, step_name, now, run_id, kind, pk))
    left = sorted(tracker.left_identifiers - errors.keys())
    return ProblemPlan(pipeline=pipeline, run_id=run_id, now=now, new=new, changed=changed, again=again,
                       fixed=fixed, left=left)


def write_problems(plan: ProblemPlan | None) -> dict[str, int]:
    """Apply a plan in one transaction; returns counts (opened, updated, resolved, left)."""
    counts = {"opened": 0, "updated": 0, "resolved": 0, "left": 0}
    if plan is None:
        return counts
    now, run_id, fixed, left = plan.now, plan.run_id, plan.fixed, plan.left
    with transaction.atomic():
        _open_problems(plan.new, plan.pipeline, now, run_id)
        _update_problems(plan.changed)
        _failed_again(plan.again, now, run_id)
        for start in range(0, len(fixed), 500):
            counts["resolved"] += RecordProblem.objects.filter(pk__in=fixed[start:start + 500]).update(
                resolved_at=now, resolved_run_id=run_id, resolution=RecordProblem.Resolution.FIXED)
        for start in range(0, len(left), 500):
            # Any pipeline's: the record is gone, nothing will ever process it again.
            counts["left"] += RecordProblem.objects.filter(
                identifier__in=left[start:start + 500], resolved_at__isnull=True).update(
                resolved_at=now, resolved_run_id=run_id, resolution=RecordProblem.Resolution.LEFT)
    counts["opened"], counts["updated"] = len(plan.new), len(plan.changed) + len(plan.again)
    return counts


_OPENED = ("identifier", "identifier_kind", "step_name", "message", "pipeline", "first_seen_at", "last_seen_at",
           "failing_runs", "first_run", "last_run", "resolved_at", "resolved_run", "resolution")


def _column(name: str) -> str:
    """RecordProblem's database column for a concrete field."""
    return cast(Field, RecordProblem._meta.get_field(name)).column


def _open_problems(rows: list[tuple[str, str, str, str]], pipeline: str, now: datetime, run_id: int) -> None:
    """INSERT new problems: rows of (identifier, kind, step, message), one executemany
    (bulk_create builds a model instance per row: seconds for 10,000 new problems)."""
    if not rows:
        return
    qn = connection.ops.quote_name
    meta = RecordProblem._meta
    columns = ", ".join(qn(_column(name)) for name in _OPENED)
    at = connection.ops.adapt_datetimefield_value(now)
    sql = (f"INSERT INTO {qn(meta.db_table)} ({columns}) "  # noqa: S608 - quoted names, bound values
           f"VALUES ({', '.join(['%s'] * len(_OPENED))})")
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(*row, pipeline, at, at, 1, run_id, run_id, None, None, "") for row in rows])


# Ids per UPDATE of the problems that failed the same way again (within SQLite's 999 parameters).
_IDS_PER_UPDATE = 900


def _failed_again(pks: list[int], now: datetime, run_id: int) -> None:
    """One more failing run for problems whose message, step and kind did not change: one
    UPDATE per _IDS_PER_UPDATE ids (an UPDATE per row, or the ORM's per-value `pk__in`
    handling, cost 10,000 failing records a third of a second)."""
    if not pks:
        return
    qn = connection.ops.quote_name
    meta = RecordProblem._meta
    failing, seen, last_run = (qn(_column(name)) for name in ("failing_runs", "last_seen_at",
                                                                             "last_run"))
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        for start in range(0, len(pks), _IDS_PER_UPDATE):
            chunk = pks[start:start + _IDS_PER_UPDATE]
            # Identifiers come from the model's _meta (quoted); values are parameters.
            cursor.execute(f"UPDATE {qn(meta.db_table)} SET {failing} = {failing} + 1, {seen} = %s, "  # noqa: S608
                           f"{last_run} = %s WHERE {qn(meta.pk.column)} IN ({', '.join(['%s'] * len(chunk))})",
                           [at, run_id, *chunk])


_UPDATED = ("failing_runs", "message", "step_name", "last_seen_at", "last_run", "identifier_kind")


def _update_problems(rows: list[tuple]) -> None:
    """UPDATE the still-failing problems whose message, step or kind changed: rows of
    (*_UPDATED values, pk), one executemany.

    bulk_update writes a CASE per column per batch, which on 10,000 failing
    records cost seconds (bench/tracker.py); this is one plain UPDATE per row.
    """
    if not rows:
        return
    fields = [cast("Field", RecordProblem._meta.get_field(name)) for name in _UPDATED]  # concrete columns
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    # Identifiers come from the model's _meta (quoted); values are parameters.
    sql = (f"UPDATE {qn(RecordProblem._meta.db_table)} SET {assignments} "  # noqa: S608
           f"WHERE {qn(RecordProblem._meta.pk.column)} = %s")
    at = connection.ops.adapt_datetimefield_value(rows[0][3])  # one timestamp for the whole run
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(failing, text, step, at, run_id, kind, pk)
                                 for failing, text, step, _now, run_id, kind, pk in rows])


def _processed_identifiers(tracker: RunTracker, wanted: set[str]) -> set[str]:
    """Which of `wanted` the run processed. Items are identified only now, and
    only when a problem is open: a run without problems pays one list append
    per item."""
    found = set()
    identify = tracker.identify
    for item in tracker.processed_items:
        identifier = item if isinstance(item, str) else identify(item)[0]
        if identifier in wanted:
            found.add(identifier)
    return found


def identifiers_in(values: Iterable[Any]) -> list[str]:
    """Clean a list of identifiers given by a person: stripped, non-empty, unique, in order."""
    seen: dict[str, None] = {}
    for value in values:
        text = str(value).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)
