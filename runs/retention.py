"""Retention: keep run history bounded (`manage.py pruneruns`, the daily runs.tasks.run_prune).

- Runs older than RUNS_KEEP_DAYS go, with their steps and errors, except a
  running run, the latest run of each pipeline and the parents of those (a
  parent's delete would cascade to them).
- Per-item errors older than RUN_ERRORS_KEEP_DAYS go; the run keeps its
  `error_count`, so history stays truthful. The protected runs keep theirs.
- A pruned run's folder of files (runs.files, e.g. its raw downloads) goes with it.
- django-q2's task results and sent alert notifications older than
  RUNS_KEEP_DAYS go (Q_CLUSTER save_limit bounds successes only).
- Record changes (RecordChange) older than RECORD_CHANGES_KEEP_DAYS go; a
  pruned run's younger changes stay (their run is set to NULL). Resolved
  problems older than that go too; open ones always stay.

Everything is deleted in batches, one short transaction each, with explicit
DELETEs by primary key in child-to-parent order (no ORM collector loading
rows into memory), and a short pause between batches. On SQLite a
transaction holds the single write lock, so short ones keep the tracker's
writer, the scheduler and the dashboard's sessions moving; readers are never
blocked under WAL.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from runs.files import remove_run_files
from runs.models import Notification, RecordChange, RecordProblem, Run, RunError, RunStatus, RunStep

logger = logging.getLogger("runs.retention")


@dataclass
class PruneResult:
    runs: int = 0
    steps: int = 0
    errors: int = 0
    tasks: int = 0
    notifications: int = 0
    changes: int = 0
    problems: int = 0

    def __str__(self) -> str:
        text = (
            f"Removed {self.runs} run(s) with {self.steps} step(s), {self.errors} error(s), "
            f"{self.tasks} task result(s) and {self.notifications} notification(s)."
        )
        if self.changes or self.problems:
            text += f" Removed {self.changes} record change(s) and {self.problems} resolved problem(s)."
        return text


def protected_run_ids() -> set[int]:
    """Runs never pruned: running ones, the latest of each pipeline, and their ancestors."""
    latest = set()
    pipelines = Run.objects.order_by().values_list("pipeline", flat=True).distinct()
    for name in pipelines:
        # run_pipeline_started index: one LIMIT-1 lookup per pipeline.
        pk = Run.objects.filter(pipeline=name).order_by("-started_at", "-id").values_list("pk", flat=True).first()
        if pk is not None:
            latest.add(pk)
    protected = latest | set(Run.objects.running().values_list("pk", flat=True))
    frontier = protected
    while frontier:  # walk up parents (`all` runs) so no cascade reaches a protected run
        parents = set(
            Run.objects.filter(pk__in=frontier, parent__isnull=False).values_list("parent_id", flat=True)
        ) - protected
        protected |= parents
        frontier = parents
    return protected


def _delete_where_in(table: str, column: str, ids: list[int]) -> int:
    placeholders = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({placeholders})", ids)  # noqa: S608
        return cursor.rowcount


def prune_runs(
    *,
    now: datetime | None = None,
    keep_days: int | None = None,
    errors_keep_days: int | None = None,
    batch_size: int = 500,
    pause_s: float = 0.01,
    changes_keep_days: int | None = None,
) -> PruneResult:
    """Delete history past retention in short batches; returns what went."""
    now = now or timezone.now()
    keep_days = settings.RUNS_KEEP_DAYS if keep_days is None else keep_days
    errors_keep_days = settings.RUN_ERRORS_KEEP_DAYS if errors_keep_days is None else errors_keep_days
    runs_cutoff = now - timedelta(days=keep_days)
    errors_cutoff = now - timedelta(days=errors_keep_days)
    protected = protected_run_ids()
    result = PruneResult()
    error_table = RunError._meta.db_table
    step_table = RunStep._meta.db_table
    run_table = Run._meta.db_table

    # 1. Old per-item errors, oldest first along the runerror_created index
    # (no sort, no scan of young rows). Errors of protected runs stay.
    while True:
        ids = list(
            RunError.objects.filter(created_at__lt=errors_cutoff)
            .exclude(run_id__in=protected)
            .order_by("created_at")
            .values_list("pk", flat=True)[: batch_size * 4]
        )
        if not ids:
            break
        with transaction.atomic():
            result.errors += _delete_where_in(error_table, "id", ids)
        if pause_s:
            time.sleep(pause_s)

    # 2. Old runs (run_started index) with their steps and errors, children
    # before parents so no foreign key ever points at a missing row.
    while True:
        ids = list(
            Run.objects.filter(started_at__lt=runs_cutoff)
            .exclude(status=RunStatus.RUNNING)
            .exclude(pk__in=protected)
            .order_by("started_at")  # along the run_started index
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        with transaction.atomic():
            # Children of this batch (rare: `all` runs) go with their parent,
            # as the ON DELETE CASCADE of the model would do.
            children = list(Run.objects.filter(parent_id__in=ids).exclude(pk__in=ids).values_list("pk", flat=True))
            batch = ids + children
            result.errors += _delete_where_in(error_table, "run_id", batch)
            result.steps += _delete_where_in(step_table, "run_id", batch)
            _detach_other_references(batch)
            # Children first: their parent_id points into this batch.
            if children:
                result.runs += _delete_where_in(run_table, "id", children)
            result.runs += _delete_where_in(run_table, "id", ids)
        # After the commit: a rolled-back batch keeps its runs, so it keeps their files too.
        remove_run_files(batch)
        if pause_s:
            time.sleep(pause_s)

    # 3. django-q2's task results and old notifications.
    result.tasks = _prune_task_results(runs_cutoff, batch_size=batch_size)
    while True:
        ids = list(
            Notification.objects.filter(created_at__lt=runs_cutoff)
            .exclude(status=Notification.Status.PENDING)
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        result.notifications += Notification.objects.filter(pk__in=ids).delete()[0]
    _prune_record_history(result, now=now, keep_days=changes_keep_days, batch_size=batch_size, pause_s=pause_s)
    logger.info("%s", result)
    return result


def _prune_record_history(result: PruneResult, *, now: datetime, keep_days: int | None, batch_size: int,
                          pause_s: float) -> None:
    """Record changes and resolved problems past RECORD_CHANGES_KEEP_DAYS, oldest
    first along recordchange_created / recordproblem_resolved, in short batches."""
    keep_days = settings.RECORD_CHANGES_KEEP_DAYS if keep_days is None else keep_days
    cutoff = now - timedelta(days=keep_days)
    table = RecordChange._meta.db_table
    while True:
        ids = list(RecordChange.objects.filter(created_at__lt=cutoff).order_by("created_at")
                   .values_list("pk", flat=True)[: batch_size * 4])
        if not ids:
            break
        with transaction.atomic():
            result.changes += _delete_where_in(table, "id", ids)
        if pause_s:
            time.sleep(pause_s)
    while True:
        ids = list(RecordProblem.objects.filter(resolved_at__lt=cutoff).order_by("-resolved_at")
                   .values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            result.problems += _delete_where_in(RecordProblem._meta.db_table, "id", ids)


def _detach_other_references(ids: list[int]) -> None:
    """Apply on_delete for every other model pointing at Run (notifications,
    alert state, whatever is added later), as the ORM's delete() would."""
    relations = [f for f in Run._meta.get_fields(include_hidden=True) if isinstance(f, models.ForeignObjectRel)]
    for rel in relations:  # include_hidden: related_name="+" ones too
        model = rel.related_model
        if model in (Run, RunStep, RunError) or isinstance(model, str):  # a str only before apps are ready
            continue  # deleted explicitly
        rows = model._base_manager.filter(**{f"{rel.field.name}__in": ids})
        if rel.on_delete is models.SET_NULL:
            rows.update(**{rel.field.name: None})
        else:
            rows.delete()


def _prune_task_results(cutoff: datetime, *, batch_size: int) -> int:
    from django_q.models import Task

    removed = 0
    while True:
        ids = list(Task.objects.filter(stopped__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return removed
        removed += Task.objects.filter(pk__in=ids).delete()[0]
