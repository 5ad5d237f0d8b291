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
- Parents (PARENT_CONTACT_FIELDS: email, phone) go through the same states.
  Sportlink stores a parent on each child's row, and the import knows a
  parent by its email there: `Parent.sportlink_email` is both Sportlink's
  copy of the email and the parent's key for the import (`resolve_parents`),
  so a corrected email keeps the parent's row. A volunteer enters a parent's
  correction on the rows of its children (the worklist names them).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Prefetch, Q
from django.urls import reverse
from django.utils import timezone

from pipelines.models import (
    CONTACT_FIELDS,
    OPEN_STATES,
    PARENT_CONTACT_FIELDS,
    Correction,
    CorrectionState,
    Member,
    Parent,
    sportlink_field,
)
from pipelines.records import MemberRecord, ParentRecord
from runs.pipeline import CardNote, PipelineRun, Step, add_card_note

logger = logging.getLogger("pipelines.corrections")

STEP = "reverse-sync"
SNAPSHOT_FIELDS = tuple(sportlink_field(name) for name in CONTACT_FIELDS)
PARENT_SNAPSHOT_FIELDS = tuple(sportlink_field(name) for name in PARENT_CONTACT_FIELDS)
BATCH_SIZE = 500
# A dry run lists at most this many would-be changes in the step's detail.
DRY_RUN_LISTED = 100



class Edits(dict):
    """knvb_id -> {field: (our value, Sportlink's value)} for the fields that differ, and when they were read.

    `parents`: the same for parents, keyed by the parent's Sportlink email.
    """

    loaded_at: datetime | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parents: dict[str, dict[str, tuple[str, str]]] = {}


def edited_q(fields: Iterable[str] = CONTACT_FIELDS) -> Q:
    """Rows with at least one of `fields` that differs from Sportlink's copy (one scan, no join)."""
    q = Q()
    for name in fields:
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
    n = len(PARENT_CONTACT_FIELDS)
    parent_rows = (Parent.objects.filter(edited_q(PARENT_CONTACT_FIELDS)).order_by()
                   .values_list("sportlink_email", *PARENT_CONTACT_FIELDS, *PARENT_SNAPSHOT_FIELDS))
    for row in parent_rows.iterator(chunk_size=2000):
        edits.parents[row[0]] = {name: (ours, theirs) for name, ours, theirs in
                                 zip(PARENT_CONTACT_FIELDS, row[1:1 + n], row[1 + n:], strict=True) if ours != theirs}
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


# --- parents: keyed by Sportlink's email -----------------------------------------


def resolve_parents(records: Sequence[ParentRecord], edits: Edits,
                    known: Iterable[str]) -> list[tuple[str, ParentRecord]]:
    """Which registry parent each export parent is: (key, record), key = `Parent.sportlink_email`.

    `known`: the keys in the registry. An export email that is a key is that
    parent. One that is a parent's corrected email (ours) is that parent:
    Sportlink now shows our value, on these children's rows at least. An
    unknown email on the rows of a child of a parent whose corrected email is
    gone from the export is that parent too: Sportlink changed the email to a
    third value (a conflict). Anything else is a new parent (key = its email).
    Records that turn out to be one parent are merged; while any child's row
    still shows the old email, Sportlink's email stays the old one.
    """
    known = set(known)
    corrected = {fields["email"][0].lower(): key for key, fields in edits.parents.items() if "email" in fields}
    groups: dict[str, list[ParentRecord]] = {}
    unmatched: list[ParentRecord] = []
    for record in records:
        if record.email in known:
            groups.setdefault(record.email, []).append(record)
        elif record.email in corrected:
            groups.setdefault(corrected[record.email], []).append(record)
        else:
            unmatched.append(record)
    missing = {key for key in corrected.values() if key not in groups}
    children: dict[str, set[str]] = defaultdict(set)
    if unmatched and missing:
        for key, code in (Parent.children.through.objects.filter(parent__sportlink_email__in=missing)
                          .values_list("parent__sportlink_email", "member__knvb_id")):
            children[key].add(code)
    for record in unmatched:
        same = [key for key in sorted(missing) if children[key] & set(record.children) and key not in groups]
        groups[same[0] if len(same) == 1 else record.email] = [record]
    resolved = []
    for key, found in groups.items():
        if len(found) == 1:
            resolved.append((key, found[0]))
            continue
        found.sort(key=lambda r: r.email != key)  # rows still showing the key first
        merged = ParentRecord(email=found[0].email, name=next((r.name for r in found if r.name), ""),
                              phone=next((r.phone for r in found if r.phone), ""),
                              children=list(dict.fromkeys(code for r in found for code in r.children)))
        resolved.append((key, merged))
    return resolved


def imported_parent_values(values: dict[str, Any], edited: dict[str, tuple[str, str]] | None) -> dict[str, Any]:
    """The row the import writes for one parent (`values`: field -> export value, changed in place);
    as imported_values for members."""
    for name in PARENT_CONTACT_FIELDS:
        values[sportlink_field(name)] = values[name]
    if edited:
        for name, (ours, _theirs) in edited.items():
            values[name] = ours
    return values


def with_our_parent_values(records: list[ParentRecord], edits: Edits) -> list[ParentRecord]:
    """The parent records with our corrected email and phone, for Laposta's parents list.

    Matched to registry parents the way the import does (resolve_parents), so a
    parent whose email Sportlink changed meanwhile (a conflict) still gets ours.
    """
    if not edits.parents:
        return records
    resolved = resolve_parents(records, edits, Parent.objects.values_list("sportlink_email", flat=True))
    ours: dict[str, dict[str, Any]] = {key: {name: value for name, (value, _theirs) in fields.items()}
                                       for key, fields in edits.parents.items()}
    return [dataclasses.replace(record, **ours[key]) if key in ours else record for key, record in resolved]


# --- the reverse-sync step ------------------------------------------------------


def reverse_sync(run: PipelineRun, *, edits: Edits, records: Sequence[MemberRecord],
                 parents: Sequence[ParentRecord] | None = None) -> None:
    """Record the `reverse-sync` step. `edits`: load_edits() from before the import; `records` and
    `parents`: the converted export records (a dry run compares with them, as nothing was imported)."""
    with run.step(STEP, critical=False) as step:
        detect(step, edits=edits, records=records if run.dry_run else None,
               parents=parents if run.dry_run else None, dry_run=run.dry_run)


def detect(step: Step, *, edits: Edits, records: Sequence[MemberRecord] | None = None,
           parents: Sequence[ParentRecord] | None = None, dry_run: bool) -> None:
    """Compare every corrected field and every open correction; see the module docstring.

    Three queries to read (open corrections; members, then parents, that
    differ or have one open), then batched writes. With `records` / `parents`
    (a dry run), each member's and parent's values are first merged with the
    export the way the import would.
    """
    open_corrections = {(c.member_id, c.parent_id, c.field): c for c in
                        Correction.objects.filter(state__in=OPEN_STATES).order_by()}
    has_open = Q(pk__in=Correction.objects.filter(state__in=OPEN_STATES, member__isnull=False).values("member_id"))
    parent_has_open = Q(pk__in=Correction.objects.filter(state__in=OPEN_STATES, parent__isnull=False)
                        .values("parent_id"))
    # Unordered: a table scan. ORDER BY knvb_id would walk its index and fetch
    # each row from it, 5x slower on 50,000 members (measured on SQLite).
    rows = (Member.objects.filter(edited_q() | has_open).order_by()
            .values_list("pk", "knvb_id", "is_former", *CONTACT_FIELDS, *SNAPSHOT_FIELDS))
    parent_rows = (Parent.objects.filter(edited_q(PARENT_CONTACT_FIELDS) | parent_has_open).order_by()
                   .values_list("pk", "sportlink_email", "is_former", *PARENT_CONTACT_FIELDS,
                                *PARENT_SNAPSHOT_FIELDS))
    exported = {record.knvb_id: record for record in records} if records is not None else {}
    exported_parents: dict[str, ParentRecord] = {}
    if parents:
        exported_parents = dict(resolve_parents(parents, edits, Parent.objects.values_list("sportlink_email",
                                                                                            flat=True)))
    now = timezone.now()
    new: list[Correction] = []
    changed: list[Correction] = []
    restore: list[tuple[type[Member] | type[Parent], int, str, str, str]] = []  # (model, pk, field, ours, Sportlink's)
    listed: list[str] = []
    tally: dict[str, int] = defaultdict(int)

    def note(code: str, name: str, text: str) -> None:
        if dry_run:
            listed.append(f"{code} {CONTACT_FIELDS[name]}: {text}")

    def compare(model: type, pk: int, code: str, kind: str, is_former: bool, name: str, ours: str, theirs: str,
                before: str) -> None:
        """One field of one member or parent: `before` is Sportlink's value when the run started."""
        owner = {"member_id": pk, "parent_id": None} if model is Member else {"member_id": None, "parent_id": pk}
        correction = open_corrections.get((owner["member_id"], owner["parent_id"], name))

        def conflict(correction: Correction) -> None:
            step.fail_item(conflict_message(correction), identifier=code, identifier_kind=kind)
            note(code, correction.field, f"conflict, ours {correction.our_value!r}, "
                                         f"Sportlink's {correction.sportlink_value!r}")

        if is_former:
            if correction is not None:
                _close(correction, CorrectionState.CLOSED, now, changed)
                tally["closed"] += 1
                note(code, name, "closed (left the export)")
            return
        if correction is None:
            if ours == theirs:
                return
            correction = Correction(**owner, field=name, sportlink_value=theirs, original_value=before,
                                    our_value=ours, detected_at=now)
            new.append(correction)
            if before != theirs:
                # Corrected here and changed in Sportlink since: a third value.
                correction.state = CorrectionState.CONFLICT
                conflict(correction)
            else:
                step.created()
                note(code, name, f"new: in Sportlink {theirs!r}, enter {ours!r}")
            return
        if ours == theirs and theirs != correction.our_value and edits.loaded_at is not None \
                and correction.detected_at >= edits.loaded_at:
            # Corrected in the admin while this run imported the member: the
            # import did not know and wrote Sportlink's value. Put ours back.
            restore.append((model, pk, name, correction.our_value, theirs))
            step.skipped()
            return
        if ours == theirs:
            if theirs == correction.our_value:
                _close(correction, CorrectionState.CONFIRMED, now, changed)
                step.updated()
                note(code, name, f"confirmed: Sportlink shows {theirs!r}")
            else:
                _close(correction, CorrectionState.WITHDRAWN, now, changed)
                tally["withdrawn"] += 1
                note(code, name, f"withdrawn: ours is Sportlink's {theirs!r} again")
            return
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
            conflict(correction)
        else:
            step.skipped()

    n = len(CONTACT_FIELDS)
    for pk, code, is_former, *values in rows.iterator(chunk_size=2000):
        ours_now, theirs_now = values[:n], values[n:]
        record = exported.get(code)
        for i, name in enumerate(CONTACT_FIELDS):
            ours, theirs = ours_now[i], theirs_now[i]
            if record is not None:  # dry run: what the import would have left
                exported_value = getattr(record, name)
                ours, theirs = (exported_value if ours == theirs else ours), exported_value
            before = edits.get(code, {}).get(name, (ours, theirs))[1]
            compare(Member, pk, code, "knvb_id", is_former, name, ours, theirs, before)

    n = len(PARENT_CONTACT_FIELDS)
    for pk, key, is_former, *values in parent_rows.iterator(chunk_size=2000):
        ours_now, theirs_now = values[:n], values[n:]
        parent_record = exported_parents.get(key)
        if exported_parents and parent_record is None:
            is_former = True  # dry run: the import would mark the parent former
        for i, name in enumerate(PARENT_CONTACT_FIELDS):
            ours, theirs = ours_now[i], theirs_now[i]
            if parent_record is not None:
                exported_value = getattr(parent_record, name)
                ours, theirs = (exported_value if ours == theirs else ours), exported_value
            before = edits.parents.get(key, {}).get(name, (ours, theirs))[1]
            compare(Parent, pk, key, "email", is_former, name, ours, theirs, before)

    step.detail.update(tally)
    if dry_run:
        step.detail["would"] = sorted(listed)[:DRY_RUN_LISTED]
        return
    for start in range(0, len(new), BATCH_SIZE):
        with transaction.atomic():
            # A correction the admin opened meanwhile wins (the partial unique constraints).
            Correction.objects.bulk_create(new[start:start + BATCH_SIZE], ignore_conflicts=True)
    for start in range(0, len(changed), BATCH_SIZE):
        with transaction.atomic():
            Correction.objects.bulk_update(changed[start:start + BATCH_SIZE],
                                           ["state", "sportlink_value", "original_value", "our_value",
                                            "resolved_at"])
    for start in range(0, len(restore), BATCH_SIZE):
        with transaction.atomic():
            for model, pk, name, ours, theirs in restore[start:start + BATCH_SIZE]:
                # Only if nobody changed it again since (a conditional UPDATE).
                model.objects.filter(pk=pk, **{name: theirs}).update(**{name: ours})
    if restore:
        step.detail["restored"] = len(restore)


def _close(correction: Correction, state: str, now, changed: list[Correction]) -> None:
    correction.state = state
    correction.resolved_at = now
    changed.append(correction)


def conflict_message(correction: Correction) -> str:
    who = "parent's " if correction.parent_id else ""
    return (f"{who}{correction.label}: corrected here to {correction.our_value!r}, but Sportlink changed it from "
            f"{correction.original_value!r} to {correction.sportlink_value!r}. Decide on the corrections "
            "worklist: keep ours, or take Sportlink's.")


# --- the admin and the worklist ------------------------------------------------


def record_edit(obj: Member | Parent, fields: Iterable[str], *, user: Any) -> None:
    """Called by the admin after it saved `obj` (a member or a parent): open, update or withdraw
    the corrections of the contact fields in `fields`, noting who made them."""
    is_parent = isinstance(obj, Parent)
    tracked = PARENT_CONTACT_FIELDS if is_parent else CONTACT_FIELDS
    names = [name for name in fields if name in tracked]
    if not names:
        return
    owner = {"parent": obj} if is_parent else {"member": obj}
    now = timezone.now()
    user = user if getattr(user, "pk", None) else None
    existing = {c.field: c for c in Correction.objects.filter(**owner, field__in=names, state__in=OPEN_STATES)}
    for name in names:
        ours, theirs = getattr(obj, name), getattr(obj, sportlink_field(name))
        correction = existing.get(name)
        if correction is None:
            if ours != theirs:
                Correction.objects.create(**owner, field=name, sportlink_value=theirs, original_value=theirs,
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
                      .values_list("pk", "member_id", "parent_id", "field"))
        by_field: dict[tuple[type[Member] | type[Parent], str], list[int]] = defaultdict(list)
        for _pk, member_id, parent_id, name in chosen:
            by_field[(Member, name) if member_id else (Parent, name)].append(member_id or parent_id)
        for (model, name), pks in by_field.items():
            model.objects.filter(pk__in=pks).update(**{name: F(sportlink_field(name))})
        Correction.objects.filter(pk__in=[pk for pk, *_rest in chosen]).update(
            state=CorrectionState.DISCARDED, resolved_at=timezone.now(), resolved_by=user)
    return len(chosen)


def open_corrections():
    """The worklist: open corrections with their member or parent, grouped by member (name order),
    then by parent (name order); a parent's children come with it (one more query, only for parents)."""
    children = Prefetch("parent__children", queryset=Member.objects.order_by("knvb_id")
                        .only("pk", "knvb_id", "first_name", "infix", "last_name"))
    return (Correction.objects.filter(state__in=OPEN_STATES).select_related("member", "parent", "detected_by")
            .prefetch_related(children)
            .order_by(F("member__last_name").asc(nulls_last=True), "member__first_name", "member__knvb_id",
                      "parent__name", "parent__sportlink_email", "field"))


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
