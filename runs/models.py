"""Run history: Run -> RunStep -> RunError.

These tables are append-only history. Rows are written by the tracker's writer
thread (runs.tracker) and by the runner; the web only reads them, except for
the cancel request, which is a conditional UPDATE on one run.
"""

from __future__ import annotations

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
    # Held removals (docs/safe-sync.md): a pipeline may hold back removals that
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
    identifier = models.CharField(max_length=255, blank=True)
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


# --- record history: what changed per record, and open problems ---------------


class ChangeAction(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    RETIRED = "retired", "Retired"
    RESTORED = "restored", "Restored"


class RecordChange(models.Model):
    """One registry row a run created, updated, retired or restored (append-only).

    Written by the club app's sync helpers in the same transaction as the
    registry rows themselves (runs.history.ChangeLog). `changes` holds, for
    updates, {field: [old, new]} of the fields that differ; values are
    JSON-safe (dates as ISO strings, decimals as strings).

    Kept RECORD_CHANGES_KEEP_DAYS, longer than runs: when a run is pruned its
    changes stay (run set to NULL) and still carry pipeline and step name.
    """

    # Indexed (the FK default): the prune of a run detaches its changes by run_id.
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="record_changes")
    pipeline = models.CharField(max_length=64, blank=True)
    step_name = models.CharField(max_length=100, blank=True)
    identifier = models.CharField(max_length=255)
    identifier_kind = models.CharField(max_length=32, blank=True)
    #: What kind of row changed ("member", "team membership", ...), from the model's verbose name.
    record_type = models.CharField(max_length=64, blank=True)
    #: Which row of the record, where it has several (a team and role, a contribution year).
    label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=16, choices=ChangeAction.choices)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The record page: one identifier's changes, newest first.
            models.Index(fields=["identifier", "-created_at"], name="recordchange_identifier"),
            # prunruns: changes older than RECORD_CHANGES_KEEP_DAYS, oldest first.
            models.Index(fields=["created_at"], name="recordchange_created"),
        ]

    def __str__(self) -> str:
        return f"{self.identifier} {self.action}"


class RecordProblem(models.Model):
    """An identifier that keeps failing in one pipeline, until a run fixes it.

    Opened by the first error on the identifier; every later run of the
    pipeline with an error on it updates last seen, the latest message and
    how many runs in a row failed. Resolved when a later run of the pipeline
    processes the identifier without an error (`fixed`) or the record leaves
    the registry (`left`). Updated once per run by runs.history.
    """

    class Resolution(models.TextChoices):
        FIXED = "fixed", "Fixed by a later run"
        LEFT = "left", "The record left"

    pipeline = models.CharField(max_length=64)
    identifier = models.CharField(max_length=255)
    identifier_kind = models.CharField(max_length=32, blank=True)
    step_name = models.CharField(max_length=100, blank=True)
    message = models.TextField(help_text="The latest error message.")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    failing_runs = models.PositiveIntegerField(default=1, help_text="Runs in a row with an error on it.")
    first_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True)

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            # One open problem per pipeline and identifier; also the index of the
            # run-end update ("the open problems of this pipeline").
            models.UniqueConstraint(fields=["pipeline", "identifier"], condition=Q(resolved_at__isnull=True),
                                    name="recordproblem_open_unique"),
        ]
        indexes = [
            # /problems/ (open, newest first) and the overview's open counts.
            models.Index(fields=["-last_seen_at"], condition=Q(resolved_at__isnull=True),
                         name="recordproblem_open_seen"),
            # /problems/?pipeline=... and the pipeline page: one pipeline's open problems.
            models.Index(fields=["pipeline", "-last_seen_at"], condition=Q(resolved_at__isnull=True),
                         name="recordproblem_open_pipeline"),
            # /problems/?state=resolved, newest first.
            models.Index(fields=["-resolved_at"], condition=Q(resolved_at__isnull=False),
                         name="recordproblem_resolved"),
            # The record page and the identifier search (exact / prefix).
            models.Index(fields=["identifier", "-last_seen_at"], name="recordproblem_identifier"),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline}: {self.identifier}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


# --- operations: API tokens and alerts ------------------------------------------


class ApiToken(models.Model):
    """A per-user bearer token for the JSON API.

    Only a SHA-256 of the token is stored: the raw value is shown once, when
    the token is created in the admin. Tokens are long random strings, so a
    fast hash is enough (nothing to brute-force), and it lets the API find a
    token with one indexed lookup.
    """

    PREFIX = "sst_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'uptime monitor'.")
    # The first characters of the raw token, so a person can tell tokens apart.
    prefix = models.CharField(max_length=16, editable=False)
    # The API's lookup: unique, hence indexed.
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Optional: after this moment the API answers 401 (an expired token is kept, like a revoked one).
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Optional. After this moment the token no longer works."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw: str) -> str:
        import hashlib

        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def generate(cls) -> str:
        import secrets

        return cls.PREFIX + secrets.token_urlsafe(32)

    def set_token(self, raw: str) -> None:
        self.token_hash = self.hash(raw)
        self.prefix = raw[: len(self.PREFIX) + 6]

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired()


class AlertState(models.Model):
    """The last alerting state seen for one subject (healthchecks' flip idea).

    `subject` is `run:<pipeline>` (outcome of its latest run: ok, partial,
    failed) or `overdue` (the set of overdue pipelines, in `detail`). A
    notification is queued only when the state changes, so a pipeline that
    keeps failing is reported once, not once per run.
    """

    subject = models.CharField(max_length=100, unique=True)
    state = models.CharField(max_length=32, blank=True)
    last_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detail = models.JSONField(default=dict, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.subject}: {self.state}"


class AlertEvent(models.TextChoices):
    FAILED = "failed", "Run failed"
    PARTIAL = "partial", "Run partial"
    RECOVERED = "recovered", "Recovered"
    OVERDUE = "overdue", "Overdue"
    LONG_RUNNING = "long_running", "Long-running"
    REMINDER = "reminder", "Still failing (reminder)"
    TRACKING = "tracking", "Run tracking failed"


class Notification(models.Model):
    """One alert to send, and what happened when it was sent (append-only).

    Created by the alert checks (a django-q2 schedule) inside a short
    transaction; delivered afterwards, outside any transaction. A channel
    that fails is retried on later checks until ALERT_MAX_ATTEMPTS.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Gave up"

    event = models.CharField(max_length=16, choices=AlertEvent.choices)
    pipeline = models.CharField(max_length=64, blank=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications")
    subject = models.CharField(max_length=255)
    body = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "alert notification"
        indexes = [
            # Delivery: pending notifications that are due.
            models.Index(fields=["status", "next_attempt_at"], name="notification_due"),
            # Long-running de-dup (one per run) and the admin, newest first; pruning by age.
            models.Index(fields=["event", "run"], name="notification_event_run"),
            models.Index(fields=["-created_at"], name="notification_created"),
        ]

    def __str__(self) -> str:
        return self.subject


class PipelineSettings(models.Model):
    """Per-pipeline operational settings an admin can change, and when its
    schedule started counting (for overdue).

    One row per pipeline that has either; a missing row means the defaults.
    """

    pipeline = models.CharField(max_length=64, unique=True)
    alert_after_failures = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Alert only after this many failed or partial runs in a row. "
                  "Empty: ALERT_AFTER_FAILURES (1 unless set).",
    )
    # Set when the pipeline's Schedule row is created, or enabled again, or its
    # cron or type is changed (runs.scheduling): slots before it are not
    # counted for overdue.
    schedule_since = models.DateTimeField(
        null=True, blank=True, help_text="Slots before this moment do not count for overdue."
    )

    class Meta:
        ordering = ["pipeline"]
        verbose_name = "pipeline setting"

    def __str__(self) -> str:
        return self.pipeline
