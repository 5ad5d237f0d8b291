"""The django-q2 tasks, run through django-q2 in sync mode."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Task
from django_q.tasks import async_task

from runs.models import Run, RunError
from runs.pipeline import UnknownPipeline
from runs.tasks import current_task_id

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def q_sync(settings, monkeypatch):
    # django-q2 reads Q_CLUSTER once, into Conf, when it is imported.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


def test_a_scheduled_task_runs_the_pipeline_and_records_its_task_id():
    task_id = async_task("runs.tasks.run_pipeline_task", "clean")
    run = Run.objects.get(pipeline="clean")
    assert (run.status, run.mode, run.task_id, run.updated) == ("success", "scheduled", task_id, 5)
    task = Task.objects.get(id=task_id)
    assert task.success and task.result == run.pk


def test_mode_and_user_are_passed_through():
    user = get_user_model().objects.create_user("ann")
    async_task("runs.tasks.run_pipeline_task", name="sample", mode="dashboard", triggered_by_id=user.pk)
    run = Run.objects.get(pipeline="sample")
    assert (run.mode, run.triggered_by_id, run.status) == ("dashboard", user.pk, "partial")


def test_a_deleted_user_does_not_stop_the_run():
    async_task("runs.tasks.run_pipeline_task", "clean", mode="api", triggered_by_id=987654)
    run = Run.objects.get(pipeline="clean")
    assert (run.status, run.triggered_by_id) == ("success", None)


def test_an_unknown_pipeline_is_recorded_as_a_failed_run_and_a_task_failure():
    with pytest.raises(UnknownPipeline):
        async_task("runs.tasks.run_pipeline_task", "nosuchpipeline")
    run = Run.objects.get(pipeline="nosuchpipeline")
    assert run.status == "failed" and run.finished_at is not None and run.mode == "scheduled"
    assert "Unknown pipeline 'nosuchpipeline'" in run.message and run.task_id
    assert RunError.objects.get(run=run).message == run.message
    assert run.error_count == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("clean", "scheduled", None, "extra"), {}, "too many positional arguments"),
        (("clean",), {"bogus": 1}, "unexpected keyword argument 'bogus'"),
        ((), {}, "missing a required argument: 'name'"),
        (("clean",), {"mode": "nightly"}, "expected a pipeline name, a mode"),
        ((42,), {}, "expected a pipeline name"),
    ],
)
def test_bad_task_arguments_are_recorded_as_a_failed_run(args, kwargs, expected):
    with pytest.raises((TypeError, ValueError)):
        async_task("runs.tasks.run_pipeline_task", *args, **kwargs)
    run = Run.objects.get()
    assert run.status == "failed" and expected in run.message and "Bad task arguments" in run.message
    assert not Run.objects.filter(pipeline="clean", status="success").exists()


def test_a_failing_pipeline_is_a_failed_run_not_a_task_failure():
    task_id = async_task("runs.tasks.run_pipeline_task", "boom")
    assert Run.objects.get(pipeline="boom").status == "failed"
    assert Task.objects.get(id=task_id).success


def test_the_reaper_task_abandons_runs_whose_heartbeat_stopped(settings):
    old = timezone.now() - timedelta(seconds=settings.RUNS_STALE_AFTER_S + 60)
    stale = Run.objects.create(pipeline="slow", started_at=old, heartbeat_at=old)
    fresh = Run.objects.create(pipeline="clean", heartbeat_at=timezone.now())
    task_id = async_task("runs.tasks.reap_stale_runs_task")
    assert Task.objects.get(id=task_id).result == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == ("abandoned", "running")


def test_outside_a_worker_there_is_no_task_id():
    import threading

    seen = []
    thread = threading.Thread(target=lambda: seen.append(current_task_id()))
    thread.start()
    thread.join()
    assert seen == [""]


def test_an_unknown_pipeline_queued_by_a_deleted_user_is_still_recorded():
    with pytest.raises(UnknownPipeline):
        async_task("runs.tasks.run_pipeline_task", "nosuchpipeline", mode="dashboard", triggered_by_id=987654)
    run = Run.objects.get(pipeline="nosuchpipeline")
    assert (run.status, run.mode, run.triggered_by_id) == ("failed", "dashboard", None)
