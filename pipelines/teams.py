"""`teams`: teams and who plays or coaches in them (team work history).

Steps: team-download, team-sync, work-history-sync.
"""

from __future__ import annotations

from django.utils import timezone

from pipelines.models import Team, TeamMembership
from pipelines.readers import read_teams
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


@register("teams", schedule="0 6 * * 0")
def teams(run: PipelineRun) -> None:
    """Teams (a renamed team keeps its Sportlink id) and the team work history."""
    source = sportlink_source(run)
    result = download(run, "team-download", source, "teams", read_teams,
                      describe=lambda result: {"teams": len({r.team_id for r in result.records})})
    roles = result.records
    if run.only is not None:
        # runsync --only: the named members' roles and the named teams (with their roles).
        roles = [r for r in roles if run.in_scope(r.knvb_id, r.team_name, r.team_id)]
    found: dict[str, tuple[str, str]] = {}
    for record in roles:
        if run.in_scope(record.team_name, record.team_id):
            found.setdefault(record.team_id, (record.team_name, record.team_kind))

    with run.step("team-sync", total=len(found)) as step:
        existing = existing_hashes(Team.objects.all(), "sportlink_id")
        with Upserter(step, Team, existing=existing, fields=("name", "kind"), dry_run=run.dry_run,
                      identify=lambda item, _key: item["team_name"], identifier_kind="team") as upserter:
            for team_id, (name, kind) in found.items():
                item = {"team_name": name}
                with step.item(item):
                    upserter.add(item, key=team_id, values={"sportlink_id": team_id, "name": name, "kind": kind},
                                 digest=source_hash(name, kind))

    with run.step("work-history-sync", total=len(roles)) as step:
        today = timezone.localdate()
        members = knvb_map(dry_run=run.dry_run)
        team_ids = dict(Team.objects.values_list("sportlink_id", "pk"))
        # The open memberships are the current squads; there is nothing to hash
        # beyond the key, so every open one carries the same marker.
        existing = existing_hashes(TeamMembership.objects.filter(until__isnull=True), "member__knvb_id",
                                   "team__sportlink_id", "role", hash_field="until")
        with Upserter(step, TeamMembership, existing=existing, fields=(), dry_run=run.dry_run,
                      hash_field=None, identify=lambda _record, key: key[0], identifier_kind="knvb_id",
                      label=lambda record, _key: f"{record.team_name} ({record.role or 'no role'})") as upserter:
            seen = set()
            for record in roles:
                key = (record.knvb_id, record.team_id, record.role)
                if key in seen:
                    continue
                seen.add(key)
                with step.item(record):
                    member_id = members.get(record.knvb_id)
                    if member_id is None:
                        raise UnknownMember(record.knvb_id, f"{record.role} in {record.team_name}")
                    team_pk = team_ids.get(record.team_id)
                    if team_pk is None and not run.dry_run:
                        raise LookupError(f"team {record.team_name} is not in the registry")
                    upserter.add(record, key=key, values={"member_id": member_id, "team_id": team_pk,
                                                          "role": record.role, "since": today}, digest=None)
        # Left the team: the membership is closed, not deleted (it is history).
        # A scoped run (--only) saw some roles only: it closes nothing. A member
        # on an unreadable row is still in the export: nothing of theirs ends.
        unseen = {key: value for key, value in upserter.unseen().items()
                  if key[0] not in result.bad_keys} if run.only is None else {}
        names = dict(Team.objects.values_list("sportlink_id", "name")) if unseen else {}
        retire(step, TeamMembership, [pk for pk, _until in unseen.values()], kind="team memberships ended",
               active=len(existing), until=today,
               situation=f"The export lists {len(existing) - len(unseen)} of the {len(existing)} current "
                         "team memberships.",
               effect=f"{plural(len(unseen), 'team membership')} would be ended.",
               history=Retired({pk: key[0] for key, (pk, _until) in unseen.items()}, "knvb_id",
                               labels={pk: f"{names.get(key[1], key[1])} ({key[2] or 'no role'})"
                                       for key, (pk, _until) in unseen.items()}))
    run.summary.update(teams=len(found), memberships=len(seen))
