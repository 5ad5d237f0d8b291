"""Run history: Run -> RunStep -> RunError, and their states.

These tables are append-only history. Rows are written by the tracker's writer
thread (runs.tracker) and by the runner; the web only reads them, except for
the cancel request, which is a conditional UPDATE on one run.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class Mode(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULED = "scheduled", "Scheduled"
    DASHBOARD = "dashboard", "Dashboard"
    API = "api", "API"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    ABANDONED = "abandoned", "Abandoned"
    SKIPPED = "skipped", "Skipped"


class StepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


#: The key of RunStep.detail under which a step lists the removals it held back.
HELD_REMOVALS_KEY = "held_removals"


def span_ms(start: datetime, end: datetime) -> int:
    """Whole milliseconds from `start` to `end`, never negative (a clock step back reads as 0)."""
    return max(0, int((end - start).total_seconds() * 1000))


class RunQuerySet(models.QuerySet):
    def running(self) -> RunQuerySet:
        return self.filter(status=RunStatus.RUNNING)

    def finished(self) -> RunQuerySet:
        return self.exclude(status=RunStatus.RUNNING)

    def top_level(self) -> RunQuerySet:
        return self.filter(parent__isnull=True)


class Run(models.Model):
    pipeline = models.CharField(max_length=64)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.MANUAL)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    # Totals are the sum of the sync steps' counts; download steps report `read`.
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Kept when old per-item errors are pruned, so history stays truthful.
    error_count = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, help_text="One line on the outcome: why it failed, was skipped, ...")
    summary = models.JSONField(default=dict, blank=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task_id = models.CharField(max_length=64, blank=True)
    dry_run = models.BooleanField(default=False)
    # The run's scope: the identifiers of `runsync --only` / "Sync again"
    # (empty: every record). A scoped run never retires anything.
    only = models.JSONField(default=list, blank=True)
    # Held removals (docs/volunteers.md, "Held removals"): a pipeline may hold back removals that
    # look like a mistake. `allow_removals` says this run let them through
    # (`runsync --allow-removals`, or queued by an approval); the approval is
    # recorded on the run that held them, once (see approve_removals).
    allow_removals = models.BooleanField(default=False)
    removals_approved_at = models.DateTimeField(null=True, blank=True)
    removals_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [
            ("trigger_run", "Can start a pipeline run"),
            ("cancel_run", "Can cancel a running pipeline run"),
        ]
        constraints = [
            # The pipeline lock: at most one running run per pipeline, held by
            # the database so it works across processes and hosts. The reaper
            # frees it by moving a dead run to `abandoned`.
            models.UniqueConstraint(
                fields=["pipeline"],
                condition=Q(status="running"),
                name="one_running_run_per_pipeline",
            ),
        ]
        indexes = [
            # Overview cards and the pipeline page: the latest runs of one pipeline.
            models.Index(fields=["pipeline", "-started_at"], name="run_pipeline_started"),
            # Runs list filtered by status; the reaper's scan of running runs.
            models.Index(fields=["status", "-started_at"], name="run_status_started"),
            # Unfiltered runs list / admin changelist, newest first; pruning by age.
            models.Index(fields=["-started_at"], name="run_started"),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline} #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("runs:detail", args=[self.pk])

    @property
    def is_running(self) -> bool:
        return self.status == RunStatus.RUNNING

    def elapsed_ms(self, now: datetime | None = None) -> int:
        """How long the run went, or has been going so far."""
        if self.duration_ms is not None:
            return self.duration_ms
        return span_ms(self.started_at, now or timezone.now())

    @property
    def not_configured(self) -> bool:
        """Skipped because every step was skipped (e.g. a missing API key), not
        because another run held the pipeline lock (that one names the holder)."""
        return self.status == RunStatus.SKIPPED and "held_by" not in (self.summary or {})

    def request_cancel(self, *, user=None) -> bool:
        """Ask the running pipeline to stop at its next item or step boundary.

        A conditional UPDATE: only a run that is still running and not yet
        asked is changed. Returns whether this call made the request.
        """
        now = timezone.now()
        changed = Run.objects.filter(
            pk=self.pk, status=RunStatus.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now, cancel_requested_by=user)
        if changed:
            self.cancel_requested_at = now
            self.cancel_requested_by = user
        return bool(changed)

    def claim_removals_approval(self, *, user) -> bool:
        """Record that `user` approved the removals this finished run held.

        A conditional UPDATE, like request_cancel: only the first approval of
        a finished run counts, so a double click or two people at once queue
        one run. Returns whether this call recorded the approval.
        """
        now = timezone.now()
        changed = Run.objects.filter(
            pk=self.pk, removals_approved_at__isnull=True
        ).exclude(status=RunStatus.RUNNING).update(removals_approved_at=now, removals_approved_by=user)
        if changed:
            self.removals_approved_at = now
            self.removals_approved_by = user
        return bool(changed)


class RunStep(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.RUNNING)
    critical = models.BooleanField(default=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    read = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True, help_text="Expected items, for progress.")
    reason = models.TextField(blank=True, help_text="Why the step was skipped or failed.")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            # Also the index for "the steps of this run in order" (run detail).
            models.UniqueConstraint(fields=["run", "position"], name="runstep_run_position"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.name}"

    @property
    def done(self) -> int:
        return self.created + self.updated + self.skipped + self.failed

    @property
    def held_removals(self) -> dict:
        """What this step held back (kind -> count), see Step.hold_removals; {} when nothing."""
        return (self.detail or {}).get(HELD_REMOVALS_KEY) or {}


class RunError(models.Model):
    # No single-column index on run: (run, step) below serves "errors of a run".
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="errors", db_index=False)
    # Indexed (the FK default): cascading deletes of steps look errors up by step.
    step = models.ForeignKey(RunStep, null=True, blank=True, on_delete=models.CASCADE, related_name="errors")
    # Copied from the run (history is append-only, a run never changes
    # pipeline) so the error explorer's pipeline filter is an index range
    # instead of a probe into Run per error.
    pipeline = models.CharField(max_length=64, blank=True, db_default="")
    step_name = models.CharField(max_length=100, blank=True)
    IDENTIFIER_MAX = 255  # the tracker cuts identifiers to it; problems store them so (runs.history)
    identifier = models.CharField(max_length=IDENTIFIER_MAX, blank=True)
    identifier_kind = models.CharField(max_length=32, blank=True)
    message = models.TextField()
    traceback = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    MESSAGE_MAX = 2000
    TRACEBACK_MAX = 8000

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Run detail: the run's errors, optionally filtered by step.
            models.Index(fields=["run", "step"], name="runerror_run_step"),
            # Error explorer: one member's errors over time (exact/prefix search).
            models.Index(fields=["identifier", "-created_at"], name="runerror_identifier_created"),
            # Error explorer unfiltered/date range, newest first; pruning by age.
            models.Index(fields=["-created_at"], name="runerror_created"),
            # Error explorer filtered by pipeline, newest first.
            models.Index(fields=["pipeline", "-created_at"], name="runerror_pipeline_created"),
        ]

    def __str__(self) -> str:
        return f"{self.identifier or '-'}: {self.message[:60]}"

