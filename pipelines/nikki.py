"""`nikki`: contributions per member per year from the Nikki export.

Steps: nikki-download, rondo-club-sync.
"""

from __future__ import annotations

from pipelines.models import Contribution
from pipelines.readers import read_nikki
from pipelines.sources import nikki_source
from pipelines.sync import UnknownMember, Upserter, download, existing_hashes, knvb_map, source_hash
from runs.pipeline import PipelineRun, register


@register("nikki", schedule="0 7 * * *")
def nikki(run: PipelineRun) -> None:
    """Nikki contributions (several lines of one member and year summed) into the registry."""
    source = nikki_source(run)
    result = download(run, "nikki-download", source, "nikki", read_nikki,
                      describe=lambda result: {"contributions": len(result.records)})
    contributions = result.records
    if run.only is not None:
        # runsync --only: the named members' contributions.
        contributions = [c for c in contributions if run.in_scope(c.knvb_id)]

    with run.step("rondo-club-sync", total=len(contributions)) as step:
        members = knvb_map(dry_run=run.dry_run)
        existing = existing_hashes(Contribution.objects.all(), "member__knvb_id", "year")
        with Upserter(step, Contribution, existing=existing, dry_run=run.dry_run,
                      fields=("nikki_id", "total", "balance", "status"), identify=lambda _record, key: key[0],
                      identifier_kind="knvb_id", label=lambda _record, key: str(key[1])) as upserter:
            for record in contributions:
                with step.item(record):
                    member_id = members.get(record.knvb_id)
                    if member_id is None:
                        raise UnknownMember(record.knvb_id, f"contribution {record.year}")
                    upserter.add(record, key=(record.knvb_id, record.year), values={
                        "member_id": member_id, "year": record.year, "nikki_id": record.nikki_id,
                        "total": record.total, "balance": record.balance, "status": record.status,
                    }, digest=source_hash(record.nikki_id, str(record.total), str(record.balance), record.status))
    run.summary.update(lines=result.extra.get("lines", 0), contributions=len(contributions))
