"""The record history the sync helpers file: who was created, what changed from what, who left and came back.

A registered pipeline upserts Team rows from `plan["rows"]` with the Upserter's history
options (identifier, kind, label, restore rule, bookkeeping fields) and retires the teams
missing from the export with `update_in_batches(history=Retired(...))`, in batches of two.
"""

import pytest

from pipelines.models import Team
from pipelines.sync import Retired, Upserter, existing_hashes, source_hash, update_in_batches
from runs.models import ChangeAction, RecordChange, RunStatus
from runs.pipeline import register, unregister
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "test-team-history"


@pytest.fixture
def plan():
    plan = {"rows": [], "fields": ("name", "kind"), "not_compared": (), "retired_fields": None,
            "label": lambda record, key: f"{record['name']} ({key})"}

    @register(NAME)
    def teams_with_history(run):
        with run.step("team-sync") as step:
            existing = existing_hashes(Team.objects.all(), "sportlink_id")
            with Upserter(step, Team, existing=existing, fields=plan["fields"], dry_run=run.dry_run,
                          identify=lambda record, key: f"{record['club']}/{key}", identifier_kind="team",
                          label=plan["label"],
                          restored_when=("kind", "gone"), not_compared=plan["not_compared"]) as upserter:
                for team_id, name, kind in plan["rows"]:
                    record = {"club": "VV", "name": name}
                    with step.item(record):
                        upserter.add(record, key=team_id, digest=source_hash(name, kind),
                                     values={"sportlink_id": team_id, "name": name, "kind": kind})
            gone = {pk: key for key, (pk, _digest) in upserter.unseen().items()}
            teams = dict(Team.objects.filter(pk__in=gone).values_list("pk", "name"))
            history = Retired(identifiers={pk: f"VV/{key}" for pk, key in gone.items()}, identifier_kind="team",
                              labels={pk: f"{teams[pk]} ({key})" for pk, key in gone.items()},
                              fields=plan["retired_fields"])
            # The hash and the sync time are bookkeeping: set, but never shown as a change.
            update_in_batches(step, Team, sorted(gone), dry_run=run.dry_run, batch_size=2, history=history,
                              kind="gone", source_hash="", last_synced_at=None)

    yield plan
    unregister(NAME)


def changes(run):
    return sorted((c.identifier, c.identifier_kind, c.record_type, c.label, c.action, c.changes)
                  for c in RecordChange.objects.filter(run=run))


def test_new_rows_are_filed_as_created_under_their_identifier_kind_and_label(plan):
    plan["rows"] = [("T1", "JO11-1", ""), ("T2", "JO11-2", "")]
    run = run_pipeline(NAME)
    assert run.status == RunStatus.SUCCESS
    assert changes(run) == [
        ("VV/T1", "team", "team", "JO11-1 (T1)", ChangeAction.CREATED, {}),
        ("VV/T2", "team", "team", "JO11-2 (T2)", ChangeAction.CREATED, {}),
    ]
    (change,) = RecordChange.objects.filter(run=run, identifier="VV/T1")
    assert (change.pipeline, change.step_name) == (NAME, "team-sync")


def test_an_update_files_the_fields_that_changed_with_old_and_new_value(plan):
    plan["rows"] = [("T1", "JO11-1", "veld"), ("T2", "JO11-2", "veld"), ("T3", "JO13-1", "veld")]
    run_pipeline(NAME)
    plan["rows"] = [("T1", "JO11-1a", "veld"), ("T2", "JO11-2", "zaal"), ("T3", "JO13-1", "veld")]
    run = run_pipeline(NAME)
    assert changes(run) == [
        ("VV/T1", "team", "team", "JO11-1a (T1)", ChangeAction.UPDATED, {"name": ["JO11-1", "JO11-1a"]}),
        ("VV/T2", "team", "team", "JO11-2 (T2)", ChangeAction.UPDATED, {"kind": ["veld", "zaal"]}),
    ]


def test_leaving_is_retired_in_batches_and_coming_back_is_restored(plan):
    plan["rows"] = [("T1", "A", ""), ("T2", "B", ""), ("T3", "C", ""), ("T4", "D", "")]
    run_pipeline(NAME)
    plan["rows"] = [("T1", "A", "")]
    gone = run_pipeline(NAME)
    # Three teams retired in batches of two: each filed once, with the fields set (not the hash).
    assert changes(gone) == [
        (f"VV/{key}", "team", "team", f"{name} ({key})", ChangeAction.RETIRED, {"kind": ["", "gone"]})
        for key, name in (("T2", "B"), ("T3", "C"), ("T4", "D"))
    ]
    assert gone.steps.get().updated == 3

    plan["rows"] = [("T1", "A", ""), ("T3", "C", "")]
    back = run_pipeline(NAME)
    assert [c[:6] for c in changes(back) if c[0] == "VV/T3"] == [
        ("VV/T3", "team", "team", "C (T3)", ChangeAction.RESTORED, {"kind": ["gone", ""]})]


def test_a_retire_shows_the_fields_it_is_told_to_show_even_unchanged(plan):
    plan["retired_fields"] = ["name", "kind"]
    plan["rows"] = [("T1", "A", ""), ("T2", "B", "zaal")]
    run_pipeline(NAME)
    plan["rows"] = [("T1", "A", "")]
    run = run_pipeline(NAME)
    assert changes(run) == [("VV/T2", "team", "team", "B (T2)", ChangeAction.RETIRED,
                             {"name": ["B", "B"], "kind": ["zaal", "gone"]})]


def test_bookkeeping_fields_are_written_but_file_no_change(plan):
    plan["not_compared"] = ("kind",)
    plan["rows"] = [("T1", "A", "veld"), ("T2", "B", "veld")]
    run_pipeline(NAME)
    plan["rows"] = [("T1", "A", "zaal"), ("T2", "B2", "zaal")]
    run = run_pipeline(NAME)
    assert Team.objects.get(sportlink_id="T1").kind == "zaal"
    assert changes(run) == [("VV/T2", "team", "team", "B2 (T2)", ChangeAction.UPDATED, {"name": ["B", "B2"]})]


def test_an_update_with_only_bookkeeping_fields_is_written_without_history(plan):
    plan["not_compared"] = ("name", "kind")
    plan["rows"] = [("T1", "A", "veld")]
    run_pipeline(NAME)
    plan["rows"] = [("T1", "A2", "zaal")]
    run = run_pipeline(NAME)
    step = run.steps.get()
    assert (run.status, step.updated, step.failed) == (RunStatus.SUCCESS, 1, 0)
    assert Team.objects.get(sportlink_id="T1").name == "A2"
    assert changes(run) == []


def test_without_a_label_a_change_has_none(plan):
    plan["label"] = None
    plan["rows"] = [("T1", "A", "")]
    created = run_pipeline(NAME)
    plan["rows"] = [("T1", "A2", "")]
    updated = run_pipeline(NAME)
    assert [c[3:5] for c in changes(created) + changes(updated)] == [("", ChangeAction.CREATED),
                                                                      ("", ChangeAction.UPDATED)]


def direct_step(*, tracked):
    """A step of the teams pipeline, with a run row (tracked) or without one (untracked: no history)."""
    from runs.models import Run
    from runs.pipeline import PipelineRun, Step, get_pipeline
    from runs.tracker import RunTracker

    tracker = RunTracker("teams")
    if tracked:
        tracker.run_id = Run.objects.create(pipeline="teams").pk  # without a writer thread
    return Step(PipelineRun(get_pipeline("teams"), tracker), "team-sync")


def test_an_untracked_run_retires_with_history_asked_but_files_none():
    pks = [Team.objects.create(sportlink_id=f"T{n}", name=f"Team {n}").pk for n in range(3)]
    step = direct_step(tracked=False)
    assert update_in_batches(step, Team, pks, dry_run=False, batch_size=2,
                             history=Retired({pk: f"VV/{pk}" for pk in pks}, "team"), kind="gone") == 3
    assert set(Team.objects.values_list("kind", flat=True)) == {"gone"}
    assert not RecordChange.objects.exists()


def test_a_retired_row_without_an_identifier_is_filed_under_its_pk_and_a_vanished_one_is_no_error():
    team = Team.objects.create(sportlink_id="T1", name="A")
    vanished = Team.objects.create(sportlink_id="T2", name="B")
    vanished_pk = vanished.pk
    vanished.delete()  # e.g. deleted in the admin while the run was going
    step = direct_step(tracked=True)
    assert update_in_batches(step, Team, [team.pk, vanished_pk], dry_run=False,
                             history=Retired({}, "team"), kind="gone") == 2
    assert Team.objects.get().kind == "gone"
    (change,) = RecordChange.objects.filter(identifier=str(team.pk))
    assert (change.identifier_kind, change.action, change.changes) == ("team", ChangeAction.RETIRED,
                                                                      {"kind": ["", "gone"]})


def test_an_update_of_a_row_deleted_meanwhile_is_no_error_and_the_others_are_filed():
    for n in (1, 2):
        Team.objects.create(sportlink_id=f"T{n}", name=f"Team {n}", source_hash="old")
    step = direct_step(tracked=True)
    existing = existing_hashes(Team.objects.all(), "sportlink_id")
    Team.objects.filter(sportlink_id="T2").delete()  # e.g. in the admin, after the run read the hashes
    with Upserter(step, Team, existing=existing, fields=("name",), dry_run=False, identifier_kind="team") as upserter:
        for n in (1, 2):
            upserter.add(None, key=f"T{n}", values={"sportlink_id": f"T{n}", "name": f"Team {n}b"}, digest="new")
    assert (step.state.updated, step.state.failed) == (2, 0)
    assert list(Team.objects.values_list("sportlink_id", "name")) == [("T1", "Team 1b")]
    assert [(c.identifier, c.changes) for c in RecordChange.objects.all()] == [("T1", {"name": ["Team 1", "Team 1b"]})]
