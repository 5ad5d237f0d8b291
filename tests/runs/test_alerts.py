import socket
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from werkzeug import Response

from runs.alerts import check_alerts
from runs.delivery import deliver_pending
from runs.models import AlertEvent, Notification, Run, RunError
from runs.pipeline import all_pipelines, register, unregister
from runs.tasks import run_alert_checks

pytestmark = pytest.mark.django_db

AMS = ZoneInfo("Europe/Amsterdam")
# A Monday, 14:00 in Amsterdam: `sample` (0 8 * * *) is due since 08:00 + 4 h grace.
T0 = datetime(2025, 3, 10, 14, 0, tzinfo=AMS)


def make_run(pipeline, status, *, started_at, duration_s=60, **fields):
    running = status == "running"
    return Run.objects.create(
        pipeline=pipeline,
        status=status,
        started_at=started_at,
        finished_at=None if running else started_at + timedelta(seconds=duration_s),
        duration_ms=None if running else duration_s * 1000,
        **fields,
    )


def events(pipeline=None):
    qs = Notification.objects.order_by("id")
    if pipeline is not None:
        qs = qs.filter(pipeline=pipeline)
    return [n.event for n in qs]


@pytest.fixture
def on_schedule():
    """Every scheduled pipeline except the named ones has a run that keeps it from being overdue."""

    def make(*overdue):
        for p in all_pipelines():
            if p.schedule and p.name not in overdue:
                make_run(p.name, "success", started_at=T0 + timedelta(days=365))

    return make


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _alert_settings(settings):
    settings.ALERT_EMAILS = ["ops@example.org"]
    settings.ALERT_WEBHOOK_URL = ""
    settings.ALERT_LONG_RUNNING_FACTOR = 3
    settings.ALERT_LONG_RUNNING_MIN_S = 300
    settings.ALERT_OVERDUE_COOLDOWN_S = 2 * 3600
    settings.ALERT_RETRY_S = 300
    settings.ALERT_MAX_ATTEMPTS = 3
    settings.SITE_URL = "https://sync.example.org"
    settings.ALERT_REMIND_HOURS = 24
    settings.ALERT_AFTER_FAILURES = 1


def test_a_failed_run_is_notified_once_while_the_pipeline_keeps_failing(frozen):
    make_run("boom", "failed", started_at=T0 - timedelta(hours=3))
    check_alerts()
    assert events("boom") == [AlertEvent.FAILED]
    make_run("boom", "failed", started_at=T0 - timedelta(hours=2))
    make_run("boom", "abandoned", started_at=T0 - timedelta(hours=1))
    check_alerts()
    check_alerts()
    assert events("boom") == [AlertEvent.FAILED]


def test_the_first_success_after_a_failure_is_a_recovery_and_later_ones_are_quiet(frozen):
    make_run("boom", "failed", started_at=T0 - timedelta(hours=3))
    check_alerts()
    make_run("boom", "success", started_at=T0 - timedelta(hours=2))
    check_alerts()
    make_run("boom", "success", started_at=T0 - timedelta(hours=1))
    check_alerts()
    assert events("boom") == [AlertEvent.FAILED, AlertEvent.RECOVERED]
    recovered = Notification.objects.get(event=AlertEvent.RECOVERED)
    assert "recovered" in recovered.subject


def test_a_healthy_first_sighting_and_cancelled_or_skipped_runs_are_not_notified(frozen):
    make_run("clean", "success", started_at=T0 - timedelta(hours=3))
    make_run("clean", "cancelled", started_at=T0 - timedelta(hours=2))
    make_run("clean", "skipped", started_at=T0 - timedelta(hours=1))
    check_alerts()
    assert events("clean") == []


def test_partial_is_notified_unless_the_pipeline_turned_it_off(frozen):
    make_run("soft", "partial", started_at=T0 - timedelta(hours=1))

    @register("quietpartial", alert_on_partial=False)
    def quietpartial(run):
        pass

    try:
        make_run("quietpartial", "partial", started_at=T0 - timedelta(hours=1))
        check_alerts()
    finally:
        unregister("quietpartial")
    assert events("soft") == [AlertEvent.PARTIAL]
    assert events("quietpartial") == []


def test_partial_then_failed_then_partial_is_each_a_change(frozen):
    for hours, status in ((3, "partial"), (2, "failed"), (1, "partial")):
        make_run("soft", status, started_at=T0 - timedelta(hours=hours))
        check_alerts()
    assert events("soft") == [AlertEvent.PARTIAL, AlertEvent.FAILED, AlertEvent.PARTIAL]


def test_overdue_pipelines_are_grouped_with_a_cooldown_that_restarts_when_the_set_changes(
    frozen, on_schedule, settings
):
    settings.ALERT_REMIND_HOURS = 0  # without reminders the overdue message repeats on its own cooldown

    @register("hourly", schedule="0 * * * *")
    def hourly(run):
        pass

    try:
        on_schedule("sample", "hourly")
        make_run("hourly", "success", started_at=T0 - timedelta(minutes=5))
        check_alerts()
        (first,) = Notification.objects.filter(event=AlertEvent.OVERDUE)
        assert first.payload["pipelines"][0]["name"] == "sample"
        assert [p["name"] for p in first.payload["pipelines"]] == ["sample"]

        frozen.move_to(T0 + timedelta(hours=1))
        check_alerts()
        assert Notification.objects.filter(event=AlertEvent.OVERDUE).count() == 1

        # 19:30: hourly's due slot (15:00, 4 h grace) is after its last start (13:55).
        frozen.move_to(T0 + timedelta(hours=5, minutes=30))
        check_alerts()
        overdue = list(Notification.objects.filter(event=AlertEvent.OVERDUE).order_by("id"))
        assert len(overdue) == 2
        assert [p["name"] for p in overdue[1].payload["pipelines"]] == ["hourly", "sample"]
        assert "hourly" in overdue[1].body and "sample" in overdue[1].body

        # Same set: quiet until the cooldown (2 h) from the change has passed.
        frozen.move_to(T0 + timedelta(hours=7, minutes=20))
        check_alerts()
        assert Notification.objects.filter(event=AlertEvent.OVERDUE).count() == 2
        frozen.move_to(T0 + timedelta(hours=7, minutes=31))
        check_alerts()
        assert Notification.objects.filter(event=AlertEvent.OVERDUE).count() == 3
    finally:
        unregister("hourly")


def test_no_overdue_message_when_nothing_is_overdue(frozen, on_schedule):
    on_schedule()
    check_alerts()
    assert not Notification.objects.filter(event=AlertEvent.OVERDUE).exists()


def test_a_long_running_run_is_notified_once(frozen):
    for day in range(1, 6):
        make_run("clean", "success", started_at=T0 - timedelta(days=day), duration_s=60)
    running = make_run("clean", "running", started_at=T0 - timedelta(minutes=4))
    check_alerts()
    assert events("clean") == []  # 4 min: past 3 x 1 min, but not past the 5 min floor
    frozen.move_to(T0 + timedelta(minutes=2))
    check_alerts()
    check_alerts()
    (notification,) = Notification.objects.filter(event=AlertEvent.LONG_RUNNING)
    assert notification.run_id == running.pk
    assert "usually takes 1 m 00 s" in notification.body


def test_a_run_without_history_is_never_long_running(frozen):
    make_run("clean", "running", started_at=T0 - timedelta(hours=5))
    check_alerts()
    assert events("clean") == []


def test_the_webhook_gets_the_run_payload_and_the_mail_is_sent(frozen, on_schedule, httpserver, settings):
    on_schedule()
    settings.ALERT_WEBHOOK_URL = httpserver.url_for("/hook/secret-token")
    httpserver.expect_oneshot_request("/hook/secret-token", method="POST").respond_with_json({"ok": True})
    run = make_run("boom", "failed", started_at=T0 - timedelta(minutes=10), duration_s=125,
                   created=2, updated=1, skipped=3, failed=12, error_count=12, message="the export is unreadable")
    RunError.objects.bulk_create(
        RunError(run=run, step_name="boom-sync", identifier=f"AB{i:05d}", identifier_kind="knvb_id",
                 message=f"bad row {i}")
        for i in range(12)
    )
    check_alerts()
    result = deliver_pending()
    httpserver.check_assertions()
    assert result.sent == 1
    (request, _response), = httpserver.log
    payload = request.get_json()
    assert payload["event"] == "failed"
    assert payload["pipeline"] == "boom" and payload["run_id"] == run.pk and payload["status"] == "failed"
    assert payload["counts"] == {"created": 2, "updated": 1, "skipped": 3, "failed": 12, "errors": 12}
    assert payload["duration_ms"] == 125_000
    assert len(payload["errors"]) == 10
    assert payload["errors"][0] == {"identifier": "AB00000", "identifier_kind": "knvb_id", "step": "boom-sync",
                                    "message": "bad row 0"}
    assert payload["url"] == f"https://sync.example.org/runs/{run.pk}/"
    (message,) = mail.outbox
    assert message.to == ["ops@example.org"]
    assert "boom failed" in message.subject
    assert "AB00000 (knvb_id)" in message.body and payload["url"] in message.body
    notification = Notification.objects.get()
    assert notification.status == "sent" and notification.email_sent_at and notification.webhook_sent_at


def test_a_failing_webhook_is_recorded_and_retried_later_without_resending_the_mail(
    frozen, on_schedule, httpserver, settings
):
    on_schedule()
    settings.ALERT_WEBHOOK_URL = httpserver.url_for("/hook/secret-token")
    httpserver.expect_ordered_request("/hook/secret-token", method="POST").respond_with_response(
        Response("down", status=503))
    httpserver.expect_ordered_request("/hook/secret-token", method="POST").respond_with_json({})
    make_run("boom", "failed", started_at=T0 - timedelta(minutes=10))
    summary = run_alert_checks()
    assert "retrying 1" in summary
    notification = Notification.objects.get()
    assert notification.status == "pending" and notification.attempts == 1
    assert notification.last_error == "webhook: HTTP 503"
    assert "secret-token" not in notification.last_error
    assert notification.email_sent_at is not None and len(mail.outbox) == 1

    assert deliver_pending().sent == 0  # not due yet
    frozen.move_to(T0 + timedelta(minutes=6))
    assert deliver_pending().sent == 1
    httpserver.check_assertions()
    notification.refresh_from_db()
    assert notification.status == "sent" and notification.webhook_sent_at is not None
    assert len(mail.outbox) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_mail_server_is_retried_then_given_up_and_never_raises(frozen, on_schedule, settings):
    on_schedule()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2
    make_run("boom", "failed", started_at=T0 - timedelta(minutes=10))
    check_alerts()
    for attempt in range(1, 4):
        deliver_pending()
        notification = Notification.objects.get()
        assert notification.attempts == attempt
        assert notification.last_error.startswith("mail: ConnectionRefusedError")
        frozen.shift(timedelta(hours=1))
    assert notification.status == "failed"
    deliver_pending()
    assert Notification.objects.get().attempts == 3


def test_without_channels_an_alert_is_logged_and_marked_sent(frozen, on_schedule, settings, caplog):
    on_schedule()
    settings.ALERT_EMAILS = []
    make_run("boom", "failed", started_at=T0 - timedelta(minutes=10))
    check_alerts()
    assert deliver_pending().sent == 1
    assert "boom failed" in caplog.text
