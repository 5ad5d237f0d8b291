"""A broken database never hides an outcome: runs end with their real status and cause.

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
from django.core.management import call_command
from django.db import connection
from django.db.backends.signals import connection_created

from runs.models import AlertEvent, Notification, Run, RunStatus
from runs.outcomes import apply_spooled_outcomes, pending_outcomes
from runs.pipeline import register, unregister
from runs.redact import clear_secret_cache
from runs.runner import reap_stale_runs, run_pipeline
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
