"""The one removal guard (pipelines.sync.guard_removals) and `retire`, on a small pipeline of teams.

The demo pipelines' use of it (people, teams, functions, Laposta) is in test_safe_sync.py.
"""

import pytest

from pipelines.models import Team
from pipelines.sync import Retired, plural, removals_look_like_a_mistake, retire
from runs.models import ChangeAction, RecordChange, RunError, RunStatus
from runs.pipeline import register, unregister
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "test-retire-teams"


@pytest.fixture
def limits(settings):
    settings.SYNC_MAX_REMOVALS_PERCENT = 10
    settings.SYNC_MAX_REMOVALS_MIN = 5
    return settings


@pytest.mark.parametrize(("active", "removing", "mistake"), [
    (100, 5, False),    # not more than the minimum, whatever the share
    (10, 5, False),
    (100, 6, False),    # more than the minimum, not more than 10 percent
    (100, 10, False),   # exactly 10 percent is allowed
    (100, 11, True),
    (60, 7, True),
    (0, 6, True),       # removing from nothing known: more than every percentage
])
def test_a_removal_looks_like_a_mistake_above_both_limits(limits, active, removing, mistake):
    assert removals_look_like_a_mistake(active, removing) is mistake


@pytest.fixture
def retiring(limits):
    """A pipeline retiring the teams not in `plan["keep"]` (their source_hash set to "gone").

    Each run stores what `retire` returned in `plan["retired"]`; with `plan["history"]`
    the retire is filed in the record history under each team's sportlink id.
    """
    plan = {"keep": set(), "retired": None, "history": False}

    @register(NAME)
    def retire_teams(run):
        with run.step("team-sync") as step:
            active = list(Team.objects.exclude(source_hash="gone").values_list("sportlink_id", "pk"))
            gone = [pk for code, pk in active if code not in plan["keep"]]
            history = Retired({pk: code for code, pk in active if pk in gone}, "team") if plan["history"] else None
            plan["retired"] = retire(
                step, Team, gone, kind="teams", active=len(active),
                situation=f"The export lists {len(active) - len(gone)} of {len(active)} teams.",
                effect=f"{plural(len(gone), 'team')} would be gone.", history=history, source_hash="gone",
                name="(gone)")

    yield plan
    unregister(NAME)


def teams(count):
    Team.objects.bulk_create(Team(sportlink_id=f"T{i:02d}", name=f"Team {i}") for i in range(count))
    return {f"T{i:02d}" for i in range(count)}


def gone():
    return set(Team.objects.filter(source_hash="gone").values_list("sportlink_id", flat=True))


def test_few_enough_removals_go_ahead_in_one_step(retiring):
    retiring["keep"] = teams(60) - {"T00", "T01", "T02", "T03", "T04", "T05"}   # 6 of 60: 10 percent
    run = run_pipeline(NAME)
    assert retiring["retired"] == 6 and gone() == {"T00", "T01", "T02", "T03", "T04", "T05"}
    step = run.steps.get(name="team-sync")
    assert (run.status, step.updated, step.failed) == (RunStatus.SUCCESS, 6, 0)


def test_too_many_removals_are_held_with_one_plain_words_error_and_nothing_removed(retiring):
    retiring["keep"] = {"T00", "T01"}
    teams(10)
    run = run_pipeline(NAME)
    assert retiring["retired"] == 0 and gone() == set()
    step = run.steps.get(name="team-sync")
    assert (run.status, step.status, step.updated) == (RunStatus.PARTIAL, "partial", 0)
    assert step.detail["held_removals"] == {"teams": 8}
    (error,) = RunError.objects.filter(run=run)
    assert (error.identifier, error.identifier_kind) == ("teams", "held_removals")
    assert error.message == ("The export lists 2 of 10 teams. 8 teams would be gone. Nothing was removed. If this is "
                             f"right, approve the removals on the run page or run `runsync {NAME} --allow-removals`.")


def test_a_dry_run_reports_the_removals_it_would_hold(retiring):
    retiring["keep"] = {"T00"}
    teams(10)
    run = run_pipeline(NAME, dry_run=True)
    assert retiring["retired"] == 0 and gone() == set()
    (error,) = RunError.objects.filter(run=run)
    assert error.message.startswith("Dry run: these removals would be held. The export lists 1 of 10 teams.")


def test_allowed_removals_go_through_and_the_step_records_them(retiring):
    retiring["keep"] = {"T00"}
    teams(10)
    run = run_pipeline(NAME, allow_removals=True)
    assert retiring["retired"] == 9 and len(gone()) == 9
    step = run.steps.get(name="team-sync")
    assert (run.status, step.updated) == (RunStatus.SUCCESS, 9)
    assert step.detail["removals_allowed"] == {"teams": 9}
    assert not RunError.objects.filter(run=run).exists()


def test_a_dry_run_with_removals_allowed_counts_them_and_writes_nothing(retiring):
    retiring["keep"] = {"T00"}
    teams(10)
    run = run_pipeline(NAME, dry_run=True, allow_removals=True)
    assert retiring["retired"] == 9 and gone() == set()
    assert run.steps.get(name="team-sync").updated == 9


def test_nothing_to_remove_needs_no_guard(retiring):
    retiring["keep"] = teams(3)
    run = run_pipeline(NAME)
    assert retiring["retired"] == 0 and run.status == RunStatus.SUCCESS
    assert "held_removals" not in run.steps.get(name="team-sync").detail


def test_with_a_minimum_of_0_even_one_removal_of_one_team_is_held(retiring, limits):
    limits.SYNC_MAX_REMOVALS_MIN = 0
    teams(1)
    run = run_pipeline(NAME)
    assert retiring["retired"] == 0 and gone() == set()
    assert run.steps.get(name="team-sync").detail["held_removals"] == {"teams": 1}


def test_a_retire_files_each_row_in_the_record_history_without_a_label(retiring):
    retiring.update(keep={"T00"}, history=True)
    teams(3)
    run = run_pipeline(NAME)
    assert retiring["retired"] == 2
    changes = sorted((c.identifier, c.identifier_kind, c.label, c.action, c.changes)
                     for c in RecordChange.objects.filter(run=run))
    # The hash is bookkeeping; the name is shown; no labels given, so none is shown.
    assert changes == [(code, "team", "", ChangeAction.RETIRED, {"name": [f"Team {n}", "(gone)"]})
                       for n, code in ((1, "T01"), (2, "T02"))]


def test_plural():
    assert (plural(0, "team"), plural(1, "team"), plural(2, "team")) == ("0 teams", "1 team", "2 teams")
    assert plural(2, "address", "addresses") == "2 addresses"
