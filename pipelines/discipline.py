"""`discipline`: discipline cases, linked to members by relatiecode.

Steps: discipline-download, discipline-sync.
"""

from __future__ import annotations

from pipelines.models import DisciplineCase
from pipelines.readers import read_discipline
from pipelines.sources import sportlink_source
from pipelines.sync import UnknownMember, Upserter, download, existing_hashes, knvb_map, source_hash
from runs.pipeline import PipelineRun, register

FIELDS = ("member_id", "match_date", "match", "team_name", "description", "sanction", "fee", "status")


@register("discipline", schedule="30 23 * * 1")
def discipline(run: PipelineRun) -> None:
    """Discipline cases; a case of an unknown member is an error for that case."""
    source = sportlink_source(run)
    result = download(run, "discipline-download", source, "discipline", read_discipline)
    cases = result.records
    if run.only is not None:
        # runsync --only: the named cases (dossier id) and the cases of the named members.
        cases = [c for c in cases if run.in_scope(c.dossier_id, c.knvb_id)]

    with run.step("discipline-sync", total=len(cases)) as step:
        members = knvb_map(dry_run=run.dry_run)
        existing = existing_hashes(DisciplineCase.objects.all(), "dossier_id")
        with Upserter(step, DisciplineCase, existing=existing, fields=FIELDS, dry_run=run.dry_run,
                      identifier_kind="dossier_id") as upserter:
            for record in cases:
                # The dossier is the identifier: the case is what failed, not the member.
                with step.item({"dossier_id": record.dossier_id}):
                    member_id = members.get(record.knvb_id)
                    if member_id is None:
                        raise UnknownMember(record.knvb_id, f"case {record.dossier_id}")
                    values = {
                        "dossier_id": record.dossier_id, "member_id": member_id, "match_date": record.match_date,
                        "match": record.match, "team_name": record.team_name, "description": record.description,
                        "sanction": record.sanction, "fee": record.fee, "status": record.status,
                    }
                    upserter.add(record, key=record.dossier_id, values=values,
                                 digest=source_hash(record.knvb_id, *list(values.values())[2:]))
    run.summary.update(cases=len(cases))
