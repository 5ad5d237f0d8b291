"""The `people` pipeline on 50,000 members, against a raw sqlite3 floor.

    python bench/sync.py [--members N]

`makedemo --members 50000` writes the exports; `people` runs twice on a fresh
SQLite database with no destination configured (the first run creates every
member and parent, the second finds them unchanged). `raw_insert_s` is
Python's sqlite3 `executemany` of the same member rows into an equivalent
table in one transaction: the floor the first run is compared with.
Prints one JSON line. Targets: first_vs_raw <= 10, unchanged run >= 3x faster
than the first, peak_rss_mb <= 300. A third run, after 1,000 members' city
was changed with one `update()`, times the reverse-sync step that turns them
into corrections.

The web-source variant (also alone: `--web-only`) takes the same members as
the JSON the Sportlink stand-in serves for SearchMembers and times its
conversion into records (json.loads, pipelines.web.convert, read_members)
against the CSV reader on the export (open_table, read_members); the browser
is not measured. Target: web_vs_csv <= 1.2.
"""

import argparse
import json
import os
import resource
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

# Destinations unconfigured: the benchmark measures the registry sync.
for name in ("LAPOSTA_API_KEY", "FREESCOUT_API_KEY", "SPORTLINK_EXPORT_DIR", "NIKKI_EXPORT_DIR"):
    os.environ[name] = ""
# Production settings: DEBUG off (no per-query debug logging). The key only lives for this process.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

from _setup import ROOT, median, setup  # noqa: I001 - after the environment is set
from datetime import UTC

RAW_COLUMNS = ("knvb_id", "first_name", "infix", "last_name", "initials", "email", "gender", "birth_date",
               "member_type", "age_category", "local_teams", "phone", "mobile", "street", "house_number",
               "postcode", "city", "member_since", "left_on", "is_former", "source_hash", "last_synced_at",
               "created_at",
               # The addition and Sportlink's copy of the contact fields (pipelines.corrections).
               "house_number_addition", "sportlink_email", "sportlink_mobile", "sportlink_phone", "sportlink_street",
               "sportlink_house_number", "sportlink_house_number_addition", "sportlink_postcode", "sportlink_city")


def raw_insert(workdir: Path, rows: list[tuple]) -> float:
    """sqlite3 executemany of the rows into an equivalent table, one transaction."""
    path = workdir / f"raw-{time.monotonic_ns()}.sqlite3"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    columns = ", ".join(f"{c} {'varchar' if c != 'is_former' else 'bool'} NOT NULL DEFAULT ''"
                        for c in RAW_COLUMNS[1:])
    con.execute(f"CREATE TABLE member (id integer PRIMARY KEY AUTOINCREMENT, knvb_id varchar UNIQUE, {columns})")
    con.execute("CREATE INDEX member_email ON member (email)")
    con.execute("CREATE INDEX member_former ON member (is_former)")
    con.execute("CREATE INDEX member_name ON member (last_name, first_name)")
    placeholders = ", ".join("?" for _ in RAW_COLUMNS)
    started = time.perf_counter()
    con.execute("BEGIN")
    con.executemany(f"INSERT INTO member ({', '.join(RAW_COLUMNS)}) VALUES ({placeholders})", rows)
    con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def raw_floor(export: Path, workdir: Path, repeat: int = 3) -> list[float]:
    """Raw inserts of the export's member rows, timed in this (Django-free) process."""
    sys.path.insert(0, str(ROOT))
    from datetime import datetime

    from pipelines.readers import open_table, read_members

    path = next(p for p in export.glob("Leden *.csv"))
    result = read_members(open_table(path.name, path.read_bytes()))
    now = datetime.now(UTC).isoformat()
    rows = []
    for m in result.records:
        values = (m.knvb_id, m.first_name, m.infix, m.last_name, m.initials, m.email, m.gender, m.birth_date,
                  m.member_type, m.age_category, ", ".join(m.teams), m.phone, m.mobile, m.street, m.house_number,
                  m.postcode, m.city, m.member_since, m.left_on, False, m.source_hash, now, now,
                  m.house_number_addition, m.email, m.mobile, m.phone, m.street, m.house_number,
                  m.house_number_addition, m.postcode, m.city)
        rows.append(tuple("" if v is None else v if isinstance(v, (str, bool)) else str(v) for v in values))
    return [raw_insert(workdir, rows) for _ in range(repeat)]


def floor_in_subprocess(export: Path, workdir: Path) -> list[float]:
    out = subprocess.run([sys.executable, __file__, "--raw-floor", str(export), "--workdir", str(workdir)],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out)


def web_conversion(export: Path, repeat: int = 5) -> dict:
    """Median seconds of JSON -> records (web source) and CSV -> records (export) for the same members."""
    sys.path.insert(0, str(ROOT))
    from pipelines.readers import open_table, read_members
    from pipelines.web.convert import members_table, parse_json
    from tests.web_standin import SportlinkStandIn, members_json_from_csv

    path = next(p for p in export.glob("Leden *.csv"))
    csv_bytes = path.read_bytes()
    # Exactly what the stand-in's SearchMembers answers for these members.
    members = members_json_from_csv(csv_bytes)
    json_bytes = json.dumps({"Members": [SportlinkStandIn._public(m, True) for m in members]}).encode()
    csv_times, web_times = [], []
    for _ in range(repeat):  # interleaved: the machine's noise hits both alike
        started = time.perf_counter()
        from_csv = read_members(open_table(path.name, csv_bytes))
        csv_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        from_web = read_members(members_table(parse_json(json_bytes)))
        web_times.append(time.perf_counter() - started)
    assert len(from_web.records) == len(from_csv.records), "the two sources must give the same members"
    csv_s, web_s = median(csv_times), median(web_times)
    return {"web_members": len(from_web.records), "csv_reader_s": round(csv_s, 3),
            "web_conversion_s": round(web_s, 3), "web_vs_csv": round(web_s / csv_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--raw-floor", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--web-only", action="store_true", help="only the web source's conversion")
    args = parser.parse_args()
    if args.raw_floor:
        print(json.dumps(raw_floor(args.raw_floor, args.workdir)))
        return

    workdir = setup("sync")
    export = workdir / "export"
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "makedemo", "--members", str(args.members),
                    "--photos", "0", "--out", str(export)], check=True, cwd=ROOT, env=dict(os.environ),
                   stdout=subprocess.DEVNULL)
    if args.web_only:
        print(json.dumps(web_conversion(export)))
        return
    # The machine is shared and noisy: the floor is measured (in a separate
    # process, so its rows do not count in this one's peak RSS) before and
    # after the pipeline runs, and the median taken.
    floor = floor_in_subprocess(export, workdir)

    from django.conf import settings

    settings.SPORTLINK_EXPORT_DIR = str(export)
    settings.NIKKI_EXPORT_DIR = str(export)

    from pipelines.models import Member
    from runs.runner import run_pipeline

    started = time.perf_counter()
    first = run_pipeline("people")
    first_run_s = time.perf_counter() - started
    started = time.perf_counter()
    second = run_pipeline("people")
    unchanged_run_s = time.perf_counter() - started
    members = Member.objects.count()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    floor += floor_in_subprocess(export, workdir)
    raw_insert_s = median(floor)
    # reverse-sync (pipelines.corrections): its cost on the unchanged run, and
    # on a run that finds 1,000 members corrected with a bulk update().
    reverse_unchanged_ms = second.steps.get(name="reverse-sync").duration_ms
    Member.objects.filter(pk__in=list(Member.objects.order_by("pk").values_list("pk", flat=True)[:1000])).update(
        city="Elders")
    started = time.perf_counter()
    third = run_pipeline("people")
    corrected_run_s = time.perf_counter() - started
    reverse_step = third.steps.get(name="reverse-sync")

    print(json.dumps({
        "members": members,
        "first_run_s": round(first_run_s, 3),
        "unchanged_run_s": round(unchanged_run_s, 3),
        "first_per_s": round(members / first_run_s),
        "unchanged_per_s": round(members / unchanged_run_s),
        "raw_insert_s": round(raw_insert_s, 3),
        "first_vs_raw": round(first_run_s / raw_insert_s, 2),
        "unchanged_speedup": round(first_run_s / unchanged_run_s, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "first_status": first.status,
        "first_created": first.created,
        "first_errors": first.error_count,
        "unchanged_skipped": second.skipped,
        "reverse_sync_unchanged_ms": reverse_unchanged_ms,
        "corrected_run_s": round(corrected_run_s, 3),
        "reverse_sync_1000_corrections_ms": reverse_step.duration_ms,
        "corrections_created": reverse_step.created,
        **web_conversion(export),
    }))


if __name__ == "__main__":
    main()
