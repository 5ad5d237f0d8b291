"""A real `qcluster` on the test's SQLite file: concurrency and crash recovery.

Slow (each starts real processes) but part of `make test`. Every wait is
bounded; the cluster's whole process group is stopped at the end, whatever
happened.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from runs.models import Run
from runs.permissions import ensure_volunteers_group
from runs.scheduling import sync_schedules
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        pause.wait(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    """`manage.py qcluster` in its own session, so its workers go with it."""

    def __init__(self, env, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"], env=env, cwd=ROOT,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self):
        """SIGKILL the cluster and its workers at once, like a crash or the OOM killer."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the master stops its workers
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        self.kill()
        self.log.close()

    def output(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def cluster_env(subprocess_env):
    env = dict(subprocess_env)
    env.update({"Q_WORKERS": "2", "RUNS_FLUSH_INTERVAL": "0.1", "LOG_LEVEL": "WARNING"})
    # Only the schedules a test sets up may fire.
    Schedule.objects.all().delete()
    return env


def test_two_pipelines_and_a_reader_never_see_database_is_locked(cluster_env, tmp_path):
    env = {**cluster_env, "SLOW_SECONDS": "2.5"}
    staff = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    staff.groups.add(ensure_volunteers_group())
    stop_reading = threading.Event()
    reads, read_errors = [], []

    def read_history():
        client = Client()
        client.force_login(staff)
        try:
            while not stop_reading.is_set():
                try:
                    list(Run.objects.order_by("-started_at")[:50])
                    list(Run.objects.running().values_list("pipeline", "heartbeat_at"))
                    for page in ("runs:overview", "runs:list"):
                        response = client.get(reverse(page))
                        assert response.status_code == 200, (page, response.status_code)
                    reads.append(1)
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    read_errors.append(repr(exc))
        finally:
            connection.close()

    cluster = Cluster(env, tmp_path / "qcluster.log")
    reader = threading.Thread(target=read_history)
    reader.start()
    try:
        for _ in range(2):  # two rounds; in each, two pipelines run side by side
            before = Run.objects.finished().count()
            for name in ("slow", "sample", "clean"):
                async_task("runs.tasks.run_pipeline_task", name)
            wait_for(lambda b=before: Run.objects.finished().count() >= b + 3, 40, "a round of runs")
            wait_for(lambda: not Run.objects.running().exists(), 20, "the round to finish")
    finally:
        stop_reading.set()
        reader.join(timeout=30)
        cluster.stop()
    statuses = sorted(Run.objects.values_list("pipeline", "status"))
    assert statuses == sorted([("slow", "success"), ("sample", "partial"), ("clean", "success")] * 2)
    assert Run.objects.exclude(task_id="").count() == 6
    # slow overlapped with another pipeline: two runs were writing at once.
    slow = Run.objects.filter(pipeline="slow")
    assert any(Run.objects.exclude(pk=s.pk).filter(started_at__lt=s.finished_at, finished_at__gt=s.started_at)
               for s in slow)
    assert Task.objects.filter(success=True).count() == 6
    assert not read_errors, read_errors[:3]
    assert len(reads) > 10
    log = cluster.output()
    assert "locked" not in log.lower(), log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_a_killed_cluster_leaves_a_run_the_reaper_abandons_after_restart(cluster_env, tmp_path):
    env = {**cluster_env, "SLOW_SECONDS": "120", "RUNS_STALE_AFTER": "10"}
    log = tmp_path / "qcluster.log"
    first = Cluster(env, log)
    try:
        async_task("runs.tasks.run_pipeline_task", "slow")
        victim = wait_for(lambda: Run.objects.running().filter(pipeline="slow", heartbeat_at__isnull=False).first(),
                          30, "the slow run to start")
        wait_for(lambda: Run.objects.filter(pk=victim.pk, heartbeat_at__gt=victim.heartbeat_at).exists(),
                 10, "a heartbeat")
    finally:
        first.kill()
    first.log.close()
    victim.refresh_from_db()
    assert victim.status == "running"  # nobody will ever finish it

    # The reaper's schedule and the pipeline's next slot are both due; the new
    # cluster's scheduler (every ~30 s) queues them after the 10 s staleness.
    sync_schedules()
    Schedule.objects.exclude(name="maintenance:reap-stale-runs").delete()
    Schedule.objects.filter(name="maintenance:reap-stale-runs").update(next_run=timezone.now())
    Schedule.objects.create(name="test:slow", func="runs.tasks.run_pipeline_task", args="'slow'",
                            schedule_type=Schedule.ONCE, next_run=timezone.now() + timedelta(seconds=1))
    second = Cluster(env, log)
    try:
        next_run = wait_for(lambda: Run.objects.filter(pipeline="slow", pk__gt=victim.pk).first(), 50,
                            "the next scheduled slot")
        victim.refresh_from_db()
        assert victim.status == "abandoned" and "Abandoned" in victim.message
        assert victim.steps.get().status == "failed"
        assert next_run.status == "running" and next_run.mode == "scheduled"  # the lock was free
        # Cancel works across processes: the worker's tracker notices the request.
        next_run.request_cancel()
        wait_for(lambda: Run.objects.filter(pk=next_run.pk, status="cancelled").exists(), 15, "the cancel")
        # The monitor saves a task's result shortly after the task returns.
        wait_for(lambda: Task.objects.filter(func="runs.tasks.reap_stale_runs_task", success=True).exists(), 15,
                 "the reaper task's result")
    finally:
        second.stop()
    assert "locked" not in log.read_text(errors="replace").lower()


# --- clean stops (systemd sends SIGTERM to the main process or the whole group) ---


def _group_gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_for_exit(cluster, timeout):
    try:
        return cluster.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"qcluster did not stop within {timeout}s:\n{cluster.output()[-3000:]}") from None


def _started(cluster):
    # The sentinel and two workers are up once a worker says it is ready.
    wait_for(lambda: cluster.output().count("ready for work") >= 2, 30, "the workers to start")


@pytest.mark.parametrize("target", ["main", "group"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_cluster_stops_on_a_signal(cluster_env, tmp_path, target, signum):
    cluster = Cluster({**cluster_env, "LOG_LEVEL": "INFO"}, tmp_path / "qcluster.log")
    try:
        _started(cluster)
        started = time.monotonic()
        if target == "group":
            os.killpg(cluster.proc.pid, signum)
        else:
            cluster.proc.send_signal(signum)
        assert _wait_for_exit(cluster, 30) == 0, cluster.output()[-3000:]
        assert time.monotonic() - started < 30
        wait_for(lambda: _group_gone(cluster.proc.pid), 10, "every cluster process to exit")
    finally:
        cluster.stop()
    assert "Traceback" not in cluster.output()


@pytest.mark.parametrize(("target", "signum"), [("main", signal.SIGTERM), ("group", signal.SIGTERM),
                                               ("group", signal.SIGINT)])
def test_a_running_pipeline_ends_cancelled_when_the_cluster_stops(cluster_env, tmp_path, target, signum):
    env = {**cluster_env, "SLOW_SECONDS": "600"}
    cluster = Cluster(env, tmp_path / "qcluster.log")
    try:
        task_id = async_task("runs.tasks.run_pipeline_task", "slow")
        # Mid-step: items are being counted.
        run = wait_for(lambda: Run.objects.running().filter(pipeline="slow", steps__skipped__gt=0).first(),
                       30, "the slow run to be inside its step")
        if target == "group":
            os.killpg(cluster.proc.pid, signum)
        else:
            cluster.proc.send_signal(signum)
        assert _wait_for_exit(cluster, 30) == 0, cluster.output()[-3000:]
        wait_for(lambda: _group_gone(cluster.proc.pid), 10, "every cluster process to exit")
    finally:
        cluster.stop()
    run.refresh_from_db()
    assert run.status == "cancelled", (run.status, run.message, cluster.output()[-3000:])
    assert run.message == "stopped: the scheduler is shutting down"
    step = run.steps.get()
    assert step.status == "cancelled" and step.reason == "stopped: the scheduler is shutting down"
    assert run.task_id == task_id
    # The task finished (one attempt): the queue will not start it again.
    assert Task.objects.filter(id=task_id).exists()
    from django_q.models import OrmQ

    assert not OrmQ.objects.exists()
    assert "Traceback" not in cluster.output()


def test_a_killed_worker_frees_its_pipeline_at_once_after_the_reaper(cluster_env, tmp_path):
    from django_q.models import OrmQ

    from runs.models import ApiToken
    from runs.runner import reap_stale_runs
    from tests.runs.test_action_views import CsrfClient, make_user, run_now_url, texts

    env = {**cluster_env, "SLOW_SECONDS": "600", "RUNS_STALE_AFTER": "10"}
    ops = make_user("ops", "trigger_run")
    token = ApiToken.generate()
    api_token = ApiToken(user=ops, name="monitor")
    api_token.set_token(token)
    api_token.save()
    client = CsrfClient(ops)
    cluster = Cluster(env, tmp_path / "qcluster.log")
    try:
        assert client.post(run_now_url("slow")).status_code == 302
        victim = wait_for(lambda: Run.objects.running().filter(pipeline="slow", heartbeat_at__isnull=False).first(),
                          30, "the slow run to start")
        os.kill(victim.pid, signal.SIGKILL)  # the worker only, like the OOM killer
        # The sentinel replaces the worker; the run is left running, its task locked in the queue.
        wait_for(lambda: "reincarnated worker" in cluster.output(), 20, "a new worker")
        assert OrmQ.objects.count() == 1
        api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert api.post(reverse("api:trigger", args=["slow"])).status_code == 409  # still running
        assert reap_stale_runs(now=timezone.now() + timedelta(minutes=10)) == [victim.pk]
        assert not OrmQ.objects.exists()  # released: it can never start again by itself
        assert api.post(reverse("api:trigger", args=["slow"])).status_code == 202
        again = wait_for(lambda: Run.objects.running().filter(pipeline="slow").first(), 30, "the new run")
        assert again.pk != victim.pk and again.mode == "api"
        assert texts(client.post(run_now_url("slow")))[-1] == f"slow is already running (run #{again.pk})."
        assert Run.objects.filter(pipeline="slow").count() == 2  # exactly one new run
        again.request_cancel()
        wait_for(lambda: Run.objects.filter(pk=again.pk, status="cancelled").exists(), 15, "the cancel")
    finally:
        cluster.stop()
    victim.refresh_from_db()
    assert victim.status == "abandoned"
    assert Run.objects.filter(pipeline="slow").count() == 2


def test_a_pipeline_stuck_past_the_grace_period_is_killed_with_its_processes(cluster_env, tmp_path):
    # `stuck` blocks inside one item: it never reaches a boundary.
    env = {**cluster_env, "SLOW_SECONDS": "600", "Q_STOP_GRACE": "3"}
    cluster = Cluster(env, tmp_path / "qcluster.log")
    try:
        async_task("runs.tasks.run_pipeline_task", "stuck")
        # Inside the item, past every boundary (a signal before it would be a clean stop).
        run = wait_for(lambda: Run.objects.running().filter(pipeline="stuck", steps__read=1).first(),
                       30, "the stuck run to be inside its item")
        worker = run.pid
        started = time.monotonic()
        os.killpg(cluster.proc.pid, signal.SIGTERM)
        code = _wait_for_exit(cluster, 20)
        assert code == 1, (Run.objects.filter(pk=run.pk).values("status", "message").first(), cluster.output())
        assert time.monotonic() - started < 15
        wait_for(lambda: _group_gone(cluster.proc.pid), 10, "every cluster process to exit")
    finally:
        cluster.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
    assert "did not stop within 3 s" in cluster.output()
    run.refresh_from_db()
    assert run.status == "running"  # left for the reaper, like a crash
