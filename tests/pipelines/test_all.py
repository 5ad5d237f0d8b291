"""The `all` pipeline: six children, going on after a failure, worst status wins."""

import pytest

from pipelines.models import Contribution, Member
from runs.models import Run, RunStatus, StepStatus
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def test_all_runs_the_six_pipelines_as_children_and_ends_with_the_worst_status(export_dir):
    run = run_pipeline("all")
    children = list(Run.objects.filter(parent=run).order_by("pk"))
    assert [c.pipeline for c in children] == ["people", "nikki", "teams", "functions", "discipline", "freescout"]
    assert [s.name for s in run.steps.order_by("position")] == [c.pipeline for c in children]
    assert run.status == RunStatus.PARTIAL  # people and discipline have bad rows
    assert run.steps.get(name="people").detail["child_run"] == children[0].pk
    assert Member.objects.count() == 60 and Contribution.objects.exists()

    again = run_pipeline("all")
    assert again.created == 0 and again.updated == 0 and again.skipped > 0


def test_all_goes_on_after_a_failing_child_and_ends_failed(export_dir, settings, tmp_path):
    settings.NIKKI_EXPORT_DIR = str(tmp_path / "missing")
    run = run_pipeline("all")
    assert run.status == RunStatus.FAILED
    assert run.steps.get(name="nikki").status == StepStatus.FAILED
    assert run.steps.get(name="discipline").status == StepStatus.PARTIAL
    assert Run.objects.filter(parent=run).count() == 6


def test_dry_run_of_all_writes_nothing(export_dir):
    run = run_pipeline("all", dry_run=True)
    assert run.dry_run
    assert not Member.objects.exists() and not Contribution.objects.exists()
    assert all(child.dry_run for child in Run.objects.filter(parent=run))
    # Members `people` would create count as known to the later children:
    # only the export's real problems are errors (4 bad member rows, 1 case).
    assert sum(Run.objects.filter(parent=run).values_list("error_count", flat=True)) == 5
    real = run_pipeline("all")
    assert (run.created, run.updated) == (real.created, real.updated)


@pytest.mark.slow
def test_runsync_all_on_the_bundled_demo_ends_partial_and_a_second_run_skips(subprocess_env, tmp_path):
    from tests.conftest import manage

    env = {**subprocess_env, "SPORTLINK_EXPORT_DIR": "", "NIKKI_EXPORT_DIR": "", "LAPOSTA_API_KEY": "",
           "FREESCOUT_API_KEY": "", "MEDIA_ROOT": str(tmp_path)}
    first = manage("runsync", "all", env=env, timeout=300)
    assert first.returncode == 3, first.stdout + first.stderr  # partial: the demo's bad rows
    assert Member.objects.count() > 490
    second = manage("runsync", "all", env=env, timeout=300)
    assert second.returncode == 3
    run = Run.objects.filter(pipeline="all").order_by("-pk").first()
    assert run.created == 0 and run.updated == 0 and run.skipped > 2000
