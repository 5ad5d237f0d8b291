"""Dashboard and admin page cost on a big history.

Fills a fresh SQLite database with 200,000 runs (7 pipelines, 6 steps each),
1,000,000 errors (one run alone has 50,000), 1,000,000 record changes and
20,000 record problems (a quarter open) using executemany, then
requests each page 20 times through the Django test client as a logged-in
staff user. Query counts are taken once on a small history (the first 2,000
runs) and once on the full one: they must be equal.

Prints one JSON line: runs, errors, and per page {p50_ms, p95_ms, queries}.
Targets: every p95 <= 150 ms, every query count <= 15.
"""

import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import setup  # noqa: I001

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
setup("dashboard")
from django.core.management import call_command  # noqa: E402

call_command("collectstatic", interactive=False, verbosity=0)  # DEBUG=0 serves from the manifest

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from runs.models import RecordChange, RecordProblem, Run, RunError, RunStep  # noqa: E402
from runs.pipeline import all_pipelines  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", 200_000))
ERRORS = int(os.environ.get("BENCH_ERRORS", 1_000_000))
CHANGES = int(os.environ.get("BENCH_CHANGES", 1_000_000))
PROBLEMS = int(os.environ.get("BENCH_PROBLEMS", 20_000))
BIG_RUN_ERRORS = 50_000
STEPS = 6
SMALL = 2_000
REQUESTS = 20
PIPELINES = [p.name for p in all_pipelines()][:7]
while len(PIPELINES) < 7:
    PIPELINES.append(f"bench-{len(PIPELINES)}")

STATUSES = ["success"] * 80 + ["partial"] * 13 + ["failed"] * 4 + ["skipped"] * 2 + ["abandoned"]
MESSAGES = [
    "Laposta: 208 not an email address",
    "FreeScout: customer not found (404)",
    "Rondo Club: 429 rate limited, gave up after 5 attempts",
    "No email address for this member",
    "Team <unknown> is not in the registry",
    "Birth date 1900-01-01 is not plausible",
    "Nikki: amount '€ 1.234,5x' is not a number",
    "Duplicate relatiecode in the export",
]
TRACEBACK = ("Traceback (most recent call last):\n  File \"pipelines/people.py\", line 120, in sync\n"
             "    client.put(member)\nValueError: the member could not be stored\n") * 3


def _dt(value: datetime) -> str:
    # How Django stores an aware datetime in SQLite: naive UTC text.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _insert(model, rows, columns):
    """executemany with every column: those not given get the field's default."""
    fields = model._meta.concrete_fields
    defaults = {f.column: f.get_db_prep_save(f.get_default(), connection) for f in fields}
    all_columns = [f.column for f in fields if f.column in columns or f.column != "id"]
    order = [columns.index(c) if c in columns else None for c in all_columns]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        connection.ops.quote_name(model._meta.db_table),
        ", ".join(connection.ops.quote_name(c) for c in all_columns),
        ", ".join("?" for _ in all_columns),
    )
    consts = [defaults[c] for c in all_columns]
    raw = connection.connection
    raw.executemany(sql, ([row[i] if i is not None else consts[k] for k, i in enumerate(order)] for row in rows))


def _member(run_id: int, k: int) -> str:
    return f"{chr(65 + (run_id + k) % 26)}{chr(65 + (k // 26) % 26)}{chr(65 + k % 26)}{k % 5000:04d}"


def fill(first_run: int, last_run: int, errors_budget: int, *, big_run: int | None, now: datetime, rng) -> int:
    """Insert runs first_run..last_run (ids), their steps and errors; returns errors written."""
    connection.ensure_connection()
    raw = connection.connection
    runs = []
    for run_id in range(first_run, last_run + 1):
        started = now - timedelta(minutes=2 * (RUNS - run_id))  # 2 minutes apart, newest last
        status = "partial" if run_id == big_run else rng.choice(STATUSES)
        runs.append((run_id, PIPELINES[run_id % len(PIPELINES)], status, started, rng.randint(20_000, 400_000)))
    # The error plan: the big run gets BIG_RUN_ERRORS, the other partial/failed runs share the rest.
    plan: dict[int, int] = {}
    budget = errors_budget
    if big_run is not None:
        plan[big_run] = BIG_RUN_ERRORS
        budget -= BIG_RUN_ERRORS
    failing = [r[0] for r in runs if r[2] in ("partial", "failed") and r[0] != big_run]
    per_run, extra = divmod(budget, max(1, len(failing)))
    for i, run_id in enumerate(failing):
        plan[run_id] = per_run + (1 if i < extra else 0)

    def run_rows():
        for run_id, pipeline, status, started, dur in runs:
            yield (run_id, pipeline, "scheduled", status, _dt(started), _dt(started + timedelta(milliseconds=dur)),
                   dur, rng.randint(0, 30), rng.randint(0, 300), rng.randint(0, 50), 0, plan.get(run_id, 0), "{}")

    def step_rows():
        for run_id, pipeline, _status, started, dur in runs:
            step_dur = dur // STEPS
            for pos in range(1, STEPS + 1):
                begin = started + timedelta(milliseconds=step_dur * (pos - 1))
                yield (run_id * STEPS + pos, run_id, pos, f"{pipeline}-step-{pos}", "success", True, _dt(begin),
                       _dt(begin + timedelta(milliseconds=step_dur)), step_dur, 10, 1, 2, 3, 0, "{}")

    def error_rows():
        for run_id, pipeline, _status, started, _dur in runs:
            for k in range(plan.get(run_id, 0)):
                member = _member(run_id, k)
                yield (run_id, run_id * STEPS + 4, pipeline, f"{pipeline}-step-4", member, "knvb_id",
                       MESSAGES[(run_id + k) % len(MESSAGES)], TRACEBACK if k % 10 == 0 else "",
                       _dt(started + timedelta(milliseconds=k)))

    raw.execute("BEGIN")
    _insert(Run, run_rows(), ["id", "pipeline", "mode", "status", "started_at", "finished_at", "duration_ms",
                              "created", "updated", "skipped", "failed", "error_count", "summary"])
    _insert(RunStep, step_rows(), ["id", "run_id", "position", "name", "status", "critical", "started_at",
                                   "finished_at", "duration_ms", "read", "created", "updated", "skipped",
                                   "failed", "detail"])
    _insert(RunError, error_rows(), ["run_id", "step_id", "pipeline", "step_name", "identifier", "identifier_kind",
                                     "message", "traceback", "created_at"])
    # Record changes: CHANGES spread over every run (RUNS), the same member identifiers as the errors.
    per_run_changes, extra_changes = divmod(CHANGES, RUNS)

    def change_rows():
        for run_id, pipeline, _status, started, _dur in runs:
            for k in range(per_run_changes + (1 if run_id <= extra_changes else 0)):
                action = "updated" if k % 4 else "created"
                changes = '{"email": ["old@example.org", "new@example.org"]}' if action == "updated" else "{}"
                yield (run_id, pipeline, f"{pipeline}-step-4", _member(run_id, k), "knvb_id", "member", "",
                       action, changes, _dt(started + timedelta(milliseconds=k)))

    _insert(RecordChange, change_rows(), ["run_id", "pipeline", "step_name", "identifier", "identifier_kind",
                                          "record_type", "label", "action", "changes", "created_at"])
    raw.execute("COMMIT")
    return sum(plan.values())


def fill_problems(now: datetime) -> None:
    """PROBLEMS problems on distinct identifiers, every fourth open."""
    def rows():
        for i in range(PROBLEMS):
            seen = now - timedelta(minutes=i)
            resolved = None if i % 4 == 0 else _dt(seen + timedelta(minutes=1))
            yield (PIPELINES[i % len(PIPELINES)], f"P{i:07d}", "knvb_id", "sync", MESSAGES[i % len(MESSAGES)],
                   _dt(seen - timedelta(days=3)), _dt(seen), 3, resolved, "" if resolved is None else "fixed")

    raw = connection.connection
    raw.execute("BEGIN")
    _insert(RecordProblem, rows(), ["pipeline", "identifier", "identifier_kind", "step_name", "message",
                                    "first_seen_at", "last_seen_at", "failing_runs", "resolved_at", "resolution"])
    raw.execute("COMMIT")


def pages(big_run: int, member: str) -> dict[str, str]:
    since = (datetime.now(UTC) - timedelta(days=60)).date().isoformat()
    return {
        "overview": "/",
        "runs_list": "/runs/",
        "runs_filtered": f"/runs/?pipeline={PIPELINES[0]}&status=partial&since={since}",
        "run_detail": f"/runs/{big_run}/",
        "errors_search": f"/errors/?identifier={member}&match=exact",
        "admin_runs": "/admin/runs/run/",
        "record": f"/records/{member}/",
        "problems": "/problems/",
        "problems_pipeline": f"/problems/?pipeline={PIPELINES[0]}",
    }


def count_queries(client, urls) -> dict[str, int]:
    result = {}
    for name, url in urls.items():
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        result[name] = len(ctx.captured_queries)
    return result


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main():
    rng = random.Random(5)
    now = datetime.now(UTC) - timedelta(minutes=5)
    user = User.objects.create_superuser("bench", password="bench-pass-not-secret")
    client = Client()
    client.force_login(user)
    big_run = RUNS - 3  # a recent run: the first page a volunteer would open
    member = "ABA0001"

    errors = fill(RUNS - SMALL + 1, RUNS, int(ERRORS * SMALL / RUNS) + BIG_RUN_ERRORS, big_run=big_run, now=now,
                  rng=rng)
    RecordProblem.objects.create(pipeline=PIPELINES[0], identifier=member, message="small history")
    small_queries = count_queries(client, pages(big_run, member))
    t0 = time.perf_counter()
    errors += fill(1, RUNS - SMALL, ERRORS - errors, big_run=None, now=now, rng=rng)
    fill_problems(now)
    connection.connection.execute("ANALYZE")
    fill_s = time.perf_counter() - t0
    member = RunError.objects.order_by("-created_at").values_list("identifier", flat=True).first()
    urls = pages(big_run, member)
    full_queries = count_queries(client, urls)

    result = {"runs": Run.objects.count(), "errors": RunError.objects.count(),
              "record_changes": RecordChange.objects.count(), "record_problems": RecordProblem.objects.count(),
              "fill_s": round(fill_s, 1)}
    ok = True
    for name, url in urls.items():
        client.get(url)  # warm caches and templates
        times = []
        for _ in range(REQUESTS):
            t = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        p95 = percentile(times, 0.95)
        result[name] = {"p50_ms": round(percentile(times, 0.5), 1), "p95_ms": round(p95, 1),
                        "queries": full_queries[name]}
        ok &= p95 <= 150 and full_queries[name] <= 15 and full_queries[name] == small_queries[name]
    result["queries_same_as_small_history"] = small_queries == full_queries
    result["ok"] = bool(ok)
    result["db"] = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
