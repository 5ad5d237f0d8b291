import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from runs.models import Run
from tests.conftest import manage, runsync

pytestmark = pytest.mark.django_db(transaction=True)


def test_list_prints_each_pipeline_with_schedule_and_last_status():
    call_command("runsync", "clean", stdout=io.StringIO())
    code, out = runsync("--list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "0 8 * * *" in lines["sample"] and "never run" in lines["sample"]
    assert "success" in lines["clean"]


@pytest.mark.parametrize(
    ("pipeline", "code", "status"),
    [("clean", 0, "success"), ("boom", 1, "failed"), ("sample", 3, "partial")],
)
def test_exit_codes_follow_the_run_status(pipeline, code, status):
    got, out = runsync(pipeline)
    assert got == code
    run = Run.objects.get(pipeline=pipeline)
    assert run.status == status
    assert f"Details: /runs/{run.pk}/" in out
    assert f"{pipeline}: {status}" in out


def test_an_already_running_pipeline_exits_4():
    Run.objects.create(pipeline="clean", status="running", heartbeat_at=timezone.now())
    code, out = runsync("clean")
    assert code == 4
    assert "already running" in out


def test_summary_table_shows_each_step_and_the_worst_exit_code_wins():
    code, out = runsync("clean", "sample", "--scheduled")
    assert code == 3
    for text in ("sample-download", "sample-sync", "sample-submit", "skipped", "total"):
        assert text in out
    assert set(Run.objects.values_list("mode", flat=True)) == {"scheduled"}


@pytest.mark.parametrize(
    ("pipelines", "code"),
    [
        (["sample", "boom"], 1),  # failed is worse than partial, whichever comes first
        (["boom", "sample"], 1),
        (["clean", "selfcancel"], 1),  # cancelled is not a success
        (["selfcancel", "clean"], 1),
        (["clean", "clean"], 0),
    ],
)
def test_with_several_pipelines_the_worst_outcome_sets_the_exit_code(pipelines, code):
    got, out = runsync(*pipelines)
    assert got == code
    assert Run.objects.filter(parent__isnull=True).count() == len(pipelines)
    if "selfcancel" in pipelines:
        assert Run.objects.get(pipeline="selfcancel").status == "cancelled"
        assert "selfcancel: cancelled" in out


def test_partial_outranks_an_already_running_pipeline():
    Run.objects.create(pipeline="clean", status="running", heartbeat_at=timezone.now())
    assert runsync("clean", "sample")[0] == 3
    assert runsync("sample", "clean")[0] == 3
    assert runsync("clean", "clean")[0] == 4


@pytest.fixture
def writing_pipeline():
    """A pipeline that writes one Team row, unless it is a dry run (then it only counts it)."""
    from pipelines.models import Team
    from pipelines.sync import Upserter, existing_hashes
    from runs.pipeline import register, unregister

    @register("test-writes")
    def writes(run):
        with run.step("team-sync") as step, Upserter(step, Team, existing=existing_hashes(Team.objects.all(),
                                                     "sportlink_id"), fields=("name",), dry_run=run.dry_run) as up:
            up.add({}, key="T1", values={"sportlink_id": "T1", "name": "JO11-1"}, digest="h")

    yield Team
    unregister("test-writes")


def test_dry_run_is_recorded_and_writes_nothing(writing_pipeline):
    code, out = runsync("test-writes", "--dry-run")
    assert code == 0
    run = Run.objects.get(pipeline="test-writes")
    assert (run.dry_run, run.mode, run.created) == (True, "manual", 1)
    assert "test-writes: success (dry run)" in out
    assert not writing_pipeline.objects.exists()
    runsync("test-writes")
    assert list(writing_pipeline.objects.values_list("sportlink_id", flat=True)) == ["T1"]
    assert Run.objects.get(pipeline="test-writes", dry_run=False).created == 1


def test_an_unknown_pipeline_is_a_usage_error_listing_the_known_ones():
    with pytest.raises(CommandError) as info:
        call_command("runsync", "peopel")
    assert info.value.returncode == 2
    assert "peopel" in str(info.value) and "sample" in str(info.value)


@pytest.mark.slow
def test_the_real_exit_codes_from_a_subprocess(subprocess_env):
    assert manage("runsync", "clean", env=subprocess_env).returncode == 0
    result = manage("runsync", "peopel", env=subprocess_env)
    assert result.returncode == 2
    assert "Known pipelines" in result.stderr
    result = manage("runsync", "sample", env=subprocess_env)
    assert result.returncode == 3
    assert "sample-sync" in result.stdout
    help_text = manage("runsync", "--help", env=subprocess_env).stdout
    assert "3  partial" in help_text and "4  skipped" in help_text


def test_live_progress_shows_each_step_with_items_done_of_total():
    from rich.console import Console

    from runs.management.commands.runsync import _Progress
    from runs.tracker import RunTracker

    tracker = RunTracker("people")
    tracker.start_run()
    sid = tracker.start_step("sportlink-download")
    tracker.end_step(sid, status="success", read=500)
    sid = tracker.start_step("rondo-club-sync", total=500)
    tracker.steps[sid].created, tracker.steps[sid].skipped = 40, 2
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(_Progress(tracker, "people"))
    text = console.export_text()
    tracker.end_run()
    assert "people: running" in text
    assert "sportlink-download" in text and "500" in text
    assert "rondo-club-sync" in text and "42/500" in text
