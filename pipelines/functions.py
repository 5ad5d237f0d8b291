"""`functions`: commissies and who holds which function in them (commissie work history).

Steps: functions-download, commissie-sync, commissie-work-history-sync.
"""

from __future__ import annotations

from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from pipelines.models import Commissie, CommissieMembership
from pipelines.readers import read_functions
from pipelines.sources import sportlink_source
from pipelines.sync import (
    Retired,
    UnknownMember,
    Upserter,
    download,
    existing_hashes,
    knvb_map,
    plural,
    retire,
    source_hash,
)
from runs.pipeline import PipelineRun, register


def _commissie_key(commissie_id: str, name: str) -> str:
    # A commissie code, when exported, survives a rename; otherwise the name is the key.
    return f"id:{commissie_id}" if commissie_id else f"name:{name}"


@register("functions", schedule="30 7,10,13,16 * * *")
def functions(run: PipelineRun) -> None:
    """Commissies and the functions members hold in them."""
    source = sportlink_source(run)
    result = download(run, "functions-download", source, "functions", read_functions, describe=lambda result: {
        "commissies": len({_commissie_key(r.commissie_id, r.commissie_name) for r in result.records})})
    roles = result.records
    if run.only is not None:
        # runsync --only: the named members' functions and the named commissies (with their members).
        roles = [r for r in roles if run.in_scope(r.knvb_id, r.commissie_name, r.commissie_id)]
    found: dict[str, tuple[str, str]] = {}
    for record in roles:
        if run.in_scope(record.commissie_name, record.commissie_id):
            found.setdefault(_commissie_key(record.commissie_id, record.commissie_name),
                         (record.commissie_id, record.commissie_name))

    with run.step("commissie-sync", total=len(found)) as step:
        existing = {_commissie_key(code or "", name): (pk, digest) for pk, code, name, digest in
                    Commissie.objects.values_list("pk", "sportlink_id", "name", "source_hash")}
        with Upserter(step, Commissie, existing=existing, fields=("name", "sportlink_id"), dry_run=run.dry_run,
                      identify=lambda item, _key: item["commissie_name"], identifier_kind="commissie") as upserter:
            for key, (code, name) in found.items():
                item = {"commissie_name": name}
                with step.item(item):
                    upserter.add(item, key=key, values={"name": name, "sportlink_id": code or None},
                                 digest=source_hash(code, name))

    with run.step("commissie-work-history-sync", total=len(roles)) as step:
        members = knvb_map(dry_run=run.dry_run)
        names = {pk: (code, name) for pk, code, name in Commissie.objects.values_list("pk", "sportlink_id", "name")}
        commissies = {_commissie_key(code or "", name): pk for pk, (code, name) in names.items()}
        existing = existing_hashes(CommissieMembership.objects.filter(is_current=True), "member__knvb_id",
                                   "commissie_id", "role", "since")
        with Upserter(step, CommissieMembership, existing=existing, dry_run=run.dry_run,
                      fields=("until", "is_current"), identify=lambda _record, key: key[0],
                      identifier_kind="knvb_id", restored_when=("is_current", False),
                      label=lambda record, _key: f"{record.commissie_name} ({record.role or 'no function'})",
                      ) as upserter:
            for record in roles:
                with step.item(record):
                    member_id = members.get(record.knvb_id)
                    if member_id is None:
                        raise UnknownMember(record.knvb_id, f"{record.role} in {record.commissie_name}")
                    commissie_pk = commissies.get(_commissie_key(record.commissie_id, record.commissie_name))
                    if commissie_pk is None and not run.dry_run:
                        raise LookupError(f"commissie {record.commissie_name} is not in the registry")
                    upserter.add(record, key=(record.knvb_id, commissie_pk, record.role, record.since), values={
                        "member_id": member_id, "commissie_id": commissie_pk, "role": record.role,
                        "since": record.since, "until": record.until, "is_current": True,
                    }, digest=source_hash(record.until))
        # No longer in the export: the function ended (kept as history, an
        # exported end date is kept, an open one is closed today).
        # A scoped run (--only) saw some functions only: it ends nothing. A
        # member on an unreadable row is still in the export: nothing of theirs ends.
        unseen = {key: value for key, value in upserter.unseen().items()
                  if key[0] not in result.bad_keys} if run.only is None else {}
        retire(step, CommissieMembership, [pk for pk, _digest in unseen.values()], kind="functions ended",
               active=len(existing), is_current=False, until=Coalesce(F("until"), Value(timezone.localdate())),
               situation=f"The export lists {len(existing) - len(unseen)} of the {len(existing)} current "
                         "functions in commissies.",
               effect=f"{plural(len(unseen), 'function')} would be ended.",
               history=Retired({pk: key[0] for key, (pk, _digest) in unseen.items()}, "knvb_id",
                               labels={pk: f"{names.get(key[1], ('', key[1]))[1]} ({key[2] or 'no function'})"
                                       for key, (pk, _digest) in unseen.items()}))
    run.summary.update(commissies=len(found), functions=len(roles))
