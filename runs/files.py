"""Each run's own folder for files kept with it (e.g. raw downloads, for audit and replay).

`RUNS_FILES_DIR/<run id>/`; retention (runs.retention) removes the folder
when it prunes the run, so the files never outlive their history.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings


def run_files_dir(run_id: int | None) -> Path:
    """The folder of run `run_id` (not created); untracked runs share `untracked/`."""
    return Path(settings.RUNS_FILES_DIR) / (str(int(run_id)) if run_id is not None else "untracked")


def remove_run_files(run_ids: Iterable[int]) -> int:
    """Remove the folders of these runs; returns how many existed."""
    removed = 0
    for run_id in run_ids:
        path = run_files_dir(run_id)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
