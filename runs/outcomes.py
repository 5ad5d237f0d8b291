"""Outcomes that could not be recorded when they happened (the spool).

When the database refuses writes during a run (disk full, read-only, locked
past the timeout, the runs table missing), the runner still knows how the run
ended. It writes that outcome to a small JSON file in RUNS_SPOOL_DIR, and the
next process that can write to the database (the start of any run, the
reaper, the alert checks) records it:

* a run whose row exists and is still `running` (or was `abandoned` by the
  reaper meanwhile) is finished with its real status, counts and cause;
* a run that never got a row is created afterwards, with its steps;
* either way an alert says that run tracking failed, and why.

Files are written atomically (temporary name, then rename) and removed only
after the transaction that records them commits, so nothing is half-written
and nothing is lost when the database is still down.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs.alerts import queue_tracking_notification
from runs.models import Run, RunError, RunStatus, RunStep
from runs.redact import redact, truncate

logger = logging.getLogger("runs.outcomes")

_COUNTS = ("read", "created", "updated", "skipped", "failed")


def spool_dir() -> Path:
    return Path(settings.RUNS_SPOOL_DIR)


def spool_outcome(run: Run, *, steps: list, cause: str) -> Path:
    """Write one run's outcome to the spool; returns the file.

    Messages are redacted and trimmed here, as the tracker does, so no secret
    reaches the disk or, later, the database."""

    def clean(text: str) -> str:
        return truncate(redact(text or ""), RunError.MESSAGE_MAX)

    entry = {
        "run_id": run.pk,
        "pipeline": run.pipeline,
        "parent_id": run.parent_id,
        "mode": run.mode,
        "dry_run": run.dry_run,
        "status": run.status,
        "message": clean(run.message),
        "cause": clean(cause),
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_ms": run.duration_ms,
        "created": run.created,
        "updated": run.updated,
        "skipped": run.skipped,
        "failed": run.failed,
        "error_count": run.error_count,
        "steps": [
            {"name": s.name, "status": s.status, "reason": clean(s.reason), "critical": s.critical,
             **{key: getattr(s, key) for key in _COUNTS}}
            for s in steps
        ],
    }
    directory = spool_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(entry, fh)
    target = directory / f"{stamp}-{os.getpid()}-{run.pipeline[:40]}.json"
    os.replace(tmp, target)
    return target


def pending_outcomes() -> list[Path]:
    """Spooled outcomes not yet recorded, oldest first (a directory listing, no database)."""
    try:
        return sorted(p for p in spool_dir().glob("*.json") if p.is_file())
    except OSError:
        return []


def apply_spooled_outcomes() -> list[Run]:
    """Record every spooled outcome the database now accepts; returns the runs written.

    Stops at the first database error (it is still down: try again later).
    A file that cannot be read is moved aside as `*.bad` and logged.
    """
    written = []
    for path in pending_outcomes():
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.exception("spooled outcome %s cannot be read; moved aside as .bad", path.name)
            path.rename(path.with_suffix(".bad"))
            continue
        with transaction.atomic():
            run = _record(entry)
            queue_tracking_notification(run, entry["cause"])
        path.unlink(missing_ok=True)
        written.append(run)
        logger.warning("recorded the spooled outcome of %s run #%s (%s): %s", run.pipeline, run.pk, run.status,
                       entry["cause"])
    return written


def _record(entry: dict[str, Any]) -> Run:
    fields = {
        "status": entry["status"],
        "finished_at": datetime.fromisoformat(entry["finished_at"]) if entry["finished_at"] else None,
        "duration_ms": entry["duration_ms"],
        "message": entry["message"],
        **{key: entry[key] for key in ("created", "updated", "skipped", "failed", "error_count")},
    }
    run = None
    if entry["run_id"] is not None:
        run = Run.objects.filter(pk=entry["run_id"]).first()
        if run is not None and run.status not in (RunStatus.RUNNING, RunStatus.ABANDONED):
            return run  # finished meanwhile (the writer caught up): keep what it wrote
    if run is None:
        run = Run.objects.create(
            pipeline=entry["pipeline"], mode=entry["mode"], dry_run=entry["dry_run"],
            parent_id=entry["parent_id"] if Run.objects.filter(pk=entry["parent_id"] or 0).exists() else None,
            started_at=datetime.fromisoformat(entry["started_at"]), **fields,
        )
    else:
        for key, value in fields.items():
            setattr(run, key, value)
        run.save(update_fields=[*fields])
    existing = {s.position: s for s in RunStep.objects.filter(run=run)}
    new_steps = []
    for position, step in enumerate(entry["steps"], start=1):
        values = {"status": step["status"], "reason": step["reason"], **{k: step[k] for k in _COUNTS}}
        row = existing.get(position)
        if row is None:
            new_steps.append(RunStep(run=run, position=position, name=step["name"][:100],
                                     critical=step["critical"], started_at=run.started_at,
                                     finished_at=run.finished_at, **values))
        elif row.status == "running" or row.name == step["name"]:
            RunStep.objects.filter(pk=row.pk).update(finished_at=row.finished_at or run.finished_at, **values)
    RunStep.objects.bulk_create(new_steps)
    return run
