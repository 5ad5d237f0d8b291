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
  `atomic()` (bulk_create / bulk_update): SQLite has one writer, and the run
  tracker, the scheduler and the dashboard need their turn (ARCHITECTURE.md).
  A crash halfway leaves whole entities: every row of a batch, with what
  `after_write` adds (e.g. a parent's children), commits or none does.
- A batch that fails is retried row by row, each in its own `atomic()`, so one
  bad row becomes a RunError for that row and the others are still written.
- With `dry_run` nothing is written; the counts are what would happen.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from pipelines.readers import ReadResult
from runs.pipeline import Step

logger = logging.getLogger("pipelines.sync")

BATCH_SIZE = 250


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


class Upserter:
    """Creates, updates or skips rows of one model by key and source hash; see the module docstring."""

    def __init__(
        self,
        step: Step,
        model: type[models.Model],
        *,
        existing: dict[Any, tuple[int, str]],
        fields: Sequence[str],
        dry_run: bool,
        after_write: Callable[[list[tuple[Any, models.Model]]], None] | None = None,
        batch_size: int = BATCH_SIZE,
        hash_field: str | None = "source_hash",
    ) -> None:
        self.step = step
        self.model = model
        self.existing = existing
        self.fields = list(fields)
        self.dry_run = dry_run
        self.after_write = after_write
        self.batch_size = batch_size
        self.hash_field = hash_field
        self.now = timezone.now()
        self.has_synced_at = any(f.name == "last_synced_at" for f in model._meta.concrete_fields)
        self.update_fields = list(self.fields)
        if hash_field:
            self.update_fields.append(hash_field)
        if self.has_synced_at:
            self.update_fields.append("last_synced_at")
        self.seen: set[Any] = set()
        self._creates: list[tuple[Any, models.Model]] = []
        self._updates: list[tuple[Any, models.Model]] = []

    def __enter__(self) -> Upserter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.flush()

    def add(self, record: Any, *, key: Any, values: dict[str, Any], digest: str = "") -> str:
        """Queue one record; returns "created", "updated" or "skipped"."""
        self.seen.add(key)
        found = self.existing.get(key)
        if found is not None and found[1] == digest:
            self.step.skipped()
            return "skipped"
        obj = self.model(**values)
        if self.hash_field:
            setattr(obj, self.hash_field, digest)
        if self.has_synced_at:
            obj.last_synced_at = self.now
        if found is None:
            self._creates.append((record, obj))
            outcome = "created"
        else:
            obj.pk = found[0]
            obj._state.adding = False
            self._updates.append((record, obj))
            outcome = "updated"
        if len(self._creates) + len(self._updates) >= self.batch_size:
            self.flush()
        return outcome

    def unseen(self) -> dict[Any, tuple[int, str]]:
        """Rows in the registry whose key was not in this export."""
        return {key: value for key, value in self.existing.items() if key not in self.seen}

    def flush(self) -> None:
        creates, updates = self._creates, self._updates
        self._creates, self._updates = [], []
        if not creates and not updates:
            return
        if self.dry_run:
            self.step.created(len(creates))
            self.step.updated(len(updates))
            return
        try:
            with transaction.atomic():
                if creates:
                    self.model.objects.bulk_create([obj for _, obj in creates])
                if updates:
                    self.model.objects.bulk_update([obj for _, obj in updates], self.update_fields)
                if self.after_write is not None:
                    self.after_write(creates + updates)
        except Exception:
            logger.info("batch write of %s failed; retrying row by row", self.model.__name__, exc_info=True)
            self._one_by_one(creates, updates)
            return
        self.step.created(len(creates))
        self.step.updated(len(updates))

    def _one_by_one(self, creates: list, updates: list) -> None:
        for is_new, pairs in ((True, creates), (False, updates)):
            for record, obj in pairs:
                if is_new:
                    obj.pk = None  # a rolled-back bulk insert may have set it
                    obj._state.adding = True
                try:
                    with transaction.atomic():
                        if is_new:
                            obj.save(force_insert=True)
                        else:
                            obj.save(update_fields=self.update_fields)
                        if self.after_write is not None:
                            self.after_write([(record, obj)])
                except Exception as exc:  # noqa: BLE001 - this row fails, the others go on
                    self.step.fail_item(exc, obj=record)
                    continue
                (self.step.created if is_new else self.step.updated)()


def update_in_batches(step: Step, model: type[models.Model], pks: Sequence[int], *, dry_run: bool,
                      batch_size: int = BATCH_SIZE, **values: Any) -> int:
    """UPDATE rows by pk in short transactions (e.g. mark members former); counted as updated."""
    pks = list(pks)
    if dry_run:
        step.updated(len(pks))
        return len(pks)
    for start in range(0, len(pks), batch_size):
        chunk = pks[start:start + batch_size]
        with transaction.atomic():
            model.objects.filter(pk__in=chunk).update(**values)
        step.updated(len(chunk))
    return len(pks)


def knvb_map(*, include_former: bool = True) -> dict[str, int]:
    """relatiecode -> Member pk, in one query."""
    from pipelines.models import Member

    queryset = Member.objects.order_by()
    if not include_former:
        queryset = queryset.filter(is_former=False)
    return dict(queryset.values_list("knvb_id", "pk").iterator(chunk_size=5000))


class UnknownMember(Exception):  # noqa: N818 - reads as "raise UnknownMember"
    def __init__(self, knvb_id: str, what: str = "") -> None:
        super().__init__(f"{what + ': ' if what else ''}no member with relatiecode {knvb_id} in the registry "
                         "(run the people pipeline first, or check the relatiecode)")
