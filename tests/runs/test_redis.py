"""The production scheduler path: a real redis-server and a real `qcluster` using it as broker.

Slow (real processes; django-q2's scheduler looks at Schedules every ~30 s).
Every wait is bounded; both processes are stopped whatever happens.
"""

import socket
import subprocess
from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from runs.models import Run
from tests.conftest import require_binary
from tests.runs.test_qcluster import Cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    binary = require_binary("redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)

    def answers():
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, 15, "redis-server to answer")
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_a_scheduled_pipeline_runs_through_a_redis_broker(subprocess_env, redis_url, tmp_path):
    url, client = redis_url
    env = {**subprocess_env, "REDIS_URL": url, "Q_WORKERS": "1", "LOG_LEVEL": "WARNING"}
    Schedule.objects.all().delete()
    Schedule.objects.create(name="pipeline:clean", func="runs.tasks.run_pipeline_task", args="'clean'",
                            schedule_type=Schedule.ONCE, next_run=timezone.now() - timedelta(seconds=1))
    cluster = Cluster(env, tmp_path / "qcluster.log")
    try:
        run = wait_for(lambda: Run.objects.filter(pipeline="clean").exclude(status="running").first(), 90,
                       "the scheduled run (the cluster checks schedules every ~30 s)")
        wait_for(lambda: Task.objects.filter(func="runs.tasks.run_pipeline_task", success=True).exists(), 20,
                 "the task result")
        keys = [k.decode() for k in client.keys("django_q:*")]
    finally:
        cluster.stop()
    assert run.status == "success" and run.mode == "scheduled" and run.updated == 5
    # The task travelled through Redis, not the database queue.
    assert not OrmQ.objects.exists()
    assert any(k.startswith("django_q:syncsite") for k in keys), keys
    log = cluster.output()
    assert "Traceback" not in log, log[-3000:]


def test_release_tasks_removes_a_task_left_in_the_redis_list(redis_url):
    from django_q.brokers.redis_broker import Redis
    from django_q.signing import SignedPackage

    from runs.services import release_tasks

    url, client = redis_url
    broker = Redis(list_key="syncsite")
    broker.connection = client
    for task_id in ("dead", "alive"):
        broker.enqueue(SignedPackage.dumps({"id": task_id, "func": "runs.tasks.run_pipeline_task"}))
    client.rpush(broker.list_key, b"not a signed package")
    assert release_tasks(["dead", ""], broker=broker) == 1
    left = client.lrange(broker.list_key, 0, -1)
    assert len(left) == 2 and SignedPackage.loads(left[0])["id"] == "alive"
