"""`people`: Sportlink members and their parents into the registry, Laposta, photos.

Steps: sportlink-download, laposta-prepare, laposta-submit (pipelines.laposta),
rondo-club-sync (members and parents into the registry), reverse-sync
(corrections to enter in Sportlink: pipelines.corrections), photo-download,
photo-sync.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from pipelines import corrections, laposta
from pipelines.models import Member, Parent
from pipelines.readers import read_members
from pipelines.records import MemberRecord, ParentRecord
from pipelines.rowwriter import RowWriter
from pipelines.sources import ExportSource, sportlink_source
from pipelines.sync import (
    BATCH_SIZE,
    Retired,
    Upserter,
    existing_hashes,
    guard_removals,
    knvb_map,
    plural,
    report_row_errors,
    retire,
    source_hash,
)
from runs.pipeline import PipelineRun, Step, register

if TYPE_CHECKING:
    from pipelines.web.source import WebSportlinkSource

logger = logging.getLogger("pipelines.people")

MEMBER_FIELDS = (
    "first_name", "infix", "last_name", "initials", "email", "gender", "birth_date", "member_type",
    "age_category", "local_teams", "phone", "mobile", "street", "house_number", "postcode", "city",
    "member_since", "left_on", "house_number_addition",
)


@register("people", schedule="0 8,11,14,17 * * *")
def people(run: PipelineRun) -> None:
    """Sportlink members and parents into the registry and Laposta; member photos."""
    source = sportlink_source(run)
    with run.step("sportlink-download") as step:
        table = source.table("members")
        existing = existing_hashes(Member.objects.all(), "knvb_id")
        # Rows whose hash is unchanged need no conversion, unless Laposta wants every record.
        known = None if laposta_needs_records() else {code: digest for code, (_pk, digest) in existing.items()}
        result = read_members(table, known=known)
        step.read(result.rows)
        report_row_errors(step, result)
        step.detail.update(file=table.filename, source=source.describe(), parents=len(result.extra["parents"]),
                           members=len(result.records) + len(result.extra["unchanged"]))
    members: list[MemberRecord] = result.records
    unchanged: list[str] = result.extra["unchanged"]
    parents: list[ParentRecord] = result.extra["parents"]
    if run.only is not None:
        # runsync --only: the named members (relatiecode) and parents (email) alone.
        members = [m for m in members if run.in_scope(m.knvb_id)]
        unchanged = [code for code in unchanged if run.in_scope(code)]
        parents = [p for p in parents if run.in_scope(p.email)]

    # Contact fields corrected in the registry: Laposta gets our values, the import keeps them.
    edits = corrections.load_edits()
    laposta.laposta_steps(run, members=corrections.with_our_values(members, edits),
                          parents=corrections.with_our_parent_values(parents, edits))

    with run.step("rondo-club-sync", total=len(members) + len(unchanged) + len(parents)) as step:
        sync_members(step, members, unchanged=unchanged, existing=existing, keep=result.bad_keys,
                     dry_run=run.dry_run, edits=edits, may_retire=run.only is None)
        sync_parents(step, parents, dry_run=run.dry_run, edits=edits, may_retire=run.only is None)
        if not run.dry_run and laposta_needs_records():
            step.detail["laposta_links"] = laposta.link_subscriptions()
    corrections.reverse_sync(run, edits=edits, records=members, parents=parents)

    with run.step("photo-download", critical=False) as step:
        photos = download_photos(step, source)
        if run.only is not None:
            photos = {code: photo for code, photo in photos.items() if run.in_scope(code)}
    with run.step("photo-sync", critical=False, total=len(photos)) as step:
        in_export = {m.knvb_id for m in members}.union(unchanged) if run.dry_run else set()
        sync_photos(step, photos, dry_run=run.dry_run, in_export=in_export)
    run.summary.update(members=len(members) + len(unchanged), parents=len(parents), photos=len(photos))


def laposta_needs_records() -> bool:
    """Whether the Laposta destination will compare every member (it is configured)."""
    return not laposta.not_configured_reason()


def member_values(record: MemberRecord) -> tuple:
    """The member's registry values in MEMBER_FIELDS order (what the hash covers)."""
    return (
        record.first_name, record.infix, record.last_name, record.initials, record.email, record.gender,
        record.birth_date, record.member_type, record.age_category, ", ".join(record.teams), record.phone,
        record.mobile, record.street, record.house_number, record.postcode, record.city, record.member_since,
        record.left_on, record.house_number_addition,
    )


def sync_members(step: Step, members: list[MemberRecord], *, unchanged: Sequence[str] = (),
                 existing: dict | None = None, keep: AbstractSet[str] = frozenset(), dry_run: bool,
                 edits: corrections.Edits | None = None, may_retire: bool = True) -> None:
    """Create/update/skip members by hash; mark those who left the export as former.

    `unchanged`: relatiecodes the reader found unchanged (not converted).
    `keep`: relatiecodes on unreadable rows. They are still in the export, so
    they are not marked former because of a typo in one cell.
    `edits`: corrected contact fields (corrections.load_edits); the import keeps them.
    `may_retire`: False for a run scoped with --only (it saw only some members).
    """
    edits = corrections.load_edits() if edits is None else edits
    if existing is None:
        existing = existing_hashes(Member.objects.all(), "knvb_id")
    with Upserter(step, Member, existing=existing,
                  fields=(*MEMBER_FIELDS, "is_former", *corrections.SNAPSHOT_FIELDS), dry_run=dry_run,
                  identifier_kind="knvb_id", restored_when=("is_former", True),
                  not_compared=corrections.SNAPSHOT_FIELDS) as upserter:
        upserter.skip_unchanged(unchanged)
        for record in members:
            with step.item(record):
                values = member_values(record)
                upserter.add(record, key=record.knvb_id, digest=record.source_hash or source_hash(*values),
                             # Built only when the row is written; mypy cannot type a lambda's bound defaults.
                             values=lambda r=record, v=values: corrections.imported_values(  # type: ignore[misc]
                                 {"knvb_id": r.knvb_id, "is_former": False, **dict(zip(MEMBER_FIELDS, v, strict=True))},
                                 edits.get(r.knvb_id)))
    # A former member's hash is cleared, so one who comes back counts as updated.
    if not may_retire:
        return
    gone = {pk: key for key, (pk, digest) in upserter.unseen().items() if digest and key not in keep}
    active = sum(1 for _pk, digest in existing.values() if digest)
    step.detail["former"] = retire(
        step, Member, list(gone), kind="members marked former", active=active, is_former=True, source_hash="",
        situation=f"The export lists {active - len(gone)} of {plural(active, 'active member')}.",
        effect=f"{plural(len(gone), 'member')} would be marked former.", history=Retired(gone, "knvb_id"))


def sync_parents(step: Step, parents: list[ParentRecord], *, dry_run: bool,
                 edits: corrections.Edits | None = None, may_retire: bool = True) -> None:
    """Parents with their children; each parent and its links commit together.

    A parent is known by its email as last imported (`Parent.sportlink_email`,
    see corrections.resolve_parents), so an email corrected in the registry
    keeps its row; `edits` (corrections.load_edits): corrected fields the
    import keeps. Parents no child's row names any more are marked former.
    """
    edits = corrections.load_edits() if edits is None else edits
    member_pks = knvb_map()
    link = Parent.children.through
    links = RowWriter(link)

    def write_children(rows: list) -> None:
        changed = [pk for _record, pk, created in rows if not created]
        if changed:
            link.objects.filter(parent_id__in=changed).delete()
        links.insert([{"parent_id": pk, "member_id": member_pks[code]}
                      for record, pk, _created in rows for code in record.children if code in member_pks])

    existing = existing_hashes(Parent.objects.all(), "sportlink_email")
    with Upserter(step, Parent, existing=existing, dry_run=dry_run, after_write=write_children,
                  fields=("email", "name", "phone", "is_former", *corrections.PARENT_SNAPSHOT_FIELDS),
                  key_field="sportlink_email", identifier_kind="email", restored_when=("is_former", True),
                  not_compared=corrections.PARENT_SNAPSHOT_FIELDS) as upserter:
        for key, record in corrections.resolve_parents(parents, edits, existing):
            with step.item(record):
                children = tuple(sorted(code for code in record.children if code in member_pks))
                # A parent still under its key hashes as before; one Sportlink re-keyed is rewritten.
                digest = (source_hash(record.name, record.phone, children) if record.email == key
                          else source_hash(record.email, record.name, record.phone, children))
                upserter.add(record, key=key, digest=digest,
                             values=lambda r=record, k=key: corrections.imported_parent_values(  # type: ignore[misc]
                                 {"email": r.email, "name": r.name, "phone": r.phone, "is_former": False},
                                 edits.parents.get(k)))
    # An export without parent columns names no parent at all: nobody is marked former then.
    # A run scoped with --only (may_retire=False) saw only some parents: nobody is marked former.
    gone = [pk for _key, (pk, digest) in upserter.unseen().items() if digest] if parents and may_retire else []
    active = sum(1 for _pk, digest in existing.values() if digest)
    if gone and not guard_removals(
            step, kind="parents marked former", active=active, removing=len(gone),
            situation=f"The export names {active - len(gone)} of {plural(active, 'current parent')}.",
            effect=f"{plural(len(gone), 'parent')} would be marked former."):
        gone = []
    if gone and not dry_run:
        for start in range(0, len(gone), BATCH_SIZE):
            with transaction.atomic():
                # The hash is cleared, so a parent who comes back is rewritten (and no longer former).
                Parent.objects.filter(pk__in=gone[start:start + BATCH_SIZE]).update(is_former=True, source_hash="")
    if gone:
        step.detail["former_parents"] = len(gone)


def download_photos(step: Step, source: ExportSource | WebSportlinkSource) -> dict[str, tuple[str, bytes, str]]:
    """Photos of the export (`photos/<relatiecode>.jpg`): relatiecode -> (name, bytes, sha256)."""
    photos = {}
    for code, export in source.photos().items():
        with step.item({"knvb_id": code}):
            data = export.load()
            if not data:  # the web source found no photo after all (a 404 is not an error)
                step.skipped()
                continue
            photos[code] = (export.name, data, hashlib.sha256(data).hexdigest())
            step.read()
    return photos


def sync_photos(step: Step, photos: dict[str, tuple[str, bytes, str]], *, dry_run: bool,
                in_export: AbstractSet[str] = frozenset()) -> None:
    """Store a member's photo only when its bytes changed (the hash is kept on the member).

    `in_export`: relatiecodes of this export; in a dry run those members were
    not written, so their photos count as new instead of as unknown.
    """
    if not photos:
        return
    known = {code: (pk, digest, name) for code, pk, digest, name in
             Member.objects.order_by().values_list("knvb_id", "pk", "photo_hash", "photo").iterator(chunk_size=5000)}
    if dry_run:
        known = {code: (0, "", "") for code in in_export} | known
    changed: list[tuple[str, int, str, bytes, str, str]] = []
    for code, (filename, data, digest) in sorted(photos.items()):
        with step.item({"knvb_id": code}):
            if code not in known:
                raise LookupError(f"photo {filename}: no member with relatiecode {code} in the registry")
            pk, old_digest, old_name = known[code]
            if old_digest == digest:
                step.skipped()
                continue
            changed.append((code, pk, filename, data, digest, old_name))
    if dry_run:
        for *_rest, old_name in changed:
            (step.updated if old_name else step.created)()
        return
    for start in range(0, len(changed), BATCH_SIZE):
        _store_photos(step, changed[start:start + BATCH_SIZE])


def _store_photos(step: Step, batch: list[tuple[str, int, str, bytes, str, str]]) -> None:
    # Files are written before the transaction (no file I/O while holding the
    # write lock) and removed again if it rolls back; old files go after commit.
    saved = []
    try:
        for code, pk, filename, data, digest, old_name in batch:
            suffix = Path(filename).suffix.lower() or ".jpg"
            name = default_storage.save(f"members/photos/{code}-{digest[:12]}{suffix}", ContentFile(data))
            saved.append((pk, name, digest, old_name))
        with transaction.atomic():
            Member.objects.bulk_update([Member(pk=pk, photo=name, photo_hash=digest)
                                        for pk, name, digest, _old in saved], ["photo", "photo_hash"])
    except Exception as exc:
        for _pk, name, _digest, _old in saved:
            default_storage.delete(name)
        for code, *_rest in batch:
            step.fail_item(exc, identifier=code, identifier_kind="knvb_id")
        return
    for _pk, name, _digest, old_name in saved:
        if old_name and old_name != name:
            default_storage.delete(old_name)
    for *_rest, old_name in saved:
        (step.updated if old_name else step.created)()
