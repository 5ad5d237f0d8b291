"""Run every benchmark in bench/ (each prints one JSON line)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    failed = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name in {"run.py", "_setup.py"}:
            continue
        print(f"# {script.name}", flush=True)
        failed |= subprocess.call([sys.executable, str(script)], cwd=HERE.parent) != 0
    sys.exit(1 if failed else 0)
