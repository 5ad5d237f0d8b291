"""A run's own folder (runs.files): pruned with the run; and the on_finish hook that closes what a run holds."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from runs.files import run_files_dir
from runs.models import Run, RunStatus
from runs.pipeline import register, unregister
from runs.retention import prune_runs
from runs.runner import run_pipeline

NOW = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def files_dir(settings, tmp_path):
    settings.RUNS_FILES_DIR = tmp_path / "runs"
    return settings.RUNS_FILES_DIR


@pytest.mark.django_db
def test_a_pruned_run_takes_its_folder_with_it_and_a_kept_one_keeps_it(files_dir, settings):
    settings.RUNS_KEEP_DAYS = 90
    with time_machine.travel(NOW, tick=False):
        old = Run.objects.create(pipeline="clean", status="success", started_at=NOW - timedelta(days=91))
        kept = Run.objects.create(pipeline="clean", status="success", started_at=NOW - timedelta(days=1))
        for run in (old, kept):
            run_files_dir(run.pk).mkdir(parents=True)
            (run_files_dir(run.pk) / "sportlink-members.json.gz").write_bytes(b"raw")
        prune_runs(pause_s=0)
    assert not run_files_dir(old.pk).exists()
    assert (run_files_dir(kept.pk) / "sportlink-members.json.gz").read_bytes() == b"raw"


def test_the_folder_of_an_untracked_run_is_named_so(files_dir):
    assert run_files_dir(None) == files_dir / "untracked"
    assert run_files_dir(12) == files_dir / "12"


@pytest.mark.django_db(transaction=True)
def test_on_finish_callbacks_run_however_the_run_ends_and_a_failing_one_is_contained():
    calls = []

    @register("holds-a-resource")
    def holds(run):
        run.on_finish(lambda: calls.append("first"))
        run.on_finish(lambda: 1 / 0)  # logged, never raised into the runner
        run.on_finish(lambda: calls.append("last"))
        with run.step("download"):
            raise RuntimeError("the site is down")

    try:
        run = run_pipeline("holds-a-resource")
    finally:
        unregister("holds-a-resource")
    assert run.status == RunStatus.FAILED
    assert calls == ["last", "first"]  # last registered, first called
