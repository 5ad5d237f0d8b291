"""The `teams` pipeline: teams by Sportlink id and the team work history."""

import pytest
import time_machine

from pipelines.models import Team, TeamMembership
from runs.models import RunError, RunStatus
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file, rewrite

pytestmark = pytest.mark.django_db(transaction=True)


def step(run, name):
    return run.steps.get(name=name)


def test_teams_and_their_players_and_staff(export_dir):
    run_pipeline("people")
    run = run_pipeline("teams")
    assert run.status == RunStatus.SUCCESS
    assert [s.name for s in run.steps.order_by("position")] == ["team-download", "team-sync", "work-history-sync"]
    assert Team.objects.count() == step(run, "team-sync").created
    roles = set(TeamMembership.objects.values_list("role", flat=True))
    assert "Teamspeler" in roles and "Technische staf" in roles
    assert not TeamMembership.objects.filter(until__isnull=False).exists()

    again = run_pipeline("teams")
    assert step(again, "team-sync").skipped == Team.objects.count()
    assert step(again, "work-history-sync").skipped == TeamMembership.objects.count()
    assert again.created == again.updated == 0


def test_a_renamed_team_updates_the_same_row(export_dir):
    run_pipeline("people")
    run_pipeline("teams")
    team = Team.objects.get(name="JO11-1")
    rewrite(export_file(export_dir, "Teams"), '"JO11-1"', '"JO11-1 (zaterdag)"', encoding="cp1252")
    run = run_pipeline("teams")
    assert step(run, "team-sync").updated == 1 and step(run, "team-sync").created == 0
    team.refresh_from_db()
    assert team.name == "JO11-1 (zaterdag)"
    assert step(run, "work-history-sync").created == 0  # same team: the squad is unchanged


def test_a_player_who_leaves_a_team_closes_the_membership_as_history(export_dir):
    run_pipeline("people")
    with time_machine.travel("2026-09-01 12:00 +02:00"):
        run_pipeline("teams")
    membership = TeamMembership.objects.filter(role="Teamspeler").order_by("pk").first()
    path = export_file(export_dir, "Teams")
    text = path.read_bytes().decode("cp1252")
    lines = [line for line in text.split("\r\n")
             if not (f'"{membership.member.knvb_id}"' in line and '"Teamspeler"' in line)]
    path.write_bytes("\r\n".join(lines).encode("cp1252"))
    with time_machine.travel("2026-10-15 12:00 +02:00"):
        run = run_pipeline("teams")
    assert step(run, "work-history-sync").updated == 1
    membership.refresh_from_db()
    assert str(membership.since) == "2026-09-01" and str(membership.until) == "2026-10-15"


def test_a_dry_run_counts_a_player_who_left_but_keeps_the_membership_open(export_dir):
    run_pipeline("people")
    with time_machine.travel("2026-09-01 12:00 +02:00"):
        run_pipeline("teams")
    membership = TeamMembership.objects.filter(role="Teamspeler").order_by("pk").first()
    path = export_file(export_dir, "Teams")
    text = path.read_bytes().decode("cp1252")
    lines = [line for line in text.split("\r\n")
             if not (f'"{membership.member.knvb_id}"' in line and '"Teamspeler"' in line)]
    path.write_bytes("\r\n".join(lines).encode("cp1252"))
    before = list(TeamMembership.objects.order_by("pk").values_list("pk", "since", "until"))
    with time_machine.travel("2026-10-15 12:00 +02:00"):
        run = run_pipeline("teams", dry_run=True)
    history = step(run, "work-history-sync")
    assert (history.created, history.updated, history.skipped) == (0, 1, len(before) - 1)
    assert list(TeamMembership.objects.order_by("pk").values_list("pk", "since", "until")) == before


def test_a_player_unknown_to_the_registry_is_an_error_for_that_row(export_dir):
    run = run_pipeline("teams")  # people never ran
    assert run.status == RunStatus.PARTIAL
    assert Team.objects.exists() and not TeamMembership.objects.exists()
    error = RunError.objects.filter(run=run, step_name="work-history-sync").first()
    assert "no member with relatiecode" in error.message and error.identifier_kind == "knvb_id"


def test_a_teams_export_without_rel_code_fails_the_download(tmp_path, settings):
    settings.SPORTLINK_EXPORT_DIR = str(tmp_path)
    (tmp_path / "Teams.csv").write_text("Team;Teamsoort;Teamrol;Naam\nJO11-1;Jeugd;Teamspeler;Bos\n")
    run = run_pipeline("teams")
    assert run.status == RunStatus.FAILED
    reason = step(run, "team-download").reason
    assert "Teams.csv" in reason and "Rel. code" in reason
