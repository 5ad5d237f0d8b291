"""The one helper every registry sync uses: compare by hash, write in short batches.

    existing = existing_hashes(Member.objects.all(), "knvb_id")   # one query
    with Upserter(step, Member, existing=existing, fields=[...], dry_run=run.dry_run) as up:
        for record in records:
            with step.item(record):
                up.add(record, key=record.knvb_id, values={...})
    gone = up.unseen()           # keys in the registry but not in this export

- unchanged hash -> `skipped` (the row is not touched); changed -> `updated`;
  new -> `created`. Counts are taken when the write committed.
- Writes go out in batches of BATCH_SIZE rows, each batch in its own short
  `atomic()`, as raw INSERT / UPDATE statements run with `executemany`
  (pipelines.rowwriter.RowWriter): SQLite has one writer, and the run
  tracker, the scheduler and the dashboard need their turn.
  A crash halfway leaves whole entities: every row of a batch, with what
  `after_write` adds (e.g. a parent's children), commits or none does.
- A batch that fails is retried row by row, each in its own `atomic()`, so one
  bad row becomes a RunError for that row and the others are still written.
- With `dry_run` nothing is written; the counts are what would happen.
- Record history (runs.history.ChangeLog): each batch writes, in its own
  transaction, a RecordChange per created row and per updated row whose
  fields differ (old values of the batch's updated rows: one query). The
  retire path (`update_in_batches(..., history=Retired(...))`) does the same.

Removals go through one guard, `guard_removals` (or `retire`, which is the
guard plus the batched UPDATE): every path that marks members former, ends a
membership or deletes from a destination because something is missing from an
export asks it first. When a run would remove more than
SYNC_MAX_REMOVALS_PERCENT of the active rows of one kind and more than
SYNC_MAX_REMOVALS_MIN rows, that looks like a wrong or partial export: nothing
of that kind is removed, the step records one plain-words error and ends
partial, and `runsync <pipeline> --allow-removals` or the run page's approve
button lets them through (docs/volunteers.md, "Held removals").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from pipelines.readers import ReadResult
from pipelines.rowwriter import RowWriter
from runs.history import ChangeLog
from runs.pipeline import PipelineRun, Step

logger = logging.getLogger("pipelines.sync")

BATCH_SIZE = 500


def source_hash(*values: Any) -> str:
    """A stable hash of a record's values (their reprs: dates, Decimals and lists included)."""
    return hashlib.blake2b(repr(values).encode(), digest_size=16).hexdigest()


def existing_hashes(queryset: models.QuerySet, *key_fields: str,
                    hash_field: str = "source_hash") -> dict[Any, tuple[int, str]]:
    """key -> (pk, stored hash) for every row of `queryset`, in one query.

    With several key fields the key is their tuple.
    """
    rows = queryset.order_by().values_list("pk", hash_field, *key_fields)
    if len(key_fields) == 1:
        return {row[2]: (row[0], row[1]) for row in rows.iterator(chunk_size=5000)}
    return {tuple(row[2:]): (row[0], row[1]) for row in rows.iterator(chunk_size=5000)}


def report_row_errors(step: Step, result: ReadResult) -> None:
    """Each unreadable row becomes a RunError (row number and best identifier); counted failed."""
    for error in result.errors:
        as_error = error.as_error()
        step.fail_item(as_error["message"], identifier=as_error["identifier"] or f"row {error.row}",
                       identifier_kind=as_error["identifier_kind"] or "row")


def download(run: PipelineRun, step_name: str, source: Any, kind: str, reader: Callable[..., ReadResult],
             *, describe: Callable[[ReadResult], dict] | None = None, **reader_kwargs: Any) -> ReadResult:
    """The download step each pipeline starts with, in one place.

    Reads the `kind` export from `source` with `reader`, counts its rows as
    `read`, turns unreadable rows into errors, and records the file, the
    source and whatever `describe(result)` adds in the step's detail. A
    missing file or missing columns raise, failing the step (and the run).
    """
    with run.step(step_name) as step:
        table = source.table(kind)
        result = reader(table, **reader_kwargs)
        step.read(result.rows)
        report_row_errors(step, result)
        step.detail.update(file=table.filename, source=source.describe(), **(describe(result) if describe else {}))
    return result


class Upserter:
    """Creates, updates or skips rows of one model by key and source hash; see the module docstring.

    `after_write(rows)` runs inside each batch's transaction with a list of
    (record, pk, created) for the rows just written; it needs `key_field` (the model
    field the key is) to learn the new rows' primary keys.

    Record history: `identify(record, key)` gives the identifier a change is
    filed under (default: the key) and `identifier_kind` its kind;
    `label(record, key)` says which row of the record it is (a team and role,
    a year); `not_compared` names written fields that are no part of the
    record's story; `restored_when=(field, value)` marks an update of a row that had
    that value (e.g. ("is_former", True)) as a restore.
    """

    def __init__(
        self,
        step: Step,
        model: type[models.Model],
        *,
        existing: dict[Any, tuple[int, str]],
        fields: Sequence[str],
        dry_run: bool,
        after_write: Callable[[list[tuple[Any, int, bool]]], None] | None = None,
        key_field: str | None = None,
        batch_size: int = BATCH_SIZE,
        hash_field: str | None = "source_hash",
        identify: Callable[[Any, Any], Any] | None = None,
        identifier_kind: str = "",
        label: Callable[[Any, Any], str] | None = None,
        restored_when: tuple[str, Any] | None = None,
        not_compared: Sequence[str] = (),
    ) -> None:
        if after_write is not None and key_field is None:
            raise ValueError("after_write needs key_field")
        self.step = step
        self.model = model
        self.existing = existing
        self.dry_run = dry_run
        self.after_write = after_write
        self.key_field = key_field
        self.batch_size = batch_size
        self.hash_field = hash_field
        self.now = timezone.now()
        self.has_synced_at = any(f.name == "last_synced_at" for f in model._meta.concrete_fields)
        self.update_fields = list(fields)
        if hash_field:
            self.update_fields.append(hash_field)
        if self.has_synced_at:
            self.update_fields.append("last_synced_at")
        self.writer = RowWriter(model)
        self.seen: set[Any] = set()
        self._creates: list[tuple[Any, Any, dict]] = []  # (record, key, row)
        self._updates: list[tuple[Any, int, dict]] = []  # (record, pk, row)
        self._update_keys: dict[int, Any] = {}  # pk -> key, for the change history
        self.identify = identify or (lambda _record, key: key)
        self.identifier_kind = identifier_kind
        self.label = label
        self.restored_when = restored_when
        # The fields a change compares: what the sync writes, not its bookkeeping.
        # `not_compared`: written, but bookkeeping too (e.g. the members' Sportlink snapshot).
        self.compared = [name for name in fields
                         if name not in (hash_field, "last_synced_at") and name not in not_compared]

    def __enter__(self) -> Upserter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.flush()

    def add(self, record: Any, *, key: Any, values: dict[str, Any] | Callable[[], dict[str, Any]],
            digest: str | None = "") -> str:
        """Queue one record; returns "created", "updated" or "skipped".

        `values` may be a callable: it is only called when the row is written.
        """
        if key in self.seen:
            # The same row twice in one export (e.g. a function listed twice): written once.
            self.step.skipped()
            return "skipped"
        self.seen.add(key)
        found = self.existing.get(key)
        if found is not None and found[1] == digest:
            self.step.skipped()
            return "skipped"
        row = values() if callable(values) else dict(values)
        if self.hash_field:
            row[self.hash_field] = digest
        if self.has_synced_at:
            row["last_synced_at"] = self.now
        if found is None:
            self._creates.append((record, key, row))
            outcome = "created"
        else:
            self._updates.append((record, found[0], row))
            self._update_keys[found[0]] = key
            outcome = "updated"
        if len(self._creates) + len(self._updates) >= self.batch_size:
            self.flush()
        return outcome

    def skip_unchanged(self, keys: Sequence[Any]) -> None:
        """Count rows known unchanged before they were even converted (see read_members)."""
        self.seen.update(keys)
        self.step.skipped(len(keys))
        # Handled without an error: their open problems (if any) resolve.
        self.step.processed(keys)

    def unseen(self) -> dict[Any, tuple[int, str]]:
        """Rows in the registry whose key was not in this export."""
        return {key: value for key, value in self.existing.items() if key not in self.seen}

    def flush(self) -> None:
        creates, updates = self._creates, self._updates
        self._creates, self._updates = [], []
        if not creates and not updates:
            return
        if self.dry_run:
            self._update_keys.clear()
            self.step.created(len(creates))
            self.step.updated(len(updates))
            return
        try:
            with transaction.atomic():
                self._write(creates, updates)
        except Exception as exc:  # noqa: BLE001 - isolated row by row below
            logger.info("batch write of %s failed (%s); retrying row by row", self.model.__name__, exc)
            self._one_by_one(creates, updates)
            self._update_keys.clear()
            return
        self._update_keys.clear()
        self.step.created(len(creates))
        self.step.updated(len(updates))

    def _write(self, creates: list, updates: list) -> None:
        log = ChangeLog(self.step, record_type=str(self.model._meta.verbose_name),
                        identifier_kind=self.identifier_kind)
        old: dict[int, dict] = {}
        if log.enabled and updates and self.compared:
            # The batch's old values, in one query, inside the batch's transaction.
            names = self.compared
            old = {pk: dict(zip(names, values, strict=True)) for pk, *values in self.model._default_manager.filter(
                pk__in=[pk for _record, pk, _row in updates]).order_by().values_list("pk", *names)}
        self.writer.insert([row for _record, _key, row in creates])
        self.writer.update([pk for _record, pk, _row in updates], [row for _record, _pk, row in updates],
                           self.update_fields)
        if log.enabled:
            label = self.label
            for record, key, _row in creates:
                log.created(self.identify(record, key), label=label(record, key) if label else "")
            for record, pk, row in updates:
                key = self._update_keys.get(pk)
                log.updated(self.identify(record, key), old.get(pk, {}), {n: row[n] for n in self.compared},
                            label=label(record, key) if label else "", restored_when=self.restored_when)
            log.write()
        if self.after_write is not None:
            pairs = [(record, pk, False) for record, pk, _row in updates]
            if creates:
                assert self.key_field is not None  # after_write needs it (checked in __init__)
                keys = [key for _record, key, _row in creates]
                new = dict(self.model._default_manager.filter(**{f"{self.key_field}__in": keys})
                           .values_list(self.key_field, "pk"))
                pairs += [(record, new[key], True) for record, key, _row in creates]
            self.after_write(pairs)

    def _one_by_one(self, creates: list, updates: list) -> None:
        for record, key, row in creates:
            self._single(record, [(record, key, row)], [], created=True)
        for record, pk, row in updates:
            self._single(record, [], [(record, pk, row)], created=False)

    def _single(self, record: Any, creates: list, updates: list, *, created: bool) -> None:
        try:
            with transaction.atomic():
                self._write(creates, updates)
        except Exception as exc:  # noqa: BLE001 - this row fails, the others go on
            self.step.fail_item(exc, obj=record)
            return
        (self.step.created if created else self.step.updated)()


@dataclass
class Retired:
    """How `update_in_batches` files a retire in the record history.

    `identifiers`: pk -> identifier of every row retired; `labels`: pk ->
    which row of the record it is (optional); `fields`: the fields whose old
    and new value the change shows (default: every field set, but the hash).
    """

    identifiers: dict[int, Any]
    identifier_kind: str = ""
    labels: dict[int, str] = field(default_factory=dict)
    fields: Sequence[str] | None = None


def update_in_batches(step: Step, model: type[models.Model], pks: Sequence[int], *, dry_run: bool,
                      batch_size: int = BATCH_SIZE, history: Retired | None = None, **values: Any) -> int:
    """UPDATE rows by pk in short transactions (e.g. mark members former); counted as updated.

    With `history`, each batch also writes a `retired` RecordChange per row
    (old values read before and new ones after the UPDATE, in the batch's
    transaction: two queries per batch, so expressions like Coalesce show
    their result).
    """
    pks = list(pks)
    if dry_run:
        step.updated(len(pks))
        return len(pks)
    shown = [name for name in (history.fields if history and history.fields is not None else values)
             if name not in ("source_hash", "last_synced_at")] if history else []
    for start in range(0, len(pks), batch_size):
        chunk = pks[start:start + batch_size]
        with transaction.atomic():
            log = ChangeLog(step, record_type=str(model._meta.verbose_name),
                            identifier_kind=history.identifier_kind) if history else None
            before = _values_of(model, chunk, shown) if log is not None and log.enabled else None
            model._default_manager.filter(pk__in=chunk).update(**values)
            if before is not None and log is not None and history is not None:
                after = _values_of(model, chunk, shown)
                for pk in chunk:
                    old, new = before.get(pk, {}), after.get(pk, {})
                    log.retired(history.identifiers.get(pk, pk),
                                {name: (old.get(name), new.get(name)) for name in shown},
                                label=history.labels.get(pk, ""))
                log.write()
        step.updated(len(chunk))
    return len(pks)


def _values_of(model: type[models.Model], pks: list[int], names: Sequence[str]) -> dict[int, dict]:
    rows = model._default_manager.filter(pk__in=pks).order_by().values_list("pk", *names)
    return {pk: dict(zip(names, rest, strict=True)) for pk, *rest in rows}


def plural(count: int, one: str, many: str | None = None) -> str:
    """`1 member`, `2 members` (`many` for irregular plurals)."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def removals_look_like_a_mistake(active: int, removing: int) -> bool:
    """More than SYNC_MAX_REMOVALS_PERCENT of the active rows and more than SYNC_MAX_REMOVALS_MIN rows."""
    return (removing > settings.SYNC_MAX_REMOVALS_MIN
            and removing * 100 > active * settings.SYNC_MAX_REMOVALS_PERCENT)


def guard_removals(step: Step, *, kind: str, active: int, removing: int, situation: str, effect: str) -> bool:
    """The one removal guard: may `step` remove `removing` of `active` rows of `kind`?

    `situation` and `effect` are the first two sentences of the message a
    volunteer reads when the removals are held, e.g. "The export lists 1 of
    500 active members." and "499 members would be marked former.".
    Returns True when the removals may go ahead: few enough, or the run was
    started with removals allowed (recorded in the step's detail). Otherwise
    the step holds them (Step.hold_removals: one error, the step ends partial)
    and nothing of `kind` may be removed in this run; a dry run reports the
    same, as what would be held.
    """
    if removing <= 0 or not removals_look_like_a_mistake(active, removing):
        return True
    run = step.run
    if run.allow_removals:
        step.detail.setdefault("removals_allowed", {})[kind] = removing
        return True
    message = (f"{situation} {effect} Nothing was removed. If this is right, approve the removals on the run "
               f"page or run `runsync {run.name} --allow-removals`.")
    if run.dry_run:
        message = f"Dry run: these removals would be held. {message}"
    step.hold_removals(kind, removing, message)
    logger.warning("%s: held %d removals of %s (of %d active)", run.name, removing, kind, active)
    return False


def retire(step: Step, model: type[models.Model], pks: Sequence[int], *, kind: str, active: int,
           situation: str, effect: str, history: Retired | None = None, **values: Any) -> int:
    """Guarded `update_in_batches` for rows missing from an export (mark former, end a membership).

    Returns how many rows were (or in a dry run would be) updated: 0 when held.
    """
    if not guard_removals(step, kind=kind, active=active, removing=len(pks), situation=situation, effect=effect):
        return 0
    return update_in_batches(step, model, pks, dry_run=step.run.dry_run, history=history, **values)


def knvb_map(*, include_former: bool = True, dry_run: bool = False) -> dict[str, int]:
    """relatiecode -> Member pk, in one query.

    In a dry run, `people` wrote nothing, so the members of the current
    Sportlink export are added with pk 0 ("would exist"): a dry run of `all`
    on an empty registry then reports what it would do, not that every
    member is unknown.
    """
    from pipelines.models import Member

    queryset = Member.objects.order_by()
    if not include_former:
        queryset = queryset.filter(is_former=False)
    mapping = dict(queryset.values_list("knvb_id", "pk").iterator(chunk_size=5000))
    if dry_run:
        from pipelines.readers import ExportError
        from pipelines.sources import sportlink_source

        try:
            table = sportlink_source().table("members")
        except ExportError:
            return mapping
        for _number, row in table.dicts():
            code = row.get("knvb_id", "").upper()
            if code:
                mapping.setdefault(code, 0)
    return mapping


class UnknownMember(Exception):  # noqa: N818 - reads as "raise UnknownMember"
    def __init__(self, knvb_id: str, what: str = "") -> None:
        super().__init__(f"{what + ': ' if what else ''}no member with relatiecode {knvb_id} in the registry "
                         "(run the people pipeline first, or check the relatiecode)")
