"""Run history admins: read-only, cheap on big tables, escaped, with guarded actions."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from runs.models import Run, RunError, RunStatus
from tests.runs.test_views import XSS, make_runs

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def admin_client(db):
    client = Client()
    user = User.objects.create_superuser("boss", password="pw-123-secret")
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(db):
    client = Client()
    """Staff who may view history but neither trigger nor cancel."""
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "view_runstep", "view_runerror"]))
    client.force_login(user)
    return client


CHANGELISTS = ["admin:runs_run_changelist", "admin:runs_runstep_changelist", "admin:runs_runerror_changelist"]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelists_render_with_badges_and_escape_exported_text(admin_client, name):
    run = make_runs(2)[0]
    RunError.objects.create(run=run, step_name="sync", identifier=XSS, message=f"bad {XSS}")
    Run.objects.filter(pk=run.pk).update(message=XSS)
    html = admin_client.get(reverse(name)).content.decode()
    assert XSS not in html
    if name.endswith("runerror_changelist"):
        assert ESCAPED in html
    else:
        assert 'class="badge badge-' in html


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelists_never_count_the_whole_table(admin_client, django_assert_max_num_queries, name):
    make_runs(5)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(reverse(name)).status_code == 200
    make_runs(120, start=timezone.now() - timedelta(days=800))
    with django_assert_max_num_queries(len(small.captured_queries)) as ctx:
        assert admin_client.get(reverse(name)).status_code == 200
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts


def test_history_is_read_only(admin_client):
    run = make_runs(1)[0]
    assert admin_client.get(reverse("admin:runs_run_add")).status_code == 403
    html = admin_client.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in html
    assert admin_client.post(reverse("admin:runs_run_delete", args=[run.pk])).status_code == 403


def test_run_page_shows_steps_and_only_the_first_errors(admin_client, django_assert_max_num_queries):
    run = make_runs(1, errors_per_run=300)[0]
    with django_assert_max_num_queries(20):
        html = admin_client.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()
    assert "step-1" in html and "step-2" in html
    assert re.search(r"bad row 19\b", html) and not re.search(r"bad row 20\b", html)
    assert f"?run__id__exact={run.pk}" in html
    assert run.get_absolute_url() in html
    assert "2 m 05 s" in html


def test_error_list_by_run_and_error_page_with_traceback(admin_client):
    run = make_runs(1, errors_per_run=0)[0]
    error = RunError.objects.create(run=run, step_name="sync", identifier="ABC12D3", message="m",
                                    traceback=f"Traceback {XSS}")
    other = make_runs(1)[0]
    html = admin_client.get(reverse("admin:runs_runerror_changelist"), {"run__id__exact": run.pk}).content.decode()
    assert "ABC12D3" in html and f"ID{other.pk:05d}" not in html
    html = admin_client.get(reverse("admin:runs_runerror_change", args=[error.pk])).content.decode()
    assert f"Traceback {ESCAPED}" in html and XSS not in html


@pytest.mark.parametrize(("term", "expect", "reject"), [
    ("ABC1", "ABC12D3", "XYZ9999"),          # identifier prefix
    ("ABC12D3", "ABC12D3", "XYZ9999"),       # exact
    ("message:photo", "XYZ9999", "ABC12D3"),  # message text, on request
])
def test_error_search(admin_client, term, expect, reject):
    run = make_runs(1, errors_per_run=0)[0]
    RunError.objects.create(run=run, step_name="sync", identifier="ABC12D3", message="no email")
    RunError.objects.create(run=run, step_name="sync", identifier="XYZ9999", message="photo upload failed")
    html = admin_client.get(reverse("admin:runs_runerror_changelist"), {"q": term}).content.decode()
    assert expect in html and reject not in html


def test_error_search_by_run_id(admin_client):
    runs = make_runs(2, errors_per_run=1)
    html = admin_client.get(reverse("admin:runs_runerror_changelist"), {"q": f"#{runs[0].pk}"}).content.decode()
    assert f"ID{runs[0].pk:05d}" in html and f"ID{runs[1].pk:05d}" not in html


def test_run_search_by_id_pipeline_and_message(admin_client):
    a = make_runs(1, pipeline="sample")[0]
    b = make_runs(1, pipeline="clean")[0]
    Run.objects.filter(pk=b.pk).update(message="export unreadable")
    url = reverse("admin:runs_run_changelist")
    assert f"#{a.pk}<" in admin_client.get(url, {"q": str(a.pk)}).content.decode()
    html = admin_client.get(url, {"q": "clean"}).content.decode()
    assert f"#{b.pk}<" in html and f"#{a.pk}<" not in html
    html = admin_client.get(url, {"q": "message:unreadable"}).content.decode()
    assert f"#{b.pk}<" in html and f"#{a.pk}<" not in html


def test_filters_and_date_hierarchy(admin_client):
    make_runs(2, pipeline="sample", start=timezone.now() - timedelta(days=500))
    make_runs(3, pipeline="clean", status=RunStatus.FAILED)
    url = reverse("admin:runs_run_changelist")
    html = admin_client.get(url, {"pipeline": "clean", "status__exact": "failed"}).content.decode()
    assert html.count("badge badge-failed") == 3 and "badge badge-partial" not in html
    html = admin_client.get(url).content.decode()
    this_year = timezone.localtime().year
    assert f"started_at__year={this_year}" in html and f"started_at__year={this_year - 1}" in html
    html = admin_client.get(url, {"started_at__year": this_year}).content.decode()
    assert "started_at__month=" in html


def test_actions_need_the_permissions(viewer_client, admin_client, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    done = make_runs(1)[0]
    running = Run.objects.create(pipeline="clean", status=RunStatus.RUNNING)
    url = reverse("admin:runs_run_changelist")
    html = viewer_client.get(url).content.decode()
    assert 'value="run_now"' not in html and 'value="cancel_runs"' not in html
    html = admin_client.get(url).content.decode()
    assert 'value="run_now"' in html and 'value="cancel_runs"' in html
    # Posted anyway, by someone without the permissions: nothing is queued or cancelled.
    with django_capture_on_commit_callbacks(execute=True):
        for action in ("run_now", "cancel_runs"):
            viewer_client.post(url, {"action": action, "_selected_action": [done.pk, running.pk]})
    assert not OrmQ.objects.exists()
    running.refresh_from_db()
    assert running.cancel_requested_at is None and running.status == RunStatus.RUNNING


def test_cancel_action_requests_cancel_of_running_runs(admin_client):
    running = Run.objects.create(pipeline="sample", status=RunStatus.RUNNING)
    done = make_runs(1, pipeline="clean")[0]
    response = admin_client.post(reverse("admin:runs_run_changelist"),
                                 {"action": "cancel_runs", "_selected_action": [running.pk, done.pk]}, follow=True)
    assert "Asked 1 running run(s) to stop." in response.content.decode()
    running.refresh_from_db()
    done.refresh_from_db()
    boss = User.objects.get(username="boss")
    # The running run is asked to stop, by the admin; it stops itself (its status changes when it does).
    assert running.cancel_requested_at is not None and running.cancel_requested_by_id == boss.pk
    assert running.status == RunStatus.RUNNING
    # A finished run is left as it was.
    assert done.cancel_requested_at is None and done.cancel_requested_by_id is None
    assert done.status == RunStatus.PARTIAL


def test_cancel_action_keeps_the_first_request(admin_client):
    first = User.objects.create_user("first", is_staff=True)
    running = Run.objects.create(pipeline="sample", status=RunStatus.RUNNING)
    assert running.request_cancel(user=first)
    asked_at = Run.objects.get(pk=running.pk).cancel_requested_at
    admin_client.post(reverse("admin:runs_run_changelist"), {"action": "cancel_runs",
                                                              "_selected_action": [running.pk]})
    running.refresh_from_db()
    assert (running.cancel_requested_at, running.cancel_requested_by_id) == (asked_at, first.pk)


def test_run_now_action_queues_each_pipeline_once_as_dashboard_run_by_the_user(
        admin_client, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    runs = [*make_runs(2, pipeline="clean"), *make_runs(1, pipeline="sample")]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(reverse("admin:runs_run_changelist"),
                                     {"action": "run_now", "_selected_action": [r.pk for r in runs]}, follow=True)
    assert [(m.level_tag, m.message) for m in response.context["messages"]] == [
        ("success", "clean queued; it starts as soon as a worker is free."),
        ("success", "sample queued; it starts as soon as a worker is free."),
    ]
    assert len(callbacks) == 2
    boss = User.objects.get(username="boss")
    tasks = sorted((q.task["args"], q.task["kwargs"], q.task["func"]) for q in OrmQ.objects.all())
    assert tasks == [
        (("clean",), {"mode": "dashboard", "triggered_by_id": boss.pk}, "runs.tasks.run_pipeline_task"),
        (("sample",), {"mode": "dashboard", "triggered_by_id": boss.pk}, "runs.tasks.run_pipeline_task"),
    ]
    assert Run.objects.count() == 3  # queued, not run inside the request


def test_run_now_action_skips_a_pipeline_that_is_no_longer_registered(
        admin_client, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    gone = make_runs(1, pipeline="retired-pipeline")[0]
    clean = make_runs(1, pipeline="clean")[0]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:runs_run_changelist"),
                                     {"action": "run_now", "_selected_action": [gone.pk, clean.pk]}, follow=True)
    assert ("error", "retired-pipeline is no longer a registered pipeline.") in [
        (m.level_tag, m.message) for m in response.context["messages"]]
    assert [q.task["args"] for q in OrmQ.objects.all()] == [("clean",)]


def test_dashboard_links_back_to_the_admin(client, db):
    user = User.objects.create_superuser("boss2", password="x")
    client.force_login(user)
    run = make_runs(1)[0]
    html = client.get(run.get_absolute_url()).content.decode()
    assert reverse("admin:runs_run_change", args=[run.pk]) in html


def test_error_list_filters_by_pipeline(admin_client):
    make_runs(1, pipeline="sample", errors_per_run=1)
    clean = make_runs(1, pipeline="clean", errors_per_run=1)[0]
    url = reverse("admin:runs_runerror_changelist")
    html = admin_client.get(url, {"pipeline": "clean"}).content.decode()
    assert html.count("bad row 0") == 1 and f"ID{clean.pk:05d}" in html
    html = admin_client.get(url, {"pipeline": "boom"}).content.decode()
    assert "bad row 0" not in html
