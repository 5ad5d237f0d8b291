"""Benchmark: what run tracking costs.

Prints one JSON line:
  items, errors            the loop's size (100,000 items, 10,000 of which raise)
  untracked_s              the loop bare, exceptions caught and dropped
  tracked_s                the same loop through run.step()/step.item()/step.updated(),
                           failures recorded as RunErrors with tracebacks and their problems
                           opened or updated, incl. end_run's drain
  overhead_ratio           tracked_s / untracked_s (medians)              (overhead_target: <= 1.3)
  overhead_paired          the median of tracked / untracked per repeat, each tracked run
                           against the bare loop measured just before it: on a machine whose
                           speed drifts (a shared VM), the steadier of the two figures
  overhead_s               the median of tracked - untracked per repeat: what tracking adds in
                           seconds. On a shared VM it stays about the same while the bare
                           loop's speed moves, so the ratios are higher when the VM runs fast
  errors_write_s           record_errors(10,000 dicts) until end_run returns, all committed:
                           the RunErrors and the 10,000 problems they open or update
  raw_sqlite_s             sqlite3 of the same rows, one transaction, WAL file: executemany
                           INSERT of the errors and executemany upsert of the problems
  errors_vs_raw            errors_write_s / raw_sqlite_s                (errors_vs_raw_target: <= 3)
  load_1min                the machine's load average when the benchmark ended (a busy
                           machine inflates the tracked run more: it has two threads)
Each figure is the median of REPEAT runs, all measured in this process.
"""

import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import median, setup  # noqa: E402

ITEMS = int(os.environ.get("BENCH_ITEMS", 100_000))
EVERY = 10  # one item in ten raises
ERRORS = int(os.environ.get("BENCH_ERRORS", 10_000))
REPEAT = int(os.environ.get("BENCH_REPEAT", 7))
OVERHEAD_TARGET = 1.3  # overhead_ratio at most
ERRORS_VS_RAW_TARGET = 3  # errors_vs_raw at most


class BadMember(ValueError):
    pass


def sync_one(i):
    """What a sync does per member: build the record, serialise it, hash it."""
    record = {
        "knvb_id": f"ABC{i:05d}",
        "first_name": "Jan",
        "infix": "van der",
        "last_name": f"Berg{i}",
        "email": f"member{i}@example.org",
        "gender": "M",
        "birth_date": "2012-05-17",
        "member_type": "Bondslid",
        "age_category": "Onder 13",
        "teams": ["JO13-1", "JO13-2"],
        "phone": "0612345678",
        "city": "Utrecht",
    }
    digest = hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=16).hexdigest()
    if i % EVERY == 0:
        raise BadMember(f"member {record['knvb_id']} has an invalid email address")
    return record, digest


def untracked():
    start = time.perf_counter()
    for i in range(ITEMS):
        try:
            sync_one(i)
        except Exception:  # noqa: S112 - the bare loop drops failures
            continue
    return time.perf_counter() - start


def tracked():
    from runs.runner import run_pipeline

    start = time.perf_counter()
    run = run_pipeline("bench-loop")
    elapsed = time.perf_counter() - start
    assert run.error_count == ITEMS // EVERY, run.error_count
    return elapsed


def error_rows(n):
    tb = "Traceback (most recent call last):\n" + (
        '  File "/srv/syncsite/pipelines/people.py", line 120, in sync_member\n    member.save()\n' * 8
    )
    tb = (tb + "x" * 1000)[:990] + "\nValueError: bad"
    return [
        {"knvb_id": f"ABC{i:05d}", "message": f"Member ABC{i:05d}: e-mailadres 'jan{i}@@example' is not valid "
         "(row {i}, column E-mailadres)"[:100], "traceback": tb}
        for i in range(n)
    ]


def errors_write(rows):
    from runs.tracker import RunTracker

    tracker = RunTracker("bench-errors")
    tracker.start_run()
    sid = tracker.start_step("sync")
    start = time.perf_counter()
    tracker.record_errors("sync", sid, rows)
    tracker.end_step(sid, status="partial", failed=len(rows))
    tracker.end_run()
    elapsed = time.perf_counter() - start
    from runs.models import RunError

    assert RunError.objects.filter(run_id=tracker.run_id).count() == len(rows)
    return elapsed


def raw_sqlite(rows, workdir):
    path = Path(tempfile.mkstemp(dir=workdir, suffix=".sqlite3")[1])
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE runerror (id INTEGER PRIMARY KEY, run_id INTEGER, step_id INTEGER, step_name TEXT, "
        "identifier TEXT, identifier_kind TEXT, message TEXT, traceback TEXT, created_at TEXT, pipeline TEXT)"
    )
    db.execute("CREATE INDEX e0 ON runerror (step_id)")
    db.execute("CREATE INDEX e1 ON runerror (run_id, step_id)")
    db.execute("CREATE INDEX e2 ON runerror (identifier, created_at DESC)")
    db.execute("CREATE INDEX e3 ON runerror (created_at DESC)")
    db.execute("CREATE INDEX e4 ON runerror (pipeline, created_at DESC)")
    db.execute(
        "CREATE TABLE problem (id INTEGER PRIMARY KEY, pipeline TEXT, identifier TEXT, identifier_kind TEXT, "
        "step_name TEXT, message TEXT, first_seen_at TEXT, last_seen_at TEXT, failing_runs INTEGER, "
        "first_run_id INTEGER, last_run_id INTEGER, resolved_at TEXT)"
    )
    db.execute("CREATE UNIQUE INDEX p1 ON problem (pipeline, identifier) WHERE resolved_at IS NULL")
    db.execute("CREATE INDEX p2 ON problem (last_seen_at DESC) WHERE resolved_at IS NULL")
    db.execute("CREATE INDEX p3 ON problem (pipeline, last_seen_at DESC) WHERE resolved_at IS NULL")
    db.execute("CREATE INDEX p4 ON problem (last_run_id)")
    db.execute("CREATE INDEX p5 ON problem (identifier)")
    db.commit()
    upsert = (
        "INSERT INTO problem (pipeline, identifier, identifier_kind, step_name, message, first_seen_at, "
        "last_seen_at, failing_runs, first_run_id, last_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
        "ON CONFLICT (pipeline, identifier) WHERE resolved_at IS NULL DO UPDATE SET "
        "failing_runs = failing_runs + 1, message = excluded.message, step_name = excluded.step_name, "
        "last_seen_at = excluded.last_seen_at, last_run_id = excluded.last_run_id"
    )
    elapsed = 0.0
    for run_id in (1, 2):  # the second time, every problem is there: the benchmark's steady state
        now = f"2026-11-23 12:00:0{run_id}.000000"
        start = time.perf_counter()
        with db:
            db.executemany(
                "INSERT INTO runerror (run_id, step_id, step_name, identifier, identifier_kind, message, "
                "traceback, created_at, pipeline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, 1, "sync", r["knvb_id"], "knvb_id", r["message"], r["traceback"], now, "bench-errors")
                 for r in rows],
            )
            db.executemany(upsert, [("bench-errors", r["knvb_id"], "knvb_id", "sync", r["message"], now, now,
                                     run_id, run_id) for r in rows])
        elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def main():
    workdir = setup("tracker")
    from runs.pipeline import register

    @register("bench-loop")
    def bench_loop(run):
        with run.step("sync", total=ITEMS) as step:
            for i in range(ITEMS):
                with step.item(i):
                    sync_one(i)
                    step.updated()

    rows = error_rows(ERRORS)
    results = {"untracked": [], "tracked": [], "errors_write": [], "raw": [], "paired": [], "added": []}
    errors_write(rows)  # the first run opens the 10,000 problems; the repeats update them
    for _ in range(REPEAT):
        results["untracked"].append(untracked())
        results["tracked"].append(tracked())
        results["paired"].append(results["tracked"][-1] / results["untracked"][-1])
        results["added"].append(results["tracked"][-1] - results["untracked"][-1])
        results["errors_write"].append(errors_write(rows))
        results["raw"].append(raw_sqlite(rows, workdir))
    untracked_s, tracked_s = median(results["untracked"]), median(results["tracked"])
    errors_write_s, raw_s = median(results["errors_write"]), median(results["raw"])
    print(json.dumps({
        "items": ITEMS,
        "errors": ITEMS // EVERY,
        "untracked_s": round(untracked_s, 4),
        "tracked_s": round(tracked_s, 4),
        "overhead_ratio": round(tracked_s / untracked_s, 3),
        "overhead_paired": round(median(results["paired"]), 3),
        "overhead_s": round(median(results["added"]), 4),
        "overhead_target": OVERHEAD_TARGET,
        "errors_write_s": round(errors_write_s, 4),
        "raw_sqlite_s": round(raw_s, 4),
        "errors_vs_raw": round(errors_write_s / raw_s, 3),
        "errors_vs_raw_target": ERRORS_VS_RAW_TARGET,
        "repeat": REPEAT,
        "load_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
