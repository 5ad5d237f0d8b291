"""Schedules: cron slots, overdue detection and the django-q2 Schedule rows.

Times. Every cron expression is read in the project time zone
(settings.TIME_ZONE, Europe/Amsterdam), exactly as django-q2 does when it
computes a Schedule's next run (`croniter(cron, localtime())`), so what the
dashboard shows is what the cluster will do. croniter on aware local
datetimes is DST-correct: `0 8 * * *` stays 08:00 local on both sides of a
change; a slot inside the spring-forward gap (02:00-03:00 on the last Sunday
of March) fires at 03:00; a slot inside the repeated hour of the last Sunday
of October fires at both occurrences. Results are aware datetimes in UTC
(show them with timezone.localtime or a template, which convert).

Schedule rows. Every registered pipeline with a default cron gets one
django-q2 Schedule named `pipeline:<name>` that calls
`runs.tasks.run_pipeline_task`; each entry of MAINTENANCE_TASKS gets one named
`maintenance:<name>`. `sync_schedules()` (the `syncschedules` command, also
run after `migrate`) creates missing rows and keeps ours up to date, but an
admin's edit wins: a row whose cron differs from the registered default, whose
type is no longer cron, or that is disabled (repeats = 0, django-q2's "never
again") is *edited* and left exactly as it is until `--reset`. django-q2 has
no "managed" flag, so the registered default is the marker: a changed default
in the code is therefore reported as "kept" on installations that run the old
one, and `--reset` applies it.

Counting from the schedule's start. Overdue only counts slots after the
pipeline's schedule was created, enabled again or given a new cron or type
(`PipelineSettings.schedule_since`, kept by a signal on every Schedule save):
right after an install nothing is overdue, and a pipeline that never ran is
"waiting for its first run" until its first counted slot plus the grace has
passed. The same signal recomputes `next_run` when the cron or type of a row
changes (the admin or code calling save()), since django-q2 only computes it
when a cron row is created. A queryset `.update()` bypasses signals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runs.models import PipelineSettings
from runs.pipeline import all_pipelines
from runs.selectors import recent_runs_per_pipeline

logger = logging.getLogger("runs.scheduling")

PIPELINE_TASK = "runs.tasks.run_pipeline_task"
PIPELINE_PREFIX = "pipeline:"
MAINTENANCE_PREFIX = "maintenance:"


class MaintenanceTask(NamedTuple):
    """A housekeeping job scheduled like a pipeline (name, dotted func path, cron)."""

    name: str
    func: str
    cron: str


# Synced into `maintenance:<name>` Schedules by syncschedules. Functions are
# thin django-q2 tasks taking no arguments, all in runs.tasks (every django-q2
# entry point lives there). Append here.
MAINTENANCE_TASKS: list[MaintenanceTask] = [
    # Frees the lock of runs whose process died; RUNS_STALE_AFTER is 5 minutes.
    MaintenanceTask("reap-stale-runs", "runs.tasks.reap_stale_runs_task", "*/5 * * * *"),
    # Alerts: queue notifications for state changes, deliver (and retry) them.
    MaintenanceTask("alerts", "runs.tasks.run_alert_checks", "*/3 * * * *"),
    # Retention: RUNS_KEEP_DAYS / RUN_ERRORS_KEEP_DAYS, at night.
    MaintenanceTask("prune-runs", "runs.tasks.run_prune", "30 3 * * *"),
]


@dataclass
class ScheduleState:
    """The schedule of one pipeline as the dashboard and alerts see it."""

    name: str
    cron: str | None
    enabled: bool
    next_run: datetime | None
    #: The latest slot at or before now (None without a cron).
    last_slot: datetime | None
    last_started_at: datetime | None
    overdue: bool
    #: The slot that made it overdue (the latest one whose grace has passed).
    due_slot: datetime | None = None
    #: The cron registered in code (what `syncschedules --reset` restores).
    default_cron: str | None = None
    #: Slots before this moment do not count (the schedule was created or enabled then).
    counting_since: datetime | None = None

    @property
    def waiting(self) -> bool:
        """Never ran, and not overdue yet: waiting for its first run (healthy)."""
        return self.last_started_at is None and not self.overdue


# --- cron arithmetic ------------------------------------------------------------


def _local(value: datetime) -> datetime:
    if timezone.is_naive(value):
        raise ValueError("an aware datetime is required")
    return timezone.localtime(value)


def _utc(value: datetime) -> datetime:
    # Results are UTC: Python compares and subtracts datetimes that share a
    # tzinfo by wall clock (wrong across a DST change) and never finds an
    # ambiguous local time equal to another zone's. Templates and
    # timezone.localtime() show them in local time.
    return value.astimezone(UTC)


def next_run(cron: str, *, now: datetime) -> datetime:
    """The first slot of `cron` (read in local time) strictly after `now`; aware, in UTC."""
    from croniter import croniter

    return _utc(croniter(cron, _local(now)).get_next(datetime))


def last_expected_slot(cron: str | None, *, now: datetime) -> datetime | None:
    """The latest slot of `cron` (read in local time) at or before `now`; aware, in UTC."""
    if not cron:
        return None
    from croniter import croniter

    # croniter's get_prev is strictly before its start; a slot exactly at
    # `now` has already happened, so start a microsecond later.
    # Added in UTC: local arithmetic would drop `fold` in the repeated hour.
    start = _local(_local(now).astimezone(UTC) + timedelta(microseconds=1))
    return _utc(croniter(cron, start).get_prev(datetime))


def overdue_grace() -> timedelta:
    return timedelta(seconds=getattr(settings, "RUNS_OVERDUE_GRACE_S", 4 * 3600))


def due_slot(cron: str | None, *, now: datetime, grace: timedelta | None = None) -> datetime | None:
    """The latest slot whose grace period has passed: a run must have started since."""
    if not cron:
        return None
    # Grace is a real duration, so subtract it from the instant, not the wall clock.
    return last_expected_slot(cron, now=now - (overdue_grace() if grace is None else grace))


def is_overdue(cron: str | None, last_started_at: datetime | None, *, now: datetime,
               grace: timedelta | None = None) -> bool:
    """No run started since the latest slot whose grace has passed.

    With slots every 3 hours and 4 hours' grace it is not enough to look at
    the latest slot (its grace never passes before the next slot comes), so
    the slot that counts is the latest one at or before `now - grace`. A
    pipeline that never ran is overdue once any slot plus grace has passed.
    """
    slot = due_slot(cron, now=now, grace=grace)
    return slot is not None and (last_started_at is None or last_started_at < slot)


# --- states --------------------------------------------------------------------


def pipeline_schedule_name(pipeline: str) -> str:
    return f"{PIPELINE_PREFIX}{pipeline}"


def maintenance_schedule_name(task: str) -> str:
    return f"{MAINTENANCE_PREFIX}{task}"


def pipeline_schedule_states(*, now: datetime | None = None,
                             last_started: dict[str, datetime] | None = None) -> dict[str, ScheduleState]:
    """The schedule state of every registered pipeline, in registration order.

    Three queries whatever the number of pipelines: the Schedule rows, when
    each schedule started counting (PipelineSettings), and the latest start
    per pipeline (answered from the run_pipeline_started index; not asked
    when the caller passes `last_started`, name -> latest start). The cron
    comes from the pipeline's Schedule row when there is one (an admin's edit
    wins), else from the registered default. `next_run` is the row's own next
    run while it lies ahead (what django-q2 will do), else computed from the cron.
    """
    from django_q.models import Schedule

    now = now or timezone.now()
    pipelines = all_pipelines()
    names = [p.name for p in pipelines]
    rows: dict[str, dict] = {}
    for row in (
        Schedule.objects.filter(name__in=[pipeline_schedule_name(n) for n in names])
        .order_by("id")
        .values("name", "schedule_type", "cron", "repeats", "next_run")
    ):
        rows.setdefault(row["name"][len(PIPELINE_PREFIX):], row)
    if last_started is None:
        # One LIMIT-1 index seek per pipeline (UNION ALL): a GROUP BY MAX over all
        # pipelines reads the whole run_pipeline_started index (~60 ms at 200k runs).
        last_started = {n: runs[0].started_at for n, runs in recent_runs_per_pipeline(names, 1).items() if runs}
    since = dict(PipelineSettings.objects.filter(pipeline__in=names, schedule_since__isnull=False)
                 .values_list("pipeline", "schedule_since"))
    grace = overdue_grace()
    states = {}
    for p in pipelines:
        row = rows.get(p.name)
        started = last_started.get(p.name)
        if row is None:
            # Not synced yet (syncschedules runs after migrate): the default applies.
            cron, enabled, row_next = p.schedule, p.schedule is not None, None
        else:
            cron = row["cron"] if row["schedule_type"] == Schedule.CRON else None
            enabled = row["repeats"] != 0
            row_next = row["next_run"]
        if not enabled:
            states[p.name] = ScheduleState(p.name, cron, False, None, last_expected_slot(cron, now=now),
                                           started, False, None, p.schedule)
            continue
        upcoming: datetime | None
        if row_next is not None and row_next > now:
            upcoming = _utc(row_next)
        else:
            upcoming = next_run(cron, now=now) if cron else row_next
        slot = due_slot(cron, now=now, grace=grace)
        counting_since = since.get(p.name)
        if slot is not None and counting_since is not None and slot < counting_since:
            slot = None  # the slot came before the schedule existed: it does not count
        states[p.name] = ScheduleState(
            name=p.name,
            cron=cron,
            enabled=True,
            next_run=upcoming,
            last_slot=last_expected_slot(cron, now=now),
            last_started_at=started,
            overdue=slot is not None and (started is None or started < slot),
            due_slot=slot,
            default_cron=p.schedule,
            counting_since=counting_since,
        )
    return states


def overdue_pipelines(*, now: datetime | None = None) -> list[ScheduleState]:
    """The states of the pipelines that are overdue, in registration order."""
    return [state for state in pipeline_schedule_states(now=now).values() if state.overdue]


# --- syncing Schedule rows -------------------------------------------------------


@dataclass(frozen=True)
class _Wanted:
    name: str
    func: str
    args: str | None
    cron: str


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: (schedule name, why it was left as the admin set it)
    kept: list[tuple[str, str]] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.created)} created", f"{len(self.updated)} updated",
                 f"{len(self.unchanged)} unchanged", f"{len(self.kept)} kept as edited"]
        if self.reset:
            parts.append(f"{len(self.reset)} reset")
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        return ", ".join(parts)


def _wanted_schedules() -> list[_Wanted]:
    wanted = [
        _Wanted(pipeline_schedule_name(p.name), PIPELINE_TASK, repr(p.name), p.schedule)
        for p in all_pipelines()
        if p.schedule
    ]
    for task in MAINTENANCE_TASKS:
        name, func, cron = task
        wanted.append(_Wanted(maintenance_schedule_name(name), func, None, cron))
    return wanted


def _edited(row, wanted: _Wanted) -> str:
    """Why `row` counts as changed by an admin, or "" when it is still ours."""
    from django_q.models import Schedule

    if row.repeats == 0:
        return "disabled (repeats = 0)"
    if row.schedule_type != Schedule.CRON:
        return f"schedule type changed to {row.get_schedule_type_display()}"
    if (row.cron or "").strip() != wanted.cron:
        return f"cron {row.cron!r} differs from the default {wanted.cron!r}"
    return ""


def sync_schedules(*, reset: bool = False, now: datetime | None = None) -> SyncReport:
    """Create or update the django-q2 Schedules of the pipelines and maintenance tasks.

    Idempotent: a second call changes nothing. Rows an admin edited (see the
    module docstring) are kept unless `reset`; rows named like ours whose
    pipeline or maintenance task no longer exists (or no longer has a
    default schedule) are removed, since they could only fail or do what the
    code no longer asks for.
    """
    from django_q.models import Schedule

    now = now or timezone.now()
    report = SyncReport()
    wanted = {w.name: w for w in _wanted_schedules()}
    registered = {p.name for p in all_pipelines()}
    with transaction.atomic():
        existing: dict[str, Schedule] = {}
        ours = Q(name__startswith=PIPELINE_PREFIX) | Q(name__startswith=MAINTENANCE_PREFIX)
        for row in Schedule.objects.filter(ours).order_by("id"):
            if row.name in wanted and row.name not in existing:
                existing[row.name] = row
                continue
            if (not reset and row.name not in wanted and row.name.startswith(PIPELINE_PREFIX)
                    and row.name[len(PIPELINE_PREFIX):] in registered):
                # A registered pipeline without a default: an admin scheduled it by hand.
                report.kept.append((row.name, "no default schedule; created by hand"))
                continue
            # An orphan (its pipeline or task is gone) or a duplicate of one of ours.
            row.delete()
            report.removed.append(row.name)
        for name, w in wanted.items():
            row = existing.get(name)
            if row is None:
                Schedule.objects.create(
                    name=name, func=w.func, args=w.args, kwargs=None, schedule_type=Schedule.CRON, cron=w.cron,
                    repeats=-1, next_run=next_run(w.cron, now=now),
                )
                report.created.append(name)
                continue
            why = _edited(row, w)
            if why and not reset:
                report.kept.append((name, why))
                continue
            target = {
                "func": w.func, "args": w.args, "kwargs": None, "hook": None, "schedule_type": Schedule.CRON,
                "cron": w.cron, "repeats": -1, "cluster": None, "intended_date_kwarg": None,
            }
            changed = {k: v for k, v in target.items() if getattr(row, k) != v}
            if not changed:
                report.unchanged.append(name)
                continue
            for key, value in changed.items():
                setattr(row, key, value)
            # django-q2 only computes next_run when a cron row is created.
            if {"cron", "schedule_type", "repeats"} & changed.keys() or row.next_run is None:
                row.next_run = next_run(w.cron, now=now)
            row.save()
            (report.reset if why else report.updated).append(name)
    if report.created or report.updated or report.reset or report.removed:
        logger.info("schedules synced: %s", report.summary())
    return report


# --- keeping next_run and the counting start in step with edits ------------------


def schedule_pre_save(sender, instance, raw: bool = False, **kwargs) -> None:
    """Before a Schedule is saved: recompute next_run when its cron or type changed,
    and note whether its counting start moves (created, enabled again, new cron/type)."""
    if raw:
        return
    from django_q.models import Schedule

    old = (Schedule.objects.filter(pk=instance.pk).values("schedule_type", "cron", "minutes", "repeats").first()
           if instance.pk else None)
    now = timezone.now()
    if old is None:
        instance._syncsite_restart = True
        return
    changed = (old["schedule_type"] != instance.schedule_type
               or (old["cron"] or "").strip() != (instance.cron or "").strip()
               or old["minutes"] != instance.minutes)
    if changed and instance.schedule_type == Schedule.CRON and instance.cron:
        instance.next_run = next_run(instance.cron, now=now)
    elif changed and instance.schedule_type != Schedule.ONCE:
        instance.next_run = instance.calculate_next_run(now)
    instance._syncsite_restart = changed or (old["repeats"] == 0 and instance.repeats != 0)


def schedule_post_save(sender, instance, created: bool = False, raw: bool = False, **kwargs) -> None:
    """After a pipeline's Schedule is saved: move its counting start to now when
    it was created, enabled again or given a new cron or type."""
    if raw or not getattr(instance, "_syncsite_restart", False) or not instance.name:
        return
    instance._syncsite_restart = False
    if not instance.name.startswith(PIPELINE_PREFIX):
        return
    PipelineSettings.objects.update_or_create(pipeline=instance.name[len(PIPELINE_PREFIX):][:64],
                                              defaults={"schedule_since": timezone.now()})


def connect_schedule_signals() -> None:
    from django.db.models.signals import post_save, pre_save
    from django_q.models import Schedule

    pre_save.connect(schedule_pre_save, sender=Schedule, dispatch_uid="runs.scheduling.schedule_pre_save")
    post_save.connect(schedule_post_save, sender=Schedule, dispatch_uid="runs.scheduling.schedule_post_save")
