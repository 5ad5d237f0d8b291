"""Retention at scale: prune 200,000 runs and 1,000,000 errors while a reader keeps paging.

Half the runs (and their errors) are past retention (RUNS_KEEP_DAYS=90,
RUN_ERRORS_KEEP_DAYS=30): ages 91-180 days versus 0-29 days. Rows are
inserted with executemany, oldest first (ids grow with time, as in real
use). During the prune a second thread, with its own connection, runs
what the dashboard runs (the newest runs page, one run's errors page, a
pipeline's history) in a loop and records its longest page: `max_lock_ms`
(target <= 200). Prints one JSON line.

    python bench/prune.py            # SQLite in a temp dir (or DATABASE_URL)
"""

import json
import random
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._setup import median, setup  # noqa: E402

setup("prune")

from django.db import connection, connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from runs.models import Run, RunError, RunStep  # noqa: E402
from runs.retention import prune_runs  # noqa: E402

RUNS = 200_000
ERRORS_PER_RUN = 5
PIPELINES = ["people", "teams", "functions", "discipline", "nikki", "laposta", "freescout"]
TARGET_MS = 200


def populate(now):
    rng = random.Random(7)
    run_table, step_table, error_table = Run._meta.db_table, RunStep._meta.db_table, RunError._meta.db_table
    message = "Laposta answered 400 (code 208): not an email address " + "x" * 60
    # Ages first, then rows in chronological order: ids grow with time, as in
    # real history (the old half is the low ids).
    ages = sorted(
        (rng.uniform(91 * 86400, 180 * 86400) if i % 2 == 0 else rng.uniform(0, 29 * 86400) for i in range(RUNS)),
        reverse=True,
    )
    chunk = 20_000
    adapt = connection.ops.adapt_datetimefield_value  # what the ORM stores (SQLite: naive UTC text)
    next_id = 1
    with connection.cursor() as cursor:
        for start in range(0, RUNS, chunk):
            runs, steps, errors = [], [], []
            for i in range(start, min(start + chunk, RUNS)):
                age_s = ages[i]
                started = adapt(now - timedelta(seconds=age_s))
                finished = adapt(now - timedelta(seconds=age_s - 30))
                run_id = next_id
                next_id += 1
                runs.append((run_id, PIPELINES[i % len(PIPELINES)], "scheduled", "partial", started, finished,
                             30_000, 0, 10, 0, ERRORS_PER_RUN, ERRORS_PER_RUN, "", "{}", "", "", False))
                steps.append((run_id, run_id, 0, "laposta-submit", "partial", True, started, finished, 30_000,
                              0, 0, 10, 0, ERRORS_PER_RUN, "", "{}"))
                for e in range(ERRORS_PER_RUN):
                    errors.append((run_id, run_id, PIPELINES[i % len(PIPELINES)], "laposta-submit",
                                   f"AB{run_id:05d}{e}", "knvb_id", message, "", started))
            with transaction.atomic():
                cursor.executemany(
                    f"INSERT INTO {run_table} (id, pipeline, mode, status, started_at, finished_at, duration_ms, "
                    "created, updated, skipped, failed, error_count, message, summary, host, task_id, dry_run) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", runs)
                cursor.executemany(
                    f"INSERT INTO {step_table} (id, run_id, position, name, status, critical, started_at, "
                    "finished_at, duration_ms, read, created, updated, skipped, failed, reason, detail) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", steps)
                cursor.executemany(
                    f"INSERT INTO {error_table} (run_id, step_id, pipeline, step_name, identifier, identifier_kind, "
                    "message, traceback, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", errors)
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {run_table}; ANALYZE {step_table}; ANALYZE {error_table}")


class Reader(threading.Thread):
    """The dashboard: newest runs page, then the errors page of one of them, in a loop."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.timings_ms = []

    def run(self):
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                page = list(Run.objects.order_by("-started_at", "-id")[:50])
                list(RunError.objects.filter(run_id=page[len(page) // 2].pk).order_by("id")[:50])
                list(Run.objects.filter(pipeline="people").order_by("-started_at", "-id")[:50])
                self.timings_ms.append((time.perf_counter() - started) * 1000)
                self.stop.wait(0.005)
        finally:
            connections.close_all()


def main():
    now = timezone.now()
    t = time.perf_counter()
    populate(now)
    populate_s = time.perf_counter() - t
    runs_before, errors_before = Run.objects.count(), RunError.objects.count()

    idle = Reader()
    idle.start()
    time.sleep(1.0)
    idle.stop.set()
    idle.join()

    reader = Reader()
    reader.start()
    t = time.perf_counter()
    result = prune_runs()
    prune_s = time.perf_counter() - t
    reader.stop.set()
    reader.join()

    print(json.dumps({
        "bench": "prune",
        "db": connection.vendor,
        "runs_before": runs_before,
        "errors_before": errors_before,
        "runs_deleted": result.runs,
        "errors_deleted": result.errors,
        "runs_after": Run.objects.count(),
        "errors_after": RunError.objects.count(),
        "populate_s": round(populate_s, 1),
        "prune_s": round(prune_s, 2),
        "max_lock_ms": round(max(reader.timings_ms), 1),
        "reader_p50_ms": round(median(reader.timings_ms), 2),
        "reader_p50_idle_ms": round(median(idle.timings_ms), 2),
        "reader_queries": len(reader.timings_ms),
        "target_max_lock_ms": TARGET_MS,
    }))
    return 0 if max(reader.timings_ms) <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
