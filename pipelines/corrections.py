"""Corrections: contact details corrected in the registry, to be entered in Sportlink.

Sportlink Club has no API, so syncsite keeps each correction, tells a
volunteer what to enter in Sportlink (the worklist, pipelines.views) and
confirms it once Sportlink's export shows it. The design, in one place:

- Every member keeps the contact fields (CONTACT_FIELDS) as last imported
  from Sportlink (`Member.sportlink_<field>`). Only the import writes them,
  always together with the field, so a value written by the import never
  differs from its copy and never becomes a correction. A field that differs
  from its copy was corrected here, by whatever path (admin, shell, API, a
  queryset `update()`).
- The import (`people`, rondo-club-sync) never overwrites a corrected field:
  `imported_values` keeps our value and stores Sportlink's in the copy.
  Laposta gets our value (`with_our_values` on the records laposta-prepare
  sends, before the import); FreeScout reads the registry, so it has it.
- The `reverse-sync` step (`reverse_sync`, after rondo-club-sync) compares
  field by field and moves each Correction through its states:

      new difference                          -> pending    (created)
      pending, export still the old value     -> pending    (skipped)
      open, export now shows our value        -> confirmed  (updated)
      open, export changed to a third value   -> conflict   (failed: one RunError, the run ends partial)
      open, our value set back to Sportlink's -> withdrawn
      open, the member left the export        -> closed
      conflict, "keep ours"                   -> pending    (keep_ours; a person decides)
      open, "take Sportlink's"                -> discarded  (take_sportlink; the registry takes the export's value)

  A correction made in the admin is recorded at once, with who made it
  (`record_edit`); the step then finds it open.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from pipelines.models import CONTACT_FIELDS, OPEN_STATES, Correction, CorrectionState, Member, sportlink_field
from pipelines.records import MemberRecord
from runs.pipeline import CardNote, PipelineRun, Step, add_card_note

logger = logging.getLogger("pipelines.corrections")

STEP = "reverse-sync"
SNAPSHOT_FIELDS = tuple(sportlink_field(name) for name in CONTACT_FIELDS)
BATCH_SIZE = 500
# A dry run lists at most this many would-be changes in the step's detail.
DRY_RUN_LISTED = 100



class Edits(dict):
    """knvb_id -> {field: (our value, Sportlink's value)} for the fields that differ, and when they were read."""

    loaded_at = None


def edited_q() -> Q:
    """Members with at least one contact field that differs from Sportlink's copy (one scan, no join)."""
    q = Q()
    for name in CONTACT_FIELDS:
        q |= ~Q(**{name: F(sportlink_field(name))})
    return q


def load_edits() -> Edits:
    """The corrected contact fields of every member, in one query (people calls it before Laposta and the import)."""
    n = len(CONTACT_FIELDS)
    rows = Member.objects.filter(edited_q()).order_by().values_list("knvb_id", *CONTACT_FIELDS, *SNAPSHOT_FIELDS)
    edits = Edits()
    edits.loaded_at = timezone.now()
    for row in rows.iterator(chunk_size=2000):
        edits[row[0]] = {name: (ours, theirs) for name, ours, theirs in
                         zip(CONTACT_FIELDS, row[1:1 + n], row[1 + n:], strict=True) if ours != theirs}
    return edits


def imported_values(values: dict[str, Any], edited: dict[str, tuple[str, str]] | None) -> dict[str, Any]:
    """The row the import writes for one member (`values`: field -> export value, changed in place).

    Sportlink's contact values go to the copy; a field corrected here keeps our
    value, whatever the export says (reverse-sync then confirms or flags it).
    """
    for name in CONTACT_FIELDS:
        values[sportlink_field(name)] = values[name]
    if edited:
        for name, (ours, _theirs) in edited.items():
            values[name] = ours
    return values


def with_our_values(records: list[MemberRecord], edits: Edits) -> list[MemberRecord]:
    """The records with our corrected values, for the destinations that take the export (Laposta)."""
    if not edits:
        return records
    return [dataclasses.replace(record, **{name: ours for name, (ours, _theirs) in edits[record.knvb_id].items()})
            if record.knvb_id in edits else record for record in records]


# --- the reverse-sync step ------------------------------------------------------


def reverse_sync(run: PipelineRun, *, edits: Edits, records: Sequence[MemberRecord]) -> None:
    """Record the `reverse-sync` step. `edits`: load_edits() from before the import;
    `records`: the converted export records (a dry run compares with them, as nothing was imported)."""
    with run.step(STEP, critical=False) as step:
        detect(step, edits=edits, records=records if run.dry_run else None, dry_run=run.dry_run)


def detect(step: Step, *, edits: Edits, records: Sequence[MemberRecord] | None = None, dry_run: bool) -> None:
    """Compare every corrected field and every open correction; see the module docstring.

    Two queries to read (open corrections; members that differ or have one
    open), then batched writes. With `records` (a dry run), each member's
    values are first merged with its export record the way the import would.
    """
    open_corrections = {(c.member_id, c.field): c for c in
                        Correction.objects.filter(state__in=OPEN_STATES).order_by()}
    has_open = Q(pk__in=Correction.objects.filter(state__in=OPEN_STATES).values("member_id"))
    n = len(CONTACT_FIELDS)
    # Unordered: a table scan. ORDER BY knvb_id would walk its index and fetch
    # each row from it, 5x slower on 50,000 members (measured on SQLite).
    rows = (Member.objects.filter(edited_q() | has_open).order_by()
            .values_list("pk", "knvb_id", "is_former", *CONTACT_FIELDS, *SNAPSHOT_FIELDS))
    exported = {record.knvb_id: record for record in records} if records is not None else {}
    now = timezone.now()
    new: list[Correction] = []
    changed: list[Correction] = []
    restore: list[tuple[int, str, str, str]] = []  # (member pk, field, ours, Sportlink's)
    listed: list[str] = []
    tally: dict[str, int] = defaultdict(int)

    def note(code: str, name: str, text: str) -> None:
        if dry_run:
            listed.append(f"{code} {CONTACT_FIELDS[name]}: {text}")

    def conflict(code: str, correction: Correction) -> None:
        step.fail_item(conflict_message(correction), identifier=code, identifier_kind="knvb_id")
        note(code, correction.field, f"conflict, ours {correction.our_value!r}, "
                                     f"Sportlink's {correction.sportlink_value!r}")

    for pk, code, is_former, *values in rows.iterator(chunk_size=2000):
        ours_now, theirs_now = values[:n], values[n:]
        record = exported.get(code)
        for i, name in enumerate(CONTACT_FIELDS):
            ours, theirs = ours_now[i], theirs_now[i]
            if record is not None:  # dry run: what the import would have left
                exported_value = getattr(record, name)
                ours, theirs = (exported_value if ours == theirs else ours), exported_value
            correction = open_corrections.get((pk, name))
            if is_former:
                if correction is not None:
                    _close(correction, CorrectionState.CLOSED, now, changed)
                    tally["closed"] += 1
                    note(code, name, "closed (the member left)")
                continue
            if correction is None:
                if ours == theirs:
                    continue
                before = edits.get(code, {}).get(name, (ours, theirs))[1]
                correction = Correction(member_id=pk, field=name, sportlink_value=theirs, original_value=before,
                                        our_value=ours, detected_at=now)
                new.append(correction)
                if before != theirs:
                    # Corrected here and changed in Sportlink since: a third value.
                    correction.state = CorrectionState.CONFLICT
                    conflict(code, correction)
                else:
                    step.created()
                    note(code, name, f"new: in Sportlink {theirs!r}, enter {ours!r}")
                continue
            if ours == theirs and theirs != correction.our_value and edits.loaded_at is not None \
                    and correction.detected_at >= edits.loaded_at:
                # Corrected in the admin while this run imported the member: the
                # import did not know and wrote Sportlink's value. Put ours back.
                restore.append((pk, name, correction.our_value, theirs))
                step.skipped()
                continue
            if ours == theirs:
                if theirs == correction.our_value:
                    _close(correction, CorrectionState.CONFIRMED, now, changed)
                    step.updated()
                    note(code, name, f"confirmed: Sportlink shows {theirs!r}")
                else:
                    _close(correction, CorrectionState.WITHDRAWN, now, changed)
                    tally["withdrawn"] += 1
                    note(code, name, f"withdrawn: ours is Sportlink's {theirs!r} again")
                continue
            dirty = False
            if theirs == correction.our_value:
                # Sportlink took our earlier value, and ours changed again since: the new one is pending.
                correction.sportlink_value = correction.original_value = theirs
                correction.state = CorrectionState.PENDING
                dirty = True
            if ours != correction.our_value:  # corrected again, outside the admin
                correction.our_value = ours
                dirty = True
            if theirs != correction.sportlink_value:
                correction.sportlink_value = theirs
                correction.state = CorrectionState.CONFLICT
                dirty = True
            if dirty:
                changed.append(correction)
            if correction.state == CorrectionState.CONFLICT:
                conflict(code, correction)
            else:
                step.skipped()
    step.detail.update(tally)
    if dry_run:
        step.detail["would"] = sorted(listed)[:DRY_RUN_LISTED]
        return
    for start in range(0, len(new), BATCH_SIZE):
        with transaction.atomic():
            # A correction the admin opened meanwhile wins (the partial unique constraint).
            Correction.objects.bulk_create(new[start:start + BATCH_SIZE], ignore_conflicts=True)
    for start in range(0, len(changed), BATCH_SIZE):
        with transaction.atomic():
            Correction.objects.bulk_update(changed[start:start + BATCH_SIZE],
                                           ["state", "sportlink_value", "original_value", "our_value",
                                            "resolved_at"])
    for start in range(0, len(restore), BATCH_SIZE):
        with transaction.atomic():
            for pk, name, ours, theirs in restore[start:start + BATCH_SIZE]:
                # Only if nobody changed it again since (a conditional UPDATE).
                Member.objects.filter(pk=pk, **{name: theirs}).update(**{name: ours})
    if restore:
        step.detail["restored"] = len(restore)


def _close(correction: Correction, state: str, now, changed: list[Correction]) -> None:
    correction.state = state
    correction.resolved_at = now
    changed.append(correction)


def conflict_message(correction: Correction) -> str:
    return (f"{correction.label}: corrected here to {correction.our_value!r}, but Sportlink changed it from "
            f"{correction.original_value!r} to {correction.sportlink_value!r}. Decide on the corrections "
            "worklist: keep ours, or take Sportlink's.")


# --- the admin and the worklist ------------------------------------------------


def record_edit(member: Member, fields: Iterable[str], *, user: Any) -> None:
    """Called by the admin after it saved `member`: open, update or withdraw the
    corrections of the contact fields in `fields`, noting who made them."""
    names = [name for name in fields if name in CONTACT_FIELDS]
    if not names:
        return
    now = timezone.now()
    user = user if getattr(user, "pk", None) else None
    existing = {c.field: c for c in Correction.objects.filter(member=member, field__in=names, state__in=OPEN_STATES)}
    for name in names:
        ours, theirs = getattr(member, name), getattr(member, sportlink_field(name))
        correction = existing.get(name)
        if correction is None:
            if ours != theirs:
                Correction.objects.create(member=member, field=name, sportlink_value=theirs, original_value=theirs,
                                          our_value=ours, detected_at=now, detected_by=user)
        elif ours == theirs:
            correction.state, correction.resolved_at, correction.resolved_by = CorrectionState.WITHDRAWN, now, user
            correction.save(update_fields=["state", "resolved_at", "resolved_by"])
        else:
            correction.our_value, correction.detected_by = ours, user
            correction.save(update_fields=["our_value", "detected_by"])


def keep_ours(ids: Iterable[int], *, user: Any) -> int:
    """Conflicts: keep our value; it is pending again against Sportlink's new value. Returns how many."""
    return Correction.objects.filter(pk__in=list(ids), state=CorrectionState.CONFLICT).update(
        state=CorrectionState.PENDING, original_value=F("sportlink_value"), resolved_at=timezone.now(),
        resolved_by=user)


def take_sportlink(ids: Iterable[int], *, user: Any) -> int:
    """Open corrections: the registry takes Sportlink's value and the correction is dropped. Returns how many."""
    with transaction.atomic():
        chosen = list(Correction.objects.select_for_update().filter(pk__in=list(ids), state__in=OPEN_STATES)
                      .values_list("pk", "member_id", "field"))
        by_field: dict[str, list[int]] = defaultdict(list)
        for _pk, member_id, name in chosen:
            by_field[name].append(member_id)
        for name, member_ids in by_field.items():
            Member.objects.filter(pk__in=member_ids).update(**{name: F(sportlink_field(name))})
        Correction.objects.filter(pk__in=[pk for pk, _member, _name in chosen]).update(
            state=CorrectionState.DISCARDED, resolved_at=timezone.now(), resolved_by=user)
    return len(chosen)


def open_corrections():
    """The worklist: open corrections with their member, grouped by member (name order)."""
    return (Correction.objects.filter(state__in=OPEN_STATES).select_related("member", "detected_by")
            .order_by("member__last_name", "member__first_name", "member__knvb_id", "field"))


def card_note(user: Any) -> CardNote | None:
    """The `people` card on the overview: how many corrections wait (one query)."""
    if not user.has_perm("pipelines.view_correction"):
        return None
    counts = Correction.objects.filter(state__in=OPEN_STATES).aggregate(
        pending=Count("pk", filter=Q(state=CorrectionState.PENDING)),
        conflicts=Count("pk", filter=Q(state=CorrectionState.CONFLICT)))
    pending, conflicts = counts["pending"], counts["conflicts"]
    if not pending and not conflicts:
        return None
    parts = []
    if pending:
        parts.append(f"{pending} correction{'s' if pending != 1 else ''} to enter in Sportlink")
    if conflicts:
        parts.append(f"{conflicts} conflict{'s' if conflicts != 1 else ''} to decide")
    return CardNote(text=", ".join(parts), url=reverse("pipelines:corrections"))


add_card_note("people", card_note)
