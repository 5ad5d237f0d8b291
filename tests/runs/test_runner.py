import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from runs.models import Run, RunError, RunStep
from runs.runner import reap_stale_runs, run_pipeline
from tests.conftest import ROOT, closing_connection

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, timeout=30.0):
    """Poll the database until `predicate()` is true (bounded)."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        event.wait(0.05)
    raise AssertionError("condition not met in time")


def test_a_pipeline_that_raises_ends_failed_and_frees_the_lock():
    run = run_pipeline("boom")
    assert run.status == "failed" and run.finished_at is not None
    assert not Run.objects.running().filter(pipeline="boom").exists()
    assert run_pipeline("boom").status == "failed"  # the lock was free


def test_an_exception_outside_any_step_is_recorded_once():
    from runs.pipeline import register, unregister

    @register("outside")
    def outside(run):
        raise LookupError("no export directory")

    try:
        run = run_pipeline("outside")
    finally:
        unregister("outside")
    assert run.status == "failed" and run.message == "no export directory"
    (error,) = RunError.objects.filter(run=run)
    assert "LookupError" in error.traceback


def test_keyboard_interrupt_still_finishes_the_run_and_is_reraised():
    with pytest.raises(KeyboardInterrupt):
        run_pipeline("interrupt")
    run = Run.objects.get(pipeline="interrupt")
    assert run.status == "failed"
    assert run.message == "Interrupted (KeyboardInterrupt)."
    assert RunStep.objects.get(run=run).status == "failed"


def test_the_database_allows_one_running_run_per_pipeline():
    Run.objects.create(pipeline="people", status="running")
    Run.objects.create(pipeline="teams", status="running")
    Run.objects.create(pipeline="people", status="success")
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.create(pipeline="people", status="running")


def test_a_second_start_is_skipped_while_another_pipeline_runs_in_parallel(monkeypatch):
    monkeypatch.setenv("SLOW_SECONDS", "20")
    results = {}
    thread = threading.Thread(target=closing_connection(lambda: results.setdefault("slow", run_pipeline("slow"))))
    thread.start()
    try:
        holder = wait_for(lambda: Run.objects.running().filter(pipeline="slow").first())
        skipped = run_pipeline("slow")
        assert skipped.status == "skipped"
        assert skipped.summary == {"held_by": holder.pk}
        assert f"run #{holder.pk}" in skipped.message
        assert run_pipeline("clean").status == "success"  # another pipeline is not blocked
    finally:
        Run.objects.filter(pipeline="slow", status="running").first().request_cancel()
        thread.join(timeout=30)
    assert results["slow"].status == "cancelled"


def test_the_reaper_abandons_runs_whose_heartbeat_stopped():
    now = timezone.now()
    stale = Run.objects.create(pipeline="people", status="running", started_at=now - timedelta(hours=1),
                               heartbeat_at=now - timedelta(minutes=30))
    RunStep.objects.create(run=stale, position=1, name="sync", status="running")
    fresh = Run.objects.create(pipeline="teams", status="running", started_at=now - timedelta(hours=1),
                               heartbeat_at=now - timedelta(seconds=5))
    assert reap_stale_runs(now=now) == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "abandoned" and fresh.status == "running"
    assert stale.finished_at == stale.heartbeat_at
    assert "Abandoned" in stale.message
    assert RunStep.objects.get(run=stale).status == "failed"
    assert reap_stale_runs(now=now) == []


def test_the_reaper_releases_the_queued_task_of_an_abandoned_run():
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    from runs.services import trigger_run

    dead = async_task("runs.tasks.run_pipeline_task", "clean")
    other = async_task("runs.tasks.run_pipeline_task", "sample")
    # A worker took the task (the ORM broker locks it for `retry` seconds) and died.
    OrmQ.objects.update(lock=timezone.now() + timedelta(hours=3))
    now = timezone.now()
    Run.objects.create(pipeline="clean", status="running", started_at=now - timedelta(hours=1),
                       heartbeat_at=now - timedelta(minutes=30), task_id=dead)
    assert reap_stale_runs(now=now)
    assert [entry.task_id() for entry in OrmQ.objects.all()] == [other]
    assert trigger_run("clean").queued  # not "already queued"


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_abandoned_by_the_reaper_and_frees_the_lock(subprocess_env):
    env = {**subprocess_env, "SLOW_SECONDS": "60"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runsync", "slow"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_for(lambda: Run.objects.running().filter(pipeline="slow", steps__name="slow-sync").first())
        wait_for(lambda: RunStep.objects.filter(run=run, skipped__gt=0).exists())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    run.refresh_from_db()
    assert run.status == "running"  # nobody finished it
    # Not yet stale: the reaper leaves it alone and the lock still holds.
    assert reap_stale_runs() == []
    assert run_pipeline("slow").status == "skipped"
    # Later, the heartbeat is old: abandoned, and the lock is free again.
    assert reap_stale_runs(now=timezone.now() + timedelta(hours=1)) == [run.pk]
    run.refresh_from_db()
    assert run.status == "abandoned"
    os.environ["SLOW_SECONDS"] = "0"
    try:
        assert run_pipeline("slow").status == "success"
    finally:
        del os.environ["SLOW_SECONDS"]
