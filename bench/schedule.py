"""Benchmark: how long a queued pipeline waits for a real qcluster.

Starts `manage.py qcluster` (ORM broker, SQLite file, 2 workers) and enqueues
RUNS pipeline runs at once (a burst, as when several schedules share a slot),
each of a different small pipeline so none is refused by the pipeline lock.
Prints one JSON line:
  runs                 runs in the burst (20)
  latency_median_s     enqueue -> the run's started_at, median   (target <= 1 s)
  latency_max_s        the same, worst of the burst              (target <= 3 s)
  idle_latency_median_s  one run at a time on an idle cluster, median of IDLE runs
The qcluster imports this module (RUNS_EXTRA_PIPELINE_MODULES=bench.schedule)
to register the benchmark's pipelines.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = int(os.environ.get("BENCH_RUNS", 20))
IDLE = int(os.environ.get("BENCH_IDLE_RUNS", 5))


def _quick(run):
    with run.step("bench-sync", total=20) as step:
        for _ in range(20):
            with step.item():
                step.updated()


if __name__ != "__main__":
    # Imported inside the qcluster (and Django) process: register the pipelines.
    from runs.pipeline import register

    for _i in range(RUNS):
        register(f"bench-{_i:02d}")(_quick)


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"timed out after {timeout}s")


def main():
    sys.path.insert(0, str(HERE))
    from _setup import ROOT, median, setup

    workdir = setup("schedule")
    from django.conf import settings
    from django.db import connection
    from django_q.models import Schedule
    from django_q.tasks import async_task

    from runs.models import Run

    if "orm" not in settings.Q_CLUSTER:
        raise SystemExit("bench/schedule.py measures the ORM broker: unset REDIS_URL")
    Schedule.objects.all().delete()  # nothing but our runs in the queue
    env = dict(os.environ)
    env.update({
        "RUNS_EXTRA_PIPELINE_MODULES": "bench.schedule",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "syncsite.settings",
        "LOG_LEVEL": "ERROR",
        "Q_WORKERS": "2",
    })
    if connection.vendor == "sqlite" and "DATABASE_URL" not in env:
        env["DATABASE_URL"] = f"sqlite:///{settings.DATABASES['default']['NAME']}"
    log = open(workdir / "qcluster.log", "wb")  # noqa: SIM115
    cluster = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"], env=env, cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def latency(task_ids, enqueued):
        runs = wait_for(lambda: list(Run.objects.filter(task_id__in=task_ids, finished_at__isnull=False))
                        if Run.objects.filter(task_id__in=task_ids, finished_at__isnull=False).count()
                        == len(task_ids) else None, 120)
        return [run.started_at.timestamp() - enqueued[run.task_id] for run in runs], runs

    try:
        # Warm-up: the cluster is up and its workers have imported everything.
        tid = async_task("runs.tasks.run_pipeline_task", "bench-00")
        latency([tid], {tid: time.time()})

        idle = []
        for i in range(IDLE):
            start = time.time()
            tid = async_task("runs.tasks.run_pipeline_task", f"bench-{i % RUNS:02d}")
            idle += latency([tid], {tid: start})[0]

        enqueued = {}
        for i in range(RUNS):
            start = time.time()
            enqueued[async_task("runs.tasks.run_pipeline_task", f"bench-{i:02d}")] = start
        burst, runs = latency(list(enqueued), enqueued)
        statuses = sorted({run.status for run in runs})
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()
        log.close()
    print(json.dumps({
        "runs": len(burst),
        "latency_median_s": round(median(burst), 3),
        "latency_max_s": round(max(burst), 3),
        "idle_latency_median_s": round(median(idle), 3),
        "statuses": statuses,
        "workers": 2,
        "broker": "orm",
        "database": connection.vendor,
    }))


if __name__ == "__main__":
    main()
