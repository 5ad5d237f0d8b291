"""Trustworthy outcomes, alerts: one alert per problem, after N failures, recoveries, reminders, phone-sized.

(Split from tests/runs/test_outcomes.py; the runs here are rows made by the test.)
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from runs.alerts import check_alerts
from runs.models import AlertEvent, PipelineSettings, Run, RunError, RunStatus
from runs.pipeline import all_pipelines

AMS = ZoneInfo("Europe/Amsterdam")


def local(*args):
    return datetime(*args, tzinfo=AMS)


# --- alerts --------------------------------------------------------------------------------------------


T0 = local(2025, 3, 10, 14, 0)


@pytest.fixture
def alerting(settings, db):
    settings.ALERT_EMAILS = ["ops@example.org"]
    settings.ALERT_WEBHOOK_URL = ""
    settings.ALERT_REMIND_HOURS = 24
    settings.ALERT_AFTER_FAILURES = 1
    settings.SITE_URL = "https://sync.example.org"
    # The schedules were set up just now: nothing is overdue yet.
    for p in all_pipelines():
        PipelineSettings.objects.update_or_create(pipeline=p.name, defaults={"schedule_since": T0})
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def finished(pipeline, status, *, at, parent=None, **fields):
    return Run.objects.create(pipeline=pipeline, status=status, started_at=at, finished_at=at + timedelta(minutes=2),
                              duration_ms=120_000, parent=parent, **fields)


def test_all_and_its_children_make_one_alert_naming_the_failing_children(alerting):
    parent = finished("all", RunStatus.FAILED, at=T0 - timedelta(hours=1), failed=5, error_count=5)
    finished("people", RunStatus.SUCCESS, at=T0 - timedelta(hours=1), parent=parent)
    nikki = finished("nikki", RunStatus.FAILED, at=T0 - timedelta(hours=1), parent=parent, failed=5, error_count=5)
    RunError.objects.bulk_create(RunError(run=nikki, pipeline="nikki", step_name="nikki-sync",
                                          identifier=f"NK{i}", message=f"bad amount {i}") for i in range(5))
    queued = check_alerts()
    assert [(n.event, n.pipeline) for n in queued] == [(AlertEvent.FAILED, "all")]
    body = queued[0].body
    assert "Not OK: nikki failed (5 errors)" in body
    assert "NK0" in body and "bad amount 4" in body


def test_alert_after_failures_waits_for_n_in_a_row_and_the_admin_overrides_it(alerting, settings):
    settings.ALERT_AFTER_FAILURES = 3
    for hours in (5, 4):
        finished("boom", RunStatus.FAILED, at=T0 - timedelta(hours=hours))
    finished("soft", RunStatus.PARTIAL, at=T0 - timedelta(hours=4))
    PipelineSettings.objects.filter(pipeline="soft").update(alert_after_failures=1)
    queued = check_alerts()
    assert [(n.event, n.pipeline) for n in queued] == [(AlertEvent.PARTIAL, "soft")]
    finished("boom", RunStatus.FAILED, at=T0 - timedelta(hours=3))
    (notification,) = check_alerts()
    assert notification.pipeline == "boom" and "3 run(s) in a row failed or were partial." in notification.body
    finished("boom", RunStatus.FAILED, at=T0 - timedelta(hours=2))
    assert check_alerts() == []  # still the same problem


def test_a_recovery_says_how_long_and_how_many_runs_failed(alerting):
    for hours in (30, 20, 10):
        finished("boom", RunStatus.FAILED, at=T0 - timedelta(hours=hours))
        check_alerts()
    finished("boom", RunStatus.SUCCESS, at=T0 - timedelta(hours=1))
    (recovered,) = check_alerts()
    assert recovered.event == AlertEvent.RECOVERED
    assert "It was failing for 29 h 00 m: 3 run(s) in a row failed or were partial." in recovered.body


def test_reminders_list_only_what_is_still_wrong(alerting, settings):
    finished("boom", RunStatus.FAILED, at=T0 - timedelta(hours=1))
    finished("soft", RunStatus.PARTIAL, at=T0 - timedelta(hours=1))
    assert len(check_alerts()) == 2
    alerting.shift(timedelta(hours=23))
    finished("soft", RunStatus.SUCCESS, at=T0 + timedelta(hours=22))
    # (By now `sample` missed its 08:00 slot: that is a new problem, reported at once.)
    assert [n.event for n in check_alerts()] == [AlertEvent.RECOVERED, AlertEvent.OVERDUE]
    alerting.shift(timedelta(hours=1, minutes=1))
    (reminder,) = [n for n in check_alerts() if n.event == AlertEvent.REMINDER]
    assert "- boom: failed since" in reminder.body and "- sample: overdue" in reminder.body
    assert "soft" not in reminder.body
    assert [f["name"] for f in reminder.payload["failing"]] == ["boom"]
    alerting.shift(timedelta(hours=1))
    assert not [n for n in check_alerts() if n.event == AlertEvent.REMINDER]  # next one in 24 h
    settings.ALERT_REMIND_HOURS = 0
    alerting.shift(timedelta(days=3))
    assert not [n for n in check_alerts() if n.event == AlertEvent.REMINDER]


def test_an_alert_body_reads_on_a_phone(alerting):
    run = finished("boom", RunStatus.FAILED, at=T0 - timedelta(minutes=10), created=2, updated=1, failed=8,
                   error_count=8, message="the export is unreadable")
    RunError.objects.bulk_create(RunError(run=run, pipeline="boom", step_name="boom-sync", identifier=f"AB{i:05d}",
                                          identifier_kind="knvb_id", message=f"bad row {i} " + "x" * 300)
                                 for i in range(8))
    (notification,) = check_alerts()
    lines = notification.body.split("\n")
    assert lines[0] == "boom: FAILED"
    assert "Created 2 · updated 1 · skipped 0 · failed 8 · errors 8" in lines
    errors = [line for line in lines if line.startswith("- ")]
    assert len(errors) == 5 and errors[0].startswith("- AB00000 (knvb_id): bad row 0")
    assert "  … and 3 more" in lines and lines[-1] == f"https://sync.example.org/runs/{run.pk}/"
    assert max(len(line) for line in lines) <= 160
