"""Operations: API tokens, alert state and notifications, per-pipeline settings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from runs.models.run import Run


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
