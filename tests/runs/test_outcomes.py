"""Trustworthy outcomes: every status, count, alert and exit code tells the truth.

The database failures here are real: a connection is made read-only
(SQLite's `PRAGMA query_only`, PostgreSQL's `transaction_read_only`) and the
code under test meets the database's own error.
"""

import io
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.backends.signals import connection_created
from django.test import Client
from django.urls import reverse
from django_q.models import Schedule

from runs.alerts import check_alerts
from runs.health import pipeline_states
from runs.models import AlertEvent, ApiToken, Notification, PipelineSettings, Run, RunError, RunStatus, RunStep
from runs.outcomes import apply_spooled_outcomes, pending_outcomes
from runs.pipeline import register, unregister
from runs.redact import clear_secret_cache
from runs.runner import reap_stale_runs, run_pipeline
from runs.scheduling import pipeline_schedule_states, sync_schedules
from tests.pipelines.conftest import export_dir  # noqa: F401 - fixture

AMS = ZoneInfo("Europe/Amsterdam")


def local(*args):
    return datetime(*args, tzinfo=AMS)


# --- a real read-only database ------------------------------------------------------


class ReadOnly:
    """Makes connections read-only at the database while `on`: the connection of
    every thread but the test's (`others`, e.g. the tracker's writer), and the
    test's own too with `everywhere`."""

    def __init__(self):
        self.on = False
        self.everywhere = False

    @staticmethod
    def _apply(conn, cursor, value: bool) -> None:
        if conn.vendor == "sqlite":
            cursor.execute(f"PRAGMA query_only = {'ON' if value else 'OFF'}")
        else:
            # Both: the transaction in progress (if any) and the ones to come.
            flag = "on" if value else "off"
            cursor.execute(f"SET default_transaction_read_only = {flag}")
            if not conn.get_autocommit():
                cursor.execute(f"SET transaction_read_only = {flag}")

    def wrapper(self, conn, *, main=False):
        applied = {"value": False}

        def wrap(execute, sql, params, many, context):
            wanted = self.on and (self.everywhere or not main)
            if wanted != applied["value"]:
                applied["value"] = wanted  # first: _apply's own statements come through here too
                self._apply(conn, context["cursor"], wanted)
            return execute(sql, params, many, context)

        return wrap

    def created(self, sender, connection, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            connection.execute_wrappers.append(self.wrapper(connection))


@pytest.fixture
def read_only(transactional_db):
    state = ReadOnly()
    connection_created.connect(state.created, dispatch_uid="test-read-only")
    connection.ensure_connection()
    try:
        with connection.execute_wrapper(state.wrapper(connection, main=True)):
            yield state
    finally:
        connection_created.disconnect(dispatch_uid="test-read-only")
        state.on = False
        with connection.cursor() as cursor:
            ReadOnly._apply(connection, cursor, False)


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


# --- 2. outcome without tracking ------------------------------------------------------------


def test_runsync_exits_0_and_shows_the_real_outcome_when_the_runs_table_is_unusable(
        export_dir, read_only, client):  # noqa: F811
    run_pipeline("people")
    read_only.on = True  # the tracker's connection (its own thread) cannot write
    out = io.StringIO()
    call_command("runsync", "functions", stdout=out)  # would raise SystemExit on a non-zero exit
    text = out.getvalue()
    assert "functions: success" in text
    assert "Run tracking failed: the database is read-only." in text
    # The step table shows what the untracked run did: 10 commissies created, 45 memberships.
    rows = {cells[0]: cells[1:7] for line in text.splitlines()
            if len(cells := [c.strip() for c in line.strip("│").split("│")]) == 8}
    assert rows["commissie-sync"] == ["success", "0", "10", "0", "0", "0"]
    assert rows["commissie-work-history-sync"] == ["success", "0", "45", "0", "0", "0"]
    assert rows["total"] == ["success", "", "55", "0", "0", "0"]
    assert not Run.objects.filter(pipeline="functions").exists()
    (spooled,) = pending_outcomes()

    # The database answers again: /health/ says an outcome is waiting until it is written.
    read_only.on = False
    health = client.get("/health/")
    assert health.status_code == 503 and "could not be recorded" in health.json()["tracking"]
    (run,) = apply_spooled_outcomes()
    assert not spooled.exists() and client.get("/health/").status_code == 200
    assert run.pipeline == "functions" and run.status == RunStatus.SUCCESS
    assert run.created > 0 and "the database is read-only" in run.message
    assert [s.name for s in run.steps.order_by("position")] == [
        "functions-download", "commissie-sync", "commissie-work-history-sync"]
    assert sum(s.created for s in run.steps.all()) == run.created
    (notification,) = Notification.objects.filter(event=AlertEvent.TRACKING)
    assert notification.run_id == run.pk and "read-only" in notification.body


def test_an_untracked_outcome_never_carries_a_secret(read_only, settings, tmp_path):
    settings.LAPOSTA_API_KEY = "lp-secret-9f8e7d6c5b4a"
    clear_secret_cache()

    @register("leaky")
    def leaky(run):
        with run.step("leaky-submit"):
            raise RuntimeError(f"rejected key {settings.LAPOSTA_API_KEY}")

    read_only.on = True
    try:
        outcome = run_pipeline("leaky")
    finally:
        unregister("leaky")
    assert outcome.status == RunStatus.FAILED and "rejected key" in outcome.message
    (spooled,) = pending_outcomes()
    assert "lp-secret" not in spooled.read_text() and "lp-secret" not in outcome.message
    read_only.on = False
    (run,) = apply_spooled_outcomes()
    assert "rejected key" in run.message and "lp-secret" not in run.message
    clear_secret_cache()


# --- 5. a broken database is visible ------------------------------------------------------------


@pytest.fixture
def writes_members():
    from pipelines.models import Member

    @register("writer")
    def writer(run):
        with run.step("writer-sync") as step:
            Member.objects.create(knvb_id="WRT0001", first_name="A", last_name="B")
            step.created()

    yield
    unregister("writer")


@pytest.mark.usefixtures("writes_members")
def test_a_read_only_database_fails_the_run_with_the_cause_and_records_it_afterwards(read_only, client):
    read_only.on = read_only.everywhere = True
    health = client.get("/health/")
    assert health.status_code == 503 and health.json() == {"status": "error", "database": "the database is read-only"}
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("runsync", "writer", stdout=out)
    assert exited.value.code == 1
    text = out.getvalue()
    assert "writer: failed" in text and "Run tracking failed: the database is read-only." in text
    assert "readonly" in text or "read-only transaction" in text  # the step's own error

    read_only.on = read_only.everywhere = False
    # The next run's start (or the reaper, or the alert checks) records it.
    reap_stale_runs()
    run = Run.objects.get(pipeline="writer")
    assert run.status == RunStatus.FAILED and "the database is read-only" in run.message
    assert run.steps.get().status == "failed"
    assert Notification.objects.filter(event=AlertEvent.TRACKING, run=run).exists()
    assert client.get("/health/").json() == {"status": "ok", "database": "ok"}


@pytest.mark.usefixtures("writes_members")
def test_a_run_whose_final_write_fails_ends_with_its_reason_not_abandoned(read_only, settings):
    @register("turns-readonly")
    def turns_readonly(run):
        with run.step("first") as step:
            step.created(3)
        read_only.on = True  # the tracker's connection stops accepting writes mid-run

    try:
        outcome = run_pipeline("turns-readonly")
    finally:
        unregister("turns-readonly")
    assert outcome.status == RunStatus.SUCCESS and outcome.created == 3
    assert outcome.tracking_problem == "the database is read-only"
    assert Run.objects.get(pk=outcome.pk).status == RunStatus.RUNNING  # what the database has now

    read_only.on = False
    # Long after: the reaper would abandon it, but the spooled outcome goes first.
    with time_machine.travel(datetime.now(tz=AMS) + timedelta(hours=1)):
        reap_stale_runs()
    run = Run.objects.get(pk=outcome.pk)
    assert run.status == RunStatus.SUCCESS and run.created == 3
    assert "the database is read-only" in run.message
    assert run.steps.get().status == "success"


# --- 3. `all` adds up, and 4. not configured is not success ------------------------------------------


@pytest.fixture
def all_run(export_dir, transactional_db):  # noqa: F811
    return run_pipeline("all")


def test_all_adds_up_its_children(all_run, admin_client):
    parent = all_run
    children = list(Run.objects.filter(parent=parent).order_by("id"))
    assert [c.pipeline for c in children] == ["people", "nikki", "teams", "functions", "discipline", "freescout"]
    for field in ("created", "updated", "skipped", "failed", "error_count"):
        assert getattr(parent, field) == sum(getattr(c, field) for c in children), field
    # Every error count is the number of RunError rows it stands for.
    for run in [parent, *children]:
        rows = RunError.objects.filter(run__in=[run, *Run.objects.filter(parent=run)]).count()
        assert run.error_count == rows, run.pipeline
    assert parent.error_count > 0

    html = admin_client.get(parent.get_absolute_url()).content.decode()
    assert f"Errors <span class=\"muted\">({parent.error_count})</span>" in html
    people = next(c for c in children if c.pipeline == "people")
    assert f'<a href="/runs/{people.pk}/">people #{people.pk}</a>' in html
    # Searchable like any run's errors, and a child's step filter shows that child's errors.
    one = RunError.objects.filter(run=people).exclude(identifier="").first()
    html = admin_client.get(parent.get_absolute_url(), {"q": one.identifier}).content.decode()
    assert one.identifier in html
    step = parent.steps.get(name="people")
    html = admin_client.get(parent.get_absolute_url(), {"step": step.pk}).content.decode()
    assert html.count(f"people #{people.pk}</a>") == min(people.error_count, 50)

    # The card, the admin and the API show the same sum, and the API lists those rows.
    html = admin_client.get(reverse("runs:overview")).content.decode()
    card = html.split('data-pipeline="all"')[1].split("</section>")[0]
    assert f"<dt>errors</dt><dd>{parent.error_count}</dd>" in card
    html = admin_client.get(reverse("admin:runs_run_change", args=[parent.pk])).content.decode()
    assert f"{parent.error_count} errors (with its child runs) on the dashboard" in html
    raw = ApiToken.generate()
    token = ApiToken(user=User.objects.get(username="admin"), name="test")
    token.set_token(raw)
    token.save()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    listed, url = 0, f"/api/runs/{parent.pk}/errors/?limit=100"
    while url:
        body = api.get(url).json()
        assert body["error_count"] == parent.error_count
        listed += len(body["results"])
        url = body["next"]
    assert listed == parent.error_count


def test_a_pipeline_with_nothing_configured_is_skipped_grey_and_quiet(all_run, admin_client, settings):
    freescout = Run.objects.get(parent=all_run, pipeline="freescout")
    assert freescout.status == RunStatus.SKIPPED and freescout.not_configured
    assert freescout.message == "Not configured: FREESCOUT_API_KEY is not set."
    # The parent's status is not made worse by a child with nothing to do.
    assert all_run.steps.get(name="freescout").status == "skipped"
    run = run_pipeline("freescout")
    assert run.status == RunStatus.SKIPPED and run.message == "Not configured: FREESCOUT_API_KEY is not set."

    html = admin_client.get(reverse("runs:overview")).content.decode()
    card = html.split('data-pipeline="freescout"')[1].split("</section>")[0]
    assert 'class="card card-not_configured" data-pipeline="freescout"' in html
    assert "badge-not_configured" in card and "Not configured" in card and "% successful" not in card
    assert "Not configured:" in admin_client.get(run.get_absolute_url()).content.decode()
    assert check_alerts() == [] or not Notification.objects.filter(pipeline="freescout").exists()
    assert {p["name"]: p["state"] for p in pipeline_states()}["freescout"] != "failed"


@pytest.mark.django_db(transaction=True)
def test_a_run_skipped_because_another_is_running_keeps_its_own_reason():
    holder = Run.objects.create(pipeline="clean", status=RunStatus.RUNNING)
    from django.utils import timezone
    Run.objects.filter(pk=holder.pk).update(heartbeat_at=timezone.now())
    skipped = run_pipeline("clean")
    assert skipped.status == RunStatus.SKIPPED and not skipped.not_configured
    assert skipped.message == f"Skipped: clean is already running (run #{holder.pk})."


# --- pages for `all` stay cheap ------------------------------------------------------------------------

T0 = local(2025, 3, 10, 14, 0)


def finished(pipeline, status, *, at, parent=None, **fields):
    return Run.objects.create(pipeline=pipeline, status=status, started_at=at, finished_at=at + timedelta(minutes=2),
                              duration_ms=120_000, parent=parent, **fields)


@pytest.mark.django_db(transaction=True)
def test_a_runs_list_and_run_page_stay_cheap_for_all(admin_client, django_assert_max_num_queries):
    parent = finished("all", RunStatus.PARTIAL, at=T0, error_count=120)
    for name in ("people", "nikki"):
        child = finished(name, RunStatus.PARTIAL, at=T0, parent=parent, error_count=60)
        RunStep.objects.create(run=parent, position=1 if name == "people" else 2, name=name,
                               detail={"child_run": child.pk})
        RunError.objects.bulk_create(RunError(run=child, pipeline=name, message=f"e{i}") for i in range(60))
    with django_assert_max_num_queries(10):
        html = admin_client.get(parent.get_absolute_url()).content.decode()
    assert "next →" in html
    html = admin_client.get(parent.get_absolute_url(), {"page": 3}).content.decode()
    assert "e59" in html and "next →" not in html
    assert User.objects.exists()
