"""Run now and cancel: the POST views (runs.action_views) and the services behind them."""

import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils.crypto import get_random_string
from django_q.conf import Conf
from django_q.models import OrmQ

from runs.models import Run
from runs.runner import run_pipeline
from runs.services import cancel_run, trigger_run
from tests.conftest import closing_connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def q_sync(settings, monkeypatch):
    # django-q2 reads Q_CLUSTER once, into Conf, when it is imported.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


def make_user(username, *perms, staff=True):
    user = get_user_model().objects.create_user(username, password="x", is_staff=staff)
    if perms:
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=perms))
    return user


class CsrfClient:
    """A client that enforces CSRF, with a valid token at hand."""

    def __init__(self, user=None):
        self.client = Client(enforce_csrf_checks=True)
        if user is not None:
            self.client.force_login(user)
        self.token = get_random_string(32)
        self.client.cookies["csrftoken"] = self.token

    def post(self, url, data=None, *, csrf=True):
        data = dict(data or {})
        if csrf:
            data["csrfmiddlewaretoken"] = self.token
        return self.client.post(url, data)

    def get(self, url):
        return self.client.get(url)


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def run_now_url(name="clean"):
    return reverse("runs:run-now", args=[name])


# --- run now -------------------------------------------------------------------------


@pytest.mark.usefixtures("q_sync")
def test_run_now_queues_the_pipeline_as_dashboard_with_the_user():
    user = make_user("ops", "trigger_run")
    response = CsrfClient(user).post(run_now_url("clean"))
    assert response.status_code == 302
    assert "queued" in texts(response)[0]
    run = Run.objects.get(pipeline="clean")
    assert (run.mode, run.triggered_by_id, run.status) == ("dashboard", user.pk, "success")
    assert run.task_id


def test_run_now_without_the_csrf_token_is_refused():
    response = CsrfClient(make_user("ops", "trigger_run")).post(run_now_url(), csrf=False)
    assert response.status_code == 403
    assert not OrmQ.objects.exists() and not Run.objects.exists()


def test_run_now_needs_the_permission():
    response = CsrfClient(make_user("viewer")).post(run_now_url())
    assert response.status_code == 403
    assert not OrmQ.objects.exists()


def test_run_now_sends_non_staff_to_the_login_page():
    for client in (CsrfClient(), CsrfClient(make_user("member", "trigger_run", staff=False))):
        response = client.post(run_now_url())
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    assert not OrmQ.objects.exists()


def test_run_now_by_get_is_not_allowed():
    assert CsrfClient(make_user("ops", "trigger_run")).get(run_now_url()).status_code == 405


def test_run_now_of_an_unknown_pipeline_is_404():
    assert CsrfClient(make_user("ops", "trigger_run")).post(run_now_url("nosuch")).status_code == 404


def test_run_now_refuses_a_pipeline_that_is_already_running():
    running = Run.objects.create(pipeline="clean")
    response = CsrfClient(make_user("ops", "trigger_run")).post(run_now_url("clean"))
    assert response.status_code == 302
    assert texts(response) == [f"clean is already running (run #{running.pk})."]
    assert not OrmQ.objects.exists()
    assert Run.objects.count() == 1


def test_run_now_refuses_a_pipeline_that_is_still_queued():
    # Not sync: the ORM broker keeps the task until a cluster takes it.
    user = make_user("ops", "trigger_run")
    client = CsrfClient(user)
    first = client.post(run_now_url("clean"))
    second = client.post(run_now_url("clean"))
    assert "queued" in texts(first)[-1] and "already queued" in texts(second)[-1]
    task = OrmQ.objects.get().task  # one task: the pipeline, as a dashboard run by the user
    assert (task["func"], task["args"], task["kwargs"]) == (
        "runs.tasks.run_pipeline_task", ("clean",), {"mode": "dashboard", "triggered_by_id": user.pk})
    assert not Run.objects.exists()  # queued, not run inside the request
    assert client.post(run_now_url("sample")).status_code == 302
    assert OrmQ.objects.count() == 2


def test_trigger_run_enqueues_only_after_commit():
    from django.db import transaction

    with transaction.atomic():
        result = trigger_run("clean")
        assert result.queued and result.task_id is None
        assert not OrmQ.objects.exists()
    assert OrmQ.objects.count() == 1


def test_run_now_goes_back_to_a_safe_next_or_the_pipeline_page():
    client = CsrfClient(make_user("ops", "trigger_run"))
    assert client.post(run_now_url("clean"), {"next": "/runs/?pipeline=clean"})["Location"] == "/runs/?pipeline=clean"
    OrmQ.objects.all().delete()
    response = client.post(run_now_url("clean"), {"next": "https://evil.example/"})
    assert response["Location"] == reverse("runs:pipeline", args=["clean"]) == "/pipelines/clean/"


# --- cancel --------------------------------------------------------------------------


def test_cancel_requests_the_stop_and_names_the_user():
    user = make_user("ops", "cancel_run")
    run = Run.objects.create(pipeline="slow")
    response = CsrfClient(user).post(reverse("runs:cancel", args=[run.pk]))
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert "Cancel requested" in texts(response)[0]
    run.refresh_from_db()
    assert run.cancel_requested_at is not None and run.cancel_requested_by_id == user.pk


def test_cancel_of_a_finished_run_changes_nothing():
    run = Run.objects.create(pipeline="slow", status="success")
    response = CsrfClient(make_user("ops", "cancel_run")).post(reverse("runs:cancel", args=[run.pk]))
    assert "is not running" in texts(response)[0]
    run.refresh_from_db()
    assert (run.cancel_requested_at, run.cancel_requested_by_id, run.status) == (None, None, "success")


def test_a_second_cancel_keeps_the_first_request():
    first, second = make_user("first", "cancel_run"), make_user("second", "cancel_run")
    run = Run.objects.create(pipeline="slow")
    CsrfClient(first).post(reverse("runs:cancel", args=[run.pk]))
    asked_at = Run.objects.get(pk=run.pk).cancel_requested_at
    response = CsrfClient(second).post(reverse("runs:cancel", args=[run.pk]))
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    run.refresh_from_db()
    assert (run.cancel_requested_at, run.cancel_requested_by_id, run.status) == (asked_at, first.pk, "running")


def test_cancel_needs_post_csrf_and_the_permission():
    run = Run.objects.create(pipeline="slow")
    url = reverse("runs:cancel", args=[run.pk])
    assert CsrfClient(make_user("viewer", "trigger_run")).post(url).status_code == 403
    allowed = CsrfClient(make_user("ops", "cancel_run"))
    assert allowed.get(url).status_code == 405
    assert allowed.post(url, csrf=False).status_code == 403
    assert CsrfClient().post(url).status_code == 302  # anonymous: to the login page
    run.refresh_from_db()
    assert run.cancel_requested_at is None
    assert allowed.post(reverse("runs:cancel", args=[run.pk + 1000])).status_code == 404


def test_cancel_stops_a_pipeline_running_elsewhere(monkeypatch):
    # The pipeline runs in another thread with its own connections, as in a
    # worker; the request only writes cancel_requested_at.
    monkeypatch.setenv("SLOW_SECONDS", "20")
    result = {}
    worker = threading.Thread(target=closing_connection(
        lambda: result.setdefault("run", run_pipeline("slow", mode="scheduled"))))
    worker.start()
    deadline = time.monotonic() + 15
    run = None
    while run is None and time.monotonic() < deadline:
        run = Run.objects.running().filter(pipeline="slow").first()
        threading.Event().wait(0.05)
    assert run is not None
    assert cancel_run(run, user=make_user("ops")) is True
    assert cancel_run(run) is False  # asked already
    worker.join(timeout=15)
    assert not worker.is_alive()
    assert result["run"].status == "cancelled"
    assert result["run"].steps.get().status == "cancelled"
