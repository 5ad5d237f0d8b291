"""Print the result of the last `mutmut run` as one JSON line (the last line of `make mutate`).

    {"mutants": N, "killed": K, "killed_ratio": R, "survivors": [...], ...}

Read from mutmut's own result files (mutants/<module>.py.meta) through mutmut's
API, for the modules `[tool.mutmut] only_mutate` in pyproject.toml names. A
mutant counts as killed when a test failed on it or it ran into mutmut's
timeout (mutmut's own badge counts both as caught); every other mutant
(survived, no tests, suspicious, not checked) is listed in `survivors`, so
N = K + len(survivors). Exits 1 when there are no results.

Usage (from the project root): python tools/mutmut_summary.py [--min-ratio 0.85]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

CAUGHT = {"killed", "timeout"}


def summary() -> dict:
    statuses: dict[str, str] = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            statuses[name] = status_by_exit_code[exit_code]
    killed = sum(1 for status in statuses.values() if status in CAUGHT)
    by_status = Counter(statuses.values())
    return {
        "mutants": len(statuses),
        "killed": killed,
        "killed_ratio": round(killed / len(statuses), 4) if statuses else 0.0,
        "survivors": sorted(name for name, status in statuses.items() if status not in CAUGHT),
        "by_status": dict(sorted(by_status.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-ratio", type=float, default=None, help="exit 1 when killed_ratio is below this")
    args = parser.parse_args()
    result = summary()
    print(json.dumps(result))
    if not result["mutants"]:
        print("no mutmut results: run `make mutate`", file=sys.stderr)
        return 1
    if args.min_ratio is not None and result["killed_ratio"] < args.min_ratio:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
