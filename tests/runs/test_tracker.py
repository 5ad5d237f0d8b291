import logging

import pytest
from django.db import connection

from runs.models import Run, RunError, RunStep
from runs.redact import clear_secret_cache
from runs.tracker import RunTracker, compute_run_status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tracker():
    t = RunTracker("people", mode="manual")
    assert t.start_run() is not None
    yield t
    t.end_run()


def errors_of(run_id):
    return list(RunError.objects.filter(run_id=run_id).order_by("id"))


def test_it_records_a_run_with_steps_and_counts():
    t = RunTracker("people", mode="scheduled")
    run_id = t.start_run()
    sid = t.start_step("sportlink-download")
    t.end_step(sid, status="success", read=12)
    sid2 = t.start_step("rondo-club-sync")
    t.end_step(sid2, status="success", created=3, updated=2, skipped=7, failed=0, detail={"batches": 1})
    assert t.end_run() == "success"

    run = Run.objects.get(pk=run_id)
    assert (run.status, run.mode, run.created, run.updated, run.skipped, run.failed) == (
        "success", "scheduled", 3, 2, 7, 0)
    assert run.finished_at is not None and run.duration_ms is not None
    steps = list(RunStep.objects.filter(run=run).order_by("position"))
    assert [(s.position, s.name, s.status, s.read, s.created) for s in steps] == [
        (1, "sportlink-download", "success", 12, 0),
        (2, "rondo-club-sync", "success", 0, 3),
    ]
    assert steps[1].detail == {"batches": 1}
    assert steps[0].duration_ms is not None


def test_record_errors_with_a_count_records_one_error(tracker):
    sid = tracker.start_step("rondo-club-sync")
    tracker.record_errors("rondo-club-sync", sid, 3)
    tracker.end_step(sid, status="partial", failed=3)
    tracker.end_run()
    (error,) = errors_of(tracker.run_id)
    assert error.message == "Step reported 3 errors"
    assert error.step.name == "rondo-club-sync"
    assert Run.objects.get(pk=tracker.run_id).status == "partial"


@pytest.mark.parametrize("nothing", [0, None, []])
def test_record_errors_with_nothing_records_nothing(tracker, nothing):
    tracker.record_errors("step", None, nothing)
    tracker.end_run()
    assert errors_of(tracker.run_id) == []
    assert Run.objects.get(pk=tracker.run_id).status == "success"


def test_identifier_precedence_and_message_fallbacks(tracker):
    tracker.record_errors("sync", None, [
        {"email": "a@example.org", "knvb_id": "ABC12D3", "message": "first"},
        {"email": "b@example.org", "dossier_id": "T-1", "error": "second"},
        {"dossier_id": "T-2", "team_name": "JO11-1"},
        {"team_name": "JO11-1", "commissie_name": "Jeugd", "message": "fourth"},
        {"commissie_name": "Jeugd", "message": "fifth"},
        {"message": "sixth"},
    ])
    tracker.end_run()
    got = [(e.identifier, e.identifier_kind, e.message) for e in errors_of(tracker.run_id)]
    assert got == [
        ("ABC12D3", "knvb_id", "first"),
        ("b@example.org", "email", "second"),
        ("T-2", "dossier_id", "Unknown error"),
        ("JO11-1", "team", "fourth"),
        ("Jeugd", "commissie", "fifth"),
        ("", "", "sixth"),
    ]


def test_identifier_precedence_is_configurable():
    t = RunTracker("discipline", identifier_keys=("dossier_id", "knvb_id"))
    t.start_run()
    t.record_errors("discipline-sync", None, [{"knvb_id": "ABC12D3", "dossier_id": "T-12345", "message": "x"}])
    t.end_run()
    (error,) = errors_of(t.run_id)
    assert (error.identifier, error.identifier_kind) == ("T-12345", "dossier_id")


def test_an_exception_item_gives_its_text_and_traceback(tracker):
    def fail():
        raise ValueError("geboortedatum is not a date")

    try:
        fail()
    except ValueError as exc:
        tracker.record_errors("sync", None, [exc])
    tracker.end_run()
    (error,) = errors_of(tracker.run_id)
    assert error.message == "geboortedatum is not a date"
    assert "Traceback (most recent call last)" in error.traceback
    assert 'in fail' in error.traceback
    assert error.traceback.rstrip().endswith("ValueError: geboortedatum is not a date")


def test_messages_and_tracebacks_are_truncated(tracker):
    tracker.record_error(message="m" * 5000, traceback="t" * 20000 + "ValueError: end")
    tracker.end_run()
    (error,) = errors_of(tracker.run_id)
    assert len(error.message) == 2000
    assert len(error.traceback) <= 8000
    assert error.traceback.endswith("ValueError: end")
    assert "characters cut" in error.traceback


def test_secrets_are_redacted_before_storage(settings):
    settings.LAPOSTA_API_KEY = "JdMtbsMq2jqJdQZD9AHC"
    clear_secret_cache()
    try:
        t = RunTracker("people")
        t.start_run()
        t.record_error(
            identifier="ABC12D3",
            message="POST https://bob:hunter22@api.example.org/v2/member?api_key=abc123def failed",
            traceback=(
                "httpx.HTTPStatusError: Authorization: Bearer eyJhbGciOi.secret.part\n"
                "auth=('JdMtbsMq2jqJdQZD9AHC', '')\n"
                '{"password": "p4ssw0rd!", "token": "tok_live_123"}'
            ),
        )
        t.end_run(summary={"note": "ok"})
        (error,) = errors_of(t.run_id)
    finally:
        clear_secret_cache()
    stored = error.message + error.traceback
    for secret in ("hunter22", "abc123def", "eyJhbGciOi", "JdMtbsMq2jqJdQZD9AHC", "p4ssw0rd!", "tok_live_123"):
        assert secret not in stored
    assert "https://***:***@api.example.org" in error.message
    assert error.identifier == "ABC12D3"


def test_end_run_accepts_booleans():
    ok = RunTracker("people")
    ok.start_run()
    ok.record_error(message="one member failed")
    assert ok.end_run(True) == "partial"  # True: computed from what was recorded
    bad = RunTracker("nikki")
    bad.start_run()
    assert bad.end_run(False) == "failed"
    assert Run.objects.get(pk=bad.run_id).status == "failed"


def test_bad_arguments_are_logged_not_raised(tracker, caplog):
    caplog.set_level(logging.WARNING, logger="runs.tracker")
    tracker.end_step(9999, status="success")
    sid = tracker.start_step("x")
    tracker.end_step(sid, status="not-a-status")
    tracker.record_errors("x", sid, True)
    tracker.record_error(step_id="nonsense", message=object())
    assert tracker.end_run() == "partial"
    assert "unknown step" in caplog.text
    assert "run tracking failed in end_step" in caplog.text


def test_a_tracker_whose_writes_fail_changes_nothing_for_the_caller(caplog):
    caplog.set_level(logging.ERROR, logger="runs.tracker")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE runs_runerror RENAME TO runs_runerror_away")
    try:
        t = RunTracker("people")
        t.start_run()
        sid = t.start_step("sync")
        t.record_errors("sync", sid, [{"knvb_id": "ABC12D3", "message": "boom"}] * 50)
        t.end_step(sid, status="partial", failed=50)
        assert t.end_run() == "partial"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE runs_runerror_away RENAME TO runs_runerror")
    assert "run tracking" in caplog.text
    # What could be written, was: the run and its step are there.
    assert RunStep.objects.filter(run_id=t.run_id, name="sync").exists()


def test_a_missing_run_table_leaves_the_tracker_inert(caplog):
    caplog.set_level(logging.ERROR)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE runs_run RENAME TO runs_run_away")
    try:
        t = RunTracker("people")
        assert t.start_run() is None
        sid = t.start_step("sync")
        t.record_errors("sync", sid, 3)
        t.end_step(sid, status="success")
        t.end_run()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE runs_run_away RENAME TO runs_run")
    assert "run tracking failed in start_run" in caplog.text


def test_the_heartbeat_and_live_counters_are_flushed_while_running():
    t = RunTracker("people", flush_interval=0.01)
    run_id = t.start_run()
    sid = t.start_step("sync")
    t.steps[sid].created = 5
    # The writer flushes on its own; wait for it (bounded) without sleeping.
    for _ in range(500):
        step = RunStep.objects.filter(run_id=run_id).first()
        if step is not None and step.created == 5:
            break
        t._queue.put(("noop",))
        t.cancel_event.wait(0.01)
    run = Run.objects.get(pk=run_id)
    assert step.created == 5 and step.status == "running"
    assert run.created == 5 and run.heartbeat_at is not None and run.status == "running"
    t.end_run()


@pytest.mark.parametrize(
    ("steps", "errors", "children", "expected"),
    [
        (["success", "skipped"], 0, [], "success"),
        (["success", "partial"], 0, [], "partial"),
        (["success"], 2, [], "partial"),
        (["failed", "success"], 0, [], "partial"),
        (["success"], 0, ["success", "failed", "partial"], "failed"),
        (["success"], 0, ["success", "skipped"], "partial"),
        (["success"], 0, ["abandoned"], "failed"),
        (["success"], 0, ["success", "cancelled"], "cancelled"),
        (["success"], 0, ["partial", "cancelled", "skipped"], "cancelled"),
        (["success"], 0, ["cancelled", "failed"], "failed"),
        (["success"], 0, ["skipped"], "partial"),
        (["success", "partial"], 0, ["success"], "partial"),
        ([], 0, [], "success"),
        # Every step skipped (nothing configured): skipped, unless an error or a child says otherwise.
        (["skipped", "skipped"], 0, [], "skipped"),
        (["skipped"], 1, [], "partial"),
        (["skipped"], 0, ["skipped"], "partial"),  # a child held by the lock
        (["skipped"], 0, ["partial"], "partial"),
        # A child status the ranking does not know (one still running) never makes the parent worse.
        (["success"], 0, ["running", "queued"], "success"),
        (["success", "partial"], 0, ["running"], "partial"),
    ],
)
def test_compute_run_status(steps, errors, children, expected):
    assert compute_run_status(steps, errors, children) == expected


def test_an_empty_identifier_is_not_present_in_the_precedence():
    from types import SimpleNamespace

    from pipelines.records import MemberRecord

    t = RunTracker("people")
    assert t.identify({"knvb_id": "", "email": "a@example.org"}) == ("a@example.org", "email")
    assert t.identify({"knvb_id": None, "email": "", "team_name": "JO11-1"}) == ("JO11-1", "team")
    assert t.identify({"knvb_id": "", "email": ""}) == ("", "")
    assert t.identify(SimpleNamespace(knvb_id="", email="b@example.org")) == ("b@example.org", "email")
    assert t.identify(MemberRecord(knvb_id="", email="c@example.org")) == ("c@example.org", "email")
    assert t.identify(SimpleNamespace(knvb_id=None, commissie_name="Bestuur")) == ("Bestuur", "commissie")
    assert t.identify(SimpleNamespace(other="x")) == ("", "")
    assert t.identify({"identifier": "row 7", "identifier_kind": "row", "knvb_id": "ABC12D3"}) == ("row 7", "row")
    assert t.identify({"identifier": "row 7", "knvb_id": "ABC12D3"}) == ("row 7", "")
    assert t.identify({"identifier": "", "knvb_id": "ABC12D3"}) == ("ABC12D3", "knvb_id")
    assert t.identify("ABC12D3") == ("ABC12D3", "") and t.identify(None) == ("", "")


def test_record_errors_skips_an_empty_identifier_for_the_next_key(tracker):
    tracker.record_errors("sync", None, [{"knvb_id": "", "email": "a@example.org", "message": "bad"}])
    tracker.end_run()
    (error,) = errors_of(tracker.run_id)
    assert (error.identifier, error.identifier_kind, error.message) == ("a@example.org", "email", "bad")


def test_run_totals_add_up_every_step():
    t = RunTracker("people")
    t.start_run()
    first = t.start_step("rondo-club-sync")
    t.end_step(first, status="partial", created=3, updated=1, skipped=2, failed=1)
    second = t.start_step("photo-sync")
    t.end_step(second, status="success", created=4, updated=5, skipped=6, failed=0)
    assert t.totals() == {"created": 7, "updated": 6, "skipped": 8, "failed": 1}
    assert t.end_run() == "partial"
    run = Run.objects.get(pk=t.run_id)
    assert (run.created, run.updated, run.skipped, run.failed) == (7, 6, 8, 1)


def test_the_run_row_records_who_what_and_where(django_user_model):
    import os
    import socket

    user = django_user_model.objects.create_user("ops")
    parent = Run.objects.create(pipeline="all", status="success")
    t = RunTracker("people", mode="api", parent_id=parent.pk, triggered_by_id=user.pk, dry_run=True, task_id="t-1")
    run_id = t.start_run()
    t.end_run(summary={"members": 3})
    run = Run.objects.get(pk=run_id)
    assert (run.pipeline, run.mode, run.parent_id, run.triggered_by_id, run.dry_run, run.task_id) == (
        "people", "api", parent.pk, user.pk, True, "t-1")
    assert (run.host, run.pid, run.started_at, run.summary) == (
        socket.gethostname()[:255], os.getpid(), t.started_at, {"members": 3})
    assert run.heartbeat_at >= run.started_at and run.finished_at >= run.started_at


def test_a_second_start_while_running_records_a_skipped_run_naming_the_holder():
    holder = Run.objects.create(pipeline="people", status="running")
    t = RunTracker("people", mode="scheduled")
    assert t.start_run() is None
    assert (t.held_by, t.status) == (holder.pk, "skipped")
    skipped = Run.objects.get(pk=t.run_id)
    assert (skipped.status, skipped.mode, skipped.duration_ms, skipped.summary) == (
        "skipped", "scheduled", 0, {"held_by": holder.pk})
    assert skipped.finished_at == skipped.started_at == t.started_at
    assert skipped.message == f"Skipped: people is already running (run #{holder.pk})."
    t.record_error(message="ignored")  # nothing is recorded on a run that never started
    assert errors_of(t.run_id) == []


def test_end_run_after_a_refused_start_keeps_the_run_skipped():
    holder = Run.objects.create(pipeline="people", status="running")
    t = RunTracker("people")
    assert t.start_run() is None and t.held_by == holder.pk
    status = t.end_run()
    assert Run.objects.get(pk=t.run_id).status == "skipped"
    assert status == "skipped"


def test_error_fields_are_cut_to_their_columns(tracker):
    sid = tracker.start_step("s" * 150)
    tracker.record_error(step_id=sid, identifier="i" * 300, identifier_kind="k" * 40, message="")
    tracker.record_error(step_name="other", identifier=None, message=None)
    tracker.record_error(step_id=sid, identifier=12345, message=ValueError("bad"))
    tracker.end_run()
    first, second, third = errors_of(tracker.run_id)
    assert (first.step_name, first.identifier, first.identifier_kind, first.message) == (
        "s" * 100, "i" * 255, "k" * 32, "Unknown error")
    assert first.step.name == "s" * 100
    assert (second.step_name, second.identifier, second.message, second.step_id) == ("other", "", "Unknown error",
                                                                                     None)
    assert (third.identifier, third.message) == ("12345", "bad")
    assert tracker.error_count == 3


def test_a_skipped_step_keeps_its_reason_redacted_and_cut():
    t = RunTracker("people")
    t.start_run()
    t.skip_step("laposta-submit", "LAPOSTA_API_KEY is not set")
    sid = t.start_step("sync")
    t.end_step(sid, status="failed", reason="token=abc123secret " + "x" * 3000)
    t.end_run()
    steps = {s.name: s for s in RunStep.objects.filter(run_id=t.run_id)}
    assert (steps["laposta-submit"].status, steps["laposta-submit"].reason) == ("skipped", "LAPOSTA_API_KEY is not set")
    reason = steps["sync"].reason
    assert reason.startswith("token=*** x") and "abc123secret" not in reason and len(reason) == 2000
    assert steps["sync"].finished_at is not None and steps["sync"].duration_ms >= 0


def test_end_run_without_waiting_is_committed_after_wait_written():
    t = RunTracker("people")
    run_id = t.start_run()
    sid = t.start_step("sync")
    t.record_errors("sync", sid, [{"knvb_id": f"ABC{i}", "message": "bad"} for i in range(50)])
    t.end_step(sid, status="partial", failed=50)
    assert t.end_run(wait=False) == "partial"
    t.wait_written()
    assert t.final_written
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.error_count, run.failed) == ("partial", 50, 50)
    assert len(errors_of(run_id)) == 50
    t.wait_written()  # again: nothing left to wait for


def test_a_childs_errors_show_in_the_parents_live_error_count_while_it_runs():
    t = RunTracker("all", flush_interval=0.01)
    run_id = t.start_run()
    t.add_child_errors(3)
    t.add_child_errors(0)
    # The writer flushes on its own; wait for it (bounded) without sleeping.
    for _ in range(500):
        if Run.objects.get(pk=run_id).error_count == 3:
            break
        t.cancel_event.wait(0.01)
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.error_count) == ("running", 3)
    assert t.end_run() == "partial"
    assert Run.objects.get(pk=run_id).error_count == 3


def test_a_run_asked_to_stop_shows_it_in_the_flag_its_items_read():
    from runs.tracker import CancelEvent

    tracker = RunTracker("flag")
    assert isinstance(tracker.cancel_event, CancelEvent) and tracker.cancel_event.flag is False
    tracker.cancel_event.set()
    assert tracker.cancel_event.flag is True and tracker.cancel_event.is_set()
