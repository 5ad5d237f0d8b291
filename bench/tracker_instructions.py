"""Benchmark: what run tracking costs, in instructions (deterministic, unlike seconds on a shared VM).

bench/tracker.py measures seconds, which on a shared two-core VM drift by a
third from one minute to the next. This one counts the instructions each
thread executes, under valgrind's callgrind (PYTHONHASHSEED=0), for the same
loop: 20,000 items of which 2,000 raise (BENCH_ITEMS). Three processes run
side by side: Django set up, one tracked run and one bare loop as warm-up
(`base`), then LOOPS more bare loops (`bare`) or tracked runs (`tracked`);
the differences are the loops' own instructions.

Prints one JSON line:
  bare_instructions         one bare loop
  pipeline_overhead         the tracked run's extra instructions on the pipeline's thread,
                            as a fraction of the bare loop (items, failures, start and end)
  writer_share              the writer thread's instructions, as a fraction of the bare loop
                            (the SQL, its Python side, SQLite; it runs beside the pipeline)
  instructions_ratio        1 + both: the tracked run's instructions over the bare loop's

Seconds and instructions differ: the writer's SQLite work runs off the
interpreter lock on the other core, and Python-level code (most of the
pipeline-side overhead) runs at fewer instructions per cycle than the loop's
json/blake2b work. Use it to compare two versions of the tracker; without
valgrind it prints a `skipped` line. Takes about four minutes.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS = int(os.environ.get("BENCH_ITEMS", 20_000))
LOOPS = 2
MODES = ("base", "bare", "tracked")


def child(mode: str) -> None:
    sys.path.insert(0, str(HERE))
    import tracker as bench  # the same loop as bench/tracker.py
    from _setup import setup

    bench.ITEMS = ITEMS
    setup("tracker-instructions")
    from django.conf import settings

    # Under valgrind a run lasts seconds: keep the heartbeats out of the count, as in a real run.
    settings.RUNS_FLUSH_INTERVAL_S = 10_000
    from runs.pipeline import register
    from runs.runner import run_pipeline

    @register("bench-instructions")
    def loop(run):
        with run.step("sync", total=ITEMS) as step:
            for i in range(ITEMS):
                with step.item(i):
                    bench.sync_one(i)
                    step.updated()

    run_pipeline("bench-instructions")  # opens the problems: the repeats update them
    bench.untracked()
    for _ in range(LOOPS):
        if mode == "bare":
            bench.untracked()
        elif mode == "tracked":
            run_pipeline("bench-instructions")


def thread_totals(pattern: str) -> dict[str, int]:
    totals = {}
    for path in glob.glob(pattern):
        match = re.search(r"-(\d+)$", path)
        text = Path(path).read_text()
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if match and found:
            totals[match.group(1)] = int(found.group(1))
    return totals


def main() -> int:
    if shutil.which("valgrind") is None:
        print(json.dumps({"skipped": "valgrind is not installed (apt-get install valgrind)"}))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="syncsite-bench-instructions-"))
    env = {**os.environ, "PYTHONHASHSEED": "0", "BENCH_ITEMS": str(ITEMS)}
    processes = {
        mode: subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--separate-threads=yes",
             f"--callgrind-out-file={workdir}/cg.{mode}.%p", sys.executable, __file__, "--child", mode],
            env=env, cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for mode in MODES
    }
    if any(p.wait() != 0 for p in processes.values()):
        print(json.dumps({"error": "a measured process failed", "workdir": str(workdir)}))
        return 1
    main_thread, writers = {}, {}
    for mode in MODES:
        totals = thread_totals(f"{workdir}/cg.{mode}.*-*")
        main_thread[mode] = totals.pop("01")
        writers[mode] = sum(totals.values())
    bare = (main_thread["bare"] - main_thread["base"]) / LOOPS
    pipeline = (main_thread["tracked"] - main_thread["base"]) / LOOPS - bare
    writer = (writers["tracked"] - writers["base"]) / LOOPS
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({
        "items": ITEMS,
        "errors": ITEMS // 10,
        "bare_instructions": int(bare),
        "pipeline_overhead": round(pipeline / bare, 4),
        "writer_share": round(writer / bare, 4),
        "instructions_ratio": round(1 + (pipeline + writer) / bare, 4),
    }))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        sys.exit(main())
