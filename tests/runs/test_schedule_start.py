"""Overdue counts from when a schedule started; cron edits take effect at once."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse
from django_q.models import Schedule

from runs.alerts import check_alerts
from runs.models import AlertEvent, PipelineSettings
from runs.scheduling import pipeline_schedule_states, sync_schedules

AMS = ZoneInfo("Europe/Amsterdam")


def local(*args):
    return datetime(*args, tzinfo=AMS)


# --- 1. overdue counts from the schedule's start -----------------------------------------


@pytest.fixture
def no_schedules(db):
    Schedule.objects.all().delete()
    PipelineSettings.objects.all().delete()


@pytest.mark.usefixtures("no_schedules")
def test_a_fresh_install_is_waiting_not_overdue(client, settings):
    settings.RUNS_OVERDUE_GRACE_S = 4 * 3600
    # Installed (migrate syncs the schedules) on a Monday at 10:00: the 08:00
    # slot of `sample` (0 8 * * *) came before the schedule existed.
    with time_machine.travel(local(2026, 5, 4, 10, 0), tick=False):
        sync_schedules()
    with time_machine.travel(local(2026, 5, 4, 13, 0), tick=False):
        assert check_alerts() == []
        assert client.get("/health/pipelines/").status_code == 200
        state = pipeline_schedule_states()["sample"]
        assert not state.overdue and state.waiting
        assert state.counting_since == local(2026, 5, 4, 10, 0)
    # The next day's 08:00 slot counts; it is overdue once its grace has passed.
    with time_machine.travel(local(2026, 5, 5, 11, 59), tick=False):
        assert pipeline_schedule_states()["sample"].waiting
    with time_machine.travel(local(2026, 5, 5, 12, 0, 1), tick=False):
        state = pipeline_schedule_states()["sample"]
        assert state.overdue and not state.waiting
        assert client.get("/health/pipelines/").status_code == 503
        (notification,) = check_alerts()
        assert notification.event == AlertEvent.OVERDUE and "sample" in notification.subject


@pytest.mark.usefixtures("no_schedules")
def test_the_overview_says_waiting_for_its_first_run(admin_client):
    with time_machine.travel(local(2026, 5, 4, 10, 0), tick=False):
        sync_schedules()
    with time_machine.travel(local(2026, 5, 4, 13, 0), tick=False):
        html = admin_client.get(reverse("runs:overview")).content.decode()
    card = html.split('data-pipeline="sample"')[1].split("</section>")[0]
    assert "Waiting for its first run" in card and "OVERDUE" not in card


@pytest.mark.usefixtures("no_schedules")
def test_enabling_a_schedule_again_restarts_the_count(settings):
    settings.RUNS_OVERDUE_GRACE_S = 3600
    with time_machine.travel(local(2026, 5, 1, 10, 0), tick=False):
        sync_schedules()
    row = Schedule.objects.get(name="pipeline:sample")
    with time_machine.travel(local(2026, 5, 2, 7, 0), tick=False):
        row.repeats = 0
        row.save()
    with time_machine.travel(local(2026, 5, 4, 12, 0), tick=False):
        assert not pipeline_schedule_states()["sample"].enabled
        row.repeats = -1
        row.save()
        # Disabled over the weekend: the slots it missed while off do not count.
        assert not pipeline_schedule_states()["sample"].overdue
    with time_machine.travel(local(2026, 5, 5, 9, 0, 1), tick=False):
        assert pipeline_schedule_states()["sample"].overdue


# --- 8. cron edits take effect at once ------------------------------------------------------


@pytest.mark.usefixtures("no_schedules")
def test_a_cron_edit_in_code_recomputes_next_run_on_save():
    with time_machine.travel(local(2026, 5, 4, 7, 0), tick=False):
        sync_schedules()
        row = Schedule.objects.get(name="pipeline:sample")
        assert row.next_run == local(2026, 5, 4, 8, 0)
        row.cron = "30 6 * * *"
        row.save()
        assert Schedule.objects.get(pk=row.pk).next_run == local(2026, 5, 5, 6, 30)
        row.schedule_type, row.minutes = Schedule.MINUTES, 15
        row.save()
        assert Schedule.objects.get(pk=row.pk).next_run == local(2026, 5, 4, 7, 15)
        # Saving without a change leaves next_run alone (the scheduler's own saves).
        Schedule.objects.filter(pk=row.pk).update(next_run=local(2026, 5, 4, 7, 45))
        Schedule.objects.get(pk=row.pk).save()
        assert Schedule.objects.get(pk=row.pk).next_run == local(2026, 5, 4, 7, 45)


@pytest.mark.usefixtures("no_schedules")
def test_a_cron_edit_in_the_admin_recomputes_next_run(admin_client):
    with time_machine.travel(local(2026, 5, 4, 7, 0), tick=False):
        sync_schedules()
        row = Schedule.objects.get(name="pipeline:sample")
        url = reverse("admin:django_q_schedule_change", args=[row.pk])
        form = admin_client.get(url).context["adminform"].form
        data = {name: form[name].value() for name in form.fields}
        data = {k: ("" if v is None else v) for k, v in data.items()}
        data["cron"] = "15 9 * * *"
        data["next_run_0"], data["next_run_1"] = "2026-05-04", "08:00:00"
        response = admin_client.post(url, data)
        assert response.status_code == 302, response.context["adminform"].form.errors
        assert Schedule.objects.get(pk=row.pk).next_run == local(2026, 5, 4, 9, 15)
