"""Alerts: notice state changes in run history and tell people, once.

Runs as a django-q2 schedule (runs.tasks.run_alert_checks, every few minutes), never in
a pipeline's process: a pipeline only writes its Run, and this module reads
history afterwards. Two phases, so no network call ever happens inside a
transaction:

1. `check_alerts()` compares what it sees with the last recorded state per
   subject (`AlertState`, healthchecks' flip idea) and queues a
   `Notification` for each change, in short transactions:
   - `failed` / `partial` (unless the pipeline registered with
     `alert_on_partial=False`) once ALERT_AFTER_FAILURES (or the pipeline's
     own setting in the admin) top-level runs in a row failed or were
     partial; `recovered` (first success after an alert) says how long it
     was failing and how many runs failed. Runs started by `all` do not
     alert on their own: `all`'s one notification names its failing
     children. A pipeline that keeps failing is reported once, not once per
     run;
   - `reminder`: every ALERT_REMIND_HOURS while something is still failing
     or overdue, one message listing only what is still wrong;
   - `tracking`: a run whose record could not be written when it ran (see
     runs.outcomes), once the database accepts it;
   - `overdue`: one message listing every overdue pipeline, sent at once
     when the set changes; while it is unchanged the reminder repeats it (or,
     with ALERT_REMIND_HOURS=0, every ALERT_OVERDUE_COOLDOWN);
   - `long_running`: a run still going after ALERT_LONG_RUNNING_FACTOR times
     its pipeline's median duration (once per run).
2. `runs.delivery.deliver_pending()` sends due notifications by mail
   (ALERT_EMAILS) and webhook (ALERT_WEBHOOK_URL, JSON). A failing channel is
   recorded on the notification and retried by a later check; it never raises.
"""

from __future__ import annotations

import logging
import statistics
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runs.isotime import iso
from runs.models import AlertEvent, AlertState, Notification, PipelineSettings, Run, RunError, RunStatus
from runs.models.run import span_ms
from runs.pipeline import Pipeline, all_pipelines
from runs.states import pipeline_states
from runs.templatetags.runs_extras import format_duration

logger = logging.getLogger("runs.alerts")

#: Finished runs that say something about a pipeline's health. Cancelled and
#: skipped runs say nothing (a person stopped it / it was already running).
OUTCOME_STATUSES = (RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.ABANDONED)
OVERDUE_SUBJECT = "overdue"
#: How many recent finished runs the long-running median is taken over.
MEDIAN_WINDOW = 20
WEBHOOK_ERRORS = 10
#: How many errors a mail body lists (it is read on a phone).
BODY_ERRORS = 5
#: How many recent top-level runs a failure streak is read from (the threshold is capped to it).
STREAK_WINDOW = 50
BAD_STATES = ("failed", "partial")


# --- phase 1: checks --------------------------------------------------------------


def check_alerts(*, now: datetime | None = None) -> list[Notification]:
    """Evaluate every rule and queue a Notification per state change."""
    now = now or timezone.now()
    queued: list[Notification] = []
    thresholds = alert_thresholds()
    for pipeline in all_pipelines():
        queued.extend(check_run_outcome(pipeline, now=now, threshold=thresholds.get(pipeline.name)))
    notification = check_overdue(now=now)
    if notification is not None:
        queued.append(notification)
    notification = check_reminders(now=now)
    if notification is not None:
        queued.append(notification)
    queued.extend(check_long_running(now=now))
    return queued


def alert_thresholds() -> dict[str, int]:
    """ALERT_AFTER_FAILURES per pipeline where the admin set its own (one query)."""
    rows = PipelineSettings.objects.filter(alert_after_failures__isnull=False).values_list(
        "pipeline", "alert_after_failures")
    return {pipeline: threshold for pipeline, threshold in rows if threshold is not None}


def outcome_state(run: Run, pipeline: Pipeline) -> str:
    """`failed`, `partial` or `ok` for the alert state machine."""
    if run.status in (RunStatus.FAILED, RunStatus.ABANDONED):
        return "failed"
    if run.status == RunStatus.PARTIAL and pipeline.alert_on_partial:
        return "partial"
    return "ok"


def check_run_outcome(pipeline: Pipeline, *, now: datetime, threshold: int | None = None) -> list[Notification]:
    """Follow one pipeline's top-level runs since the last check (a failure streak).

    AlertState.detail keeps the streak (`streak`, `since`) and when the
    pipeline was last notified (`notified_at`, for reminders).
    """
    threshold = max(1, min(threshold or settings.ALERT_AFTER_FAILURES, STREAK_WINDOW))
    # run_pipeline_started index, newest first; child runs of `all` are `all`'s to report.
    runs = list(
        Run.objects.filter(pipeline=pipeline.name, parent__isnull=True, status__in=OUTCOME_STATUSES)
        .order_by("-started_at", "-id")[:STREAK_WINDOW]
    )
    if not runs:
        return []
    queued = []
    with transaction.atomic():
        state, _ = AlertState.objects.select_for_update().get_or_create(subject=f"run:{pipeline.name}")
        if state.last_run_id == runs[0].pk:
            return []  # already judged
        new = []
        for run in runs:
            if run.pk == state.last_run_id:
                break
            new.append(run)
        detail = dict(state.detail or {})
        streak, since = int(detail.get("streak", 0)), detail.get("since")
        alerted = state.state in BAD_STATES
        for run in reversed(new):  # oldest first
            kind = outcome_state(run, pipeline)
            if kind == "ok":
                if alerted:
                    began = datetime.fromisoformat(since) if since else run.started_at
                    note = (f"It was failing for {format_duration(span_ms(began, run.started_at))}: "
                            f"{streak} run(s) in a row failed or were partial.")
                    queued.append(_queue_run_notification(AlertEvent.RECOVERED, run, now=now, note=note))
                    state.changed_at = now
                state.state, streak, since, alerted = "ok", 0, None, False
                continue
            streak += 1
            since = since or run.started_at.isoformat()
            if streak < threshold:
                continue
            if not alerted or kind != state.state:
                note = f"{streak} run(s) in a row failed or were partial." if streak > 1 else ""
                event = AlertEvent.FAILED if kind == "failed" else AlertEvent.PARTIAL
                queued.append(_queue_run_notification(event, run, now=now, note=note))
                detail["notified_at"] = now.isoformat()
                state.state, state.changed_at, alerted = kind, now, True
        if not alerted and state.state == "":
            state.state = "ok"  # first sighting of a healthy pipeline: nothing to say
        detail.update(streak=streak, since=since)
        state.detail = detail
        state.last_run = runs[0]
        state.save()
    return queued


def check_reminders(*, now: datetime) -> Notification | None:
    """One reminder listing what is still wrong, every ALERT_REMIND_HOURS (0: never).

    Due when the oldest notification about a problem that is still there is
    that old; every subject it lists counts as notified now.
    """
    hours = settings.ALERT_REMIND_HOURS
    if not hours:
        return None
    remind_after = timedelta(hours=hours)
    with transaction.atomic():
        states = list(
            AlertState.objects.select_for_update()
            .filter(Q(subject__startswith="run:", state__in=BAD_STATES) | Q(subject=OVERDUE_SUBJECT, state="overdue"))
            .order_by("subject")
        )
        if not states:
            return None

        def last_notified(state: AlertState) -> datetime:
            stamp = state.detail.get("sent_at" if state.subject == OVERDUE_SUBJECT else "notified_at")
            return datetime.fromisoformat(stamp) if stamp else state.changed_at

        if min(last_notified(s) for s in states) > now - remind_after:
            return None
        failing = [(s.subject[len("run:"):], s) for s in states if s.subject != OVERDUE_SUBJECT]
        overdue: list[str] = next((s.detail.get("pipelines", []) for s in states if s.subject == OVERDUE_SUBJECT), [])
        lines = ["Still wrong:"]
        for name, state in failing:
            lines.append(f"- {name}: {state.state} since {_local(_since(state))}, "
                         f"{state.detail.get('streak', 1)} run(s) in a row")
        for name in overdue:
            lines.append(f"- {name}: overdue")
        lines += ["", f"{settings.SITE_URL}/"]
        for state in states:
            key = "sent_at" if state.subject == OVERDUE_SUBJECT else "notified_at"
            state.detail = {**state.detail, key: now.isoformat()}
            state.save(update_fields=["detail"])
        names = [name for name, _ in failing] + [name for name in overdue if name not in dict(failing)]
        return Notification.objects.create(
            event=AlertEvent.REMINDER,
            subject=f"[syncsite] still failing: {', '.join(names)}",
            body="\n".join(lines),
            payload={
                "event": AlertEvent.REMINDER.value,
                "failing": [{"name": name, "state": state.state, "since": iso(_since(state)),
                             "runs": state.detail.get("streak", 1)} for name, state in failing],
                "overdue": overdue,
                "url": f"{settings.SITE_URL}/",
            },
            created_at=now,
            next_attempt_at=now,
        )


def _since(state: AlertState) -> datetime:
    since = state.detail.get("since")
    return datetime.fromisoformat(since) if since else state.changed_at


def queue_tracking_notification(run: Run, cause: str, *, now: datetime | None = None) -> Notification:
    """A run whose record could not be written when it ran (runs.outcomes)."""
    now = now or timezone.now()
    return _queue_run_notification(
        AlertEvent.TRACKING, run, now=now,
        note=f"Its record could not be written while it ran: {cause}. It has been recorded now.",
    )


def check_overdue(*, now: datetime) -> Notification | None:
    overdue = overdue_details(now=now)
    names = [item["name"] for item in overdue]
    cooldown = timedelta(seconds=settings.ALERT_OVERDUE_COOLDOWN_S)
    with transaction.atomic():
        state, _ = AlertState.objects.select_for_update().get_or_create(subject=OVERDUE_SUBJECT)
        previous = state.detail.get("pipelines", [])
        sent_at = state.detail.get("sent_at")
        if not names:
            if previous:
                state.state, state.detail, state.changed_at = "ok", {"pipelines": []}, now
                state.save()
            return None
        # With reminders on, the reminder repeats an unchanged set.
        due = (
            names != previous
            or sent_at is None
            or (not settings.ALERT_REMIND_HOURS and now - datetime.fromisoformat(sent_at) >= cooldown)
        )
        if not due:
            return None
        if names != previous:
            state.changed_at = now
        state.state = "overdue"
        state.detail = {"pipelines": names, "sent_at": now.isoformat()}
        state.save()
        lines = [f"{len(names)} pipeline(s) did not start on schedule:", ""]
        for item in overdue:
            last = item.get("last_started_at")
            lines.append(
                f"  {item['name']}: expected at {_local(item.get('last_slot'))}, "
                f"last started {_local(last) if last else 'never'}"
            )
        lines += ["", f"Overview: {settings.SITE_URL}/"]
        return Notification.objects.create(
            event=AlertEvent.OVERDUE,
            subject=f"[syncsite] overdue: {', '.join(names)}",
            body="\n".join(lines),
            payload={
                "event": AlertEvent.OVERDUE.value,
                "pipelines": [
                    {
                        "name": item["name"],
                        "last_slot": iso(item.get("last_slot")),
                        "last_started_at": iso(item.get("last_started_at")),
                    }
                    for item in overdue
                ],
                "url": f"{settings.SITE_URL}/",
            },
            created_at=now,
            next_attempt_at=now,
        )


def overdue_details(*, now: datetime) -> list[dict]:
    """Overdue pipelines, by name, with their last slot and last start."""
    states = pipeline_states(now=now, strict=True)
    return [
        {"name": name, "last_slot": s.schedule.last_slot, "last_started_at": s.schedule.last_started_at}
        for name, s in sorted(states.items())
        if s.schedule is not None and s.schedule.overdue
    ]


def median_duration_ms(pipeline: str) -> float | None:
    """Median duration of the pipeline's recent successful or partial runs."""
    durations = list(
        Run.objects.filter(
            pipeline=pipeline, status__in=(RunStatus.SUCCESS, RunStatus.PARTIAL), duration_ms__isnull=False
        )
        .order_by("-started_at", "-id")
        .values_list("duration_ms", flat=True)[:MEDIAN_WINDOW]
    )
    return statistics.median(durations) if durations else None


def check_long_running(*, now: datetime) -> list[Notification]:
    factor = settings.ALERT_LONG_RUNNING_FACTOR
    minimum_ms = settings.ALERT_LONG_RUNNING_MIN_S * 1000
    queued = []
    started_before = now - timedelta(milliseconds=minimum_ms)
    for run in Run.objects.running().filter(started_at__lte=started_before):
        median = median_duration_ms(run.pipeline)
        if median is None:
            continue  # no history to compare with
        elapsed = run.elapsed_ms(now)
        if elapsed < max(factor * median, minimum_ms):
            continue
        with transaction.atomic():
            if Notification.objects.filter(event=AlertEvent.LONG_RUNNING, run=run).exists():
                continue
            queued.append(
                _queue_run_notification(
                    AlertEvent.LONG_RUNNING, run, now=now,
                    note=f"Still running after {format_duration(elapsed)}; it usually takes "
                    f"{format_duration(int(median))}.",
                )
            )
    return queued


def run_payload(event: str, run: Run, *, now: datetime) -> dict:
    """The webhook's JSON for a run event (also what the mail is written from).

    For a parent run (`all`) the errors are its children's too, and
    `children` lists the children that did not succeed.
    """
    children = list(
        Run.objects.filter(parent_id=run.pk).order_by("id").values("id", "pipeline", "status", "error_count")[:100]
    )
    run_ids = [run.pk] + [c["id"] for c in children]
    errors = [
        {
            "identifier": e["identifier"],
            "identifier_kind": e["identifier_kind"],
            "step": e["step_name"],
            "message": e["message"],
        }
        # runerror_run_step index: one range per run.
        for e in RunError.objects.filter(run_id__in=run_ids).order_by("id")
        .values("identifier", "identifier_kind", "step_name", "message")[:WEBHOOK_ERRORS]
    ]
    return {
        "event": str(event),
        "pipeline": run.pipeline,
        "run_id": run.pk,
        "status": run.status,
        "mode": run.mode,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_ms": run.elapsed_ms(now),
        "counts": {
            "created": run.created,
            "updated": run.updated,
            "skipped": run.skipped,
            "failed": run.failed,
            "errors": run.error_count,
        },
        "message": run.message,
        "errors": errors,
        "children": [
            {"pipeline": c["pipeline"], "run_id": c["id"], "status": c["status"], "errors": c["error_count"]}
            for c in children if c["status"] != RunStatus.SUCCESS
        ],
        "url": settings.SITE_URL + run.get_absolute_url(),
    }


_TITLES: dict[str, str] = {
    AlertEvent.FAILED: "failed",
    AlertEvent.PARTIAL: "finished with errors (partial)",
    AlertEvent.RECOVERED: "recovered",
    AlertEvent.LONG_RUNNING: "is taking unusually long",
    AlertEvent.TRACKING: "ran, but run tracking failed",
}


def _queue_run_notification(event: str, run: Run, *, now: datetime, note: str = "") -> Notification:
    """Short lines for a phone: what, status, counts, the first errors, the link."""
    payload = run_payload(event, run, now=now)
    counts = payload["counts"]
    lines = [
        f"{run.pipeline}: {run.status.upper()}",
        f"Run #{run.pk} · {run.get_mode_display().lower()} · {format_duration(payload['duration_ms'])}",
    ]
    if note:
        lines.append(note)
    lines.append(
        f"Created {counts['created']} · updated {counts['updated']} · skipped {counts['skipped']} · "
        f"failed {counts['failed']} · errors {counts['errors']}"
    )
    if payload["children"]:
        lines.append("Not OK: " + ", ".join(
            f"{c['pipeline']} {c['status']}" + (f" ({c['errors']} errors)" if c["errors"] else "")
            for c in payload["children"]))
    if run.message:
        lines.append(run.message[:300])
    if payload["errors"] and event != AlertEvent.RECOVERED:
        lines += ["", "First errors:"]
        for e in payload["errors"][:BODY_ERRORS]:
            who = f"{e['identifier']} ({e['identifier_kind']})" if e["identifier"] else e["step"] or "-"
            lines.append(f"- {who}: {e['message'][:120]}")
        if counts["errors"] > BODY_ERRORS:
            lines.append(f"  … and {counts['errors'] - BODY_ERRORS} more")
    lines += ["", payload["url"]]
    return Notification.objects.create(
        event=event,
        pipeline=run.pipeline,
        run=run,
        subject=f"[syncsite] {run.pipeline} {_TITLES[event]} (run #{run.pk})",
        body="\n".join(lines),
        payload=payload,
        created_at=now,
        next_attempt_at=now,
    )


def _local(value) -> str:
    if value is None:
        return "-"
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M}"
