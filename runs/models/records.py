"""Record history: what each run changed per record, and the records that keep failing."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from runs.models.run import Run


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
            # pruneruns: changes older than RECORD_CHANGES_KEEP_DAYS, oldest first.
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
            # The record page and the identifier search (exact / prefix). Not with last_seen_at:
            # an identifier has a handful of problems (sorted in no time), and the run-end
            # UPDATE of every still-failing problem's last_seen_at then has one index fewer
            # to rewrite (10,000 failing records: a fifth of that UPDATE, bench/tracker.py).
            models.Index(fields=["identifier"], name="recordproblem_identifier"),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline}: {self.identifier}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

