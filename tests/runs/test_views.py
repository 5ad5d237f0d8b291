"""Dashboard pages: access, content, filters, export, escaping, query counts."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from runs.models import Run, RunError, RunStatus, RunStep, StepStatus
from runs.permissions import ensure_volunteers_group
from runs.runner import run_pipeline

XSS = "<script>alert(1)</script>"


@pytest.fixture
def staff(db):
    user = User.objects.create_user("volunteer", password="pw-123-secret", is_staff=True)
    user.groups.add(ensure_volunteers_group())
    return User.objects.get(pk=user.pk)


def grant_view(user):
    """The dashboard's view permissions, nothing else."""
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs",
                                                         codename__in=["view_run", "view_runerror"]))


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def make_runs(n, *, pipeline="sample", errors_per_run=2, status=RunStatus.PARTIAL, start=None):
    """History rows straight through the ORM, for volume."""
    start = start or timezone.now() - timedelta(days=n)
    runs = Run.objects.bulk_create([
        Run(pipeline=pipeline, status=status, mode="scheduled", started_at=start + timedelta(hours=i),
            finished_at=start + timedelta(hours=i, seconds=125), duration_ms=125_000 + i, created=i, updated=1,
            error_count=errors_per_run)
        for i in range(n)
    ])
    steps = RunStep.objects.bulk_create([
        RunStep(run=run, position=pos, name=f"step-{pos}", status=StepStatus.SUCCESS, started_at=run.started_at,
                finished_at=run.finished_at, duration_ms=60_000)
        for run in runs for pos in (1, 2)
    ])
    RunError.objects.bulk_create([
        RunError(run=step.run, pipeline=step.run.pipeline, step=step, step_name=step.name,
                 identifier=f"ID{step.run_id:05d}",
                 identifier_kind="knvb_id", message=f"bad row {k}", traceback="Traceback: here",
                 created_at=step.run.started_at)
        for step in steps if step.position == 2 for k in range(errors_per_run)
    ])
    return runs


PAGES = [
    ("runs:overview", []),
    ("runs:list", []),
    ("runs:export", []),
    ("runs:errors", []),
    ("runs:pipeline", ["sample"]),
]


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_anonymous_users_are_sent_to_the_admin_login_and_back(client, db, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
    assert "next=" in response.url


def test_run_detail_needs_staff(client, db):
    run = make_runs(1)[0]
    user = User.objects.create_user("member", password="pw-123-secret", is_staff=False)
    client.force_login(user)
    response = client.get(reverse("runs:detail", args=[run.pk]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_login_through_the_admin_redirects_back(client, staff):
    url = reverse("runs:list")
    response = client.post(reverse("admin:login") + f"?next={url}",
                           {"username": "volunteer", "password": "pw-123-secret", "next": url})
    assert response.status_code == 302
    assert response.url == url
    assert client.get(url).status_code == 200


def test_every_page_has_the_nav_and_a_logout_form(staff_client):
    run = make_runs(1)[0]
    for url in [reverse("runs:overview"), reverse("runs:list"), reverse("runs:errors"),
                reverse("runs:pipeline", args=["sample"]), run.get_absolute_url()]:
        html = staff_client.get(url).content.decode()
        assert f'action="{reverse("admin:logout")}"' in html, url
        assert 'method="post"' in html
        assert reverse("runs:errors") in html and reverse("runs:list") in html


@pytest.mark.django_db(transaction=True)
def test_overview_shows_a_card_per_pipeline_with_the_last_run(client):
    user = User.objects.create_user("v", password="x", is_staff=True)
    grant_view(user)
    client.force_login(user)
    run = run_pipeline("sample")
    assert run.status == RunStatus.PARTIAL
    html = client.get(reverse("runs:overview")).content.decode()
    assert 'data-pipeline="sample"' in html
    assert "card-partial" in html
    assert run.get_absolute_url() in html
    assert 'data-pipeline="clean"' in html and "Never run" in html
    assert "0% successful" in html  # one partial run of one finished
    assert "<time datetime=" in html


def test_overview_shows_the_success_rate_and_sparkline(staff_client):
    make_runs(4, status=RunStatus.SUCCESS)
    make_runs(1, status=RunStatus.FAILED, start=timezone.now() - timedelta(minutes=5))
    html = staff_client.get(reverse("runs:overview")).content.decode()
    assert "80% successful" in html
    assert '<svg class="sparkline"' in html
    assert "card-failed" in html


def test_overview_shows_running_progress_that_polls(staff_client):
    run = Run.objects.create(pipeline="sample", status=RunStatus.RUNNING)
    RunStep.objects.create(run=run, position=1, name="sample-sync", total=10, created=4)
    html = staff_client.get(reverse("runs:overview")).content.decode()
    assert "Running since" in html
    assert 'hx-trigger="every 2s"' in html
    assert reverse("runs:progress", args=[run.pk]) in html
    assert '<progress max="10" value="4"></progress> 4 / 10' in html


def test_progress_partial_asks_for_a_refresh_once_the_run_finished(staff_client):
    run = make_runs(1)[0]
    response = staff_client.get(reverse("runs:progress", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert response["HX-Refresh"] == "true"
    assert "hx-trigger" not in response.content.decode()


def test_runs_list_filters_and_sorts(staff_client):
    make_runs(3, pipeline="sample", status=RunStatus.SUCCESS)
    make_runs(2, pipeline="clean", status=RunStatus.FAILED)
    html = staff_client.get(reverse("runs:list"), {"pipeline": "clean"}).content.decode()
    assert html.count('class="row-failed') == 2
    assert "row-success" not in html
    html = staff_client.get(reverse("runs:list"), {"status": "success"}).content.decode()
    assert html.count('class="row-success') == 3
    html = staff_client.get(reverse("runs:list"), {"sort": "duration_ms"}).content.decode()
    assert "2 m 05 s" in html
    future = (timezone.localdate() + timedelta(days=2)).isoformat()
    html = staff_client.get(reverse("runs:list"), {"since": future}).content.decode()
    assert "No runs match." in html


def test_runs_list_links_child_runs_to_their_parent(staff_client):
    parent = make_runs(1, pipeline="family")[0]
    child = Run.objects.create(pipeline="sample", parent=parent, status=RunStatus.SUCCESS)
    html = staff_client.get(reverse("runs:list")).content.decode()
    assert f"↑ #{parent.pk}" in html
    assert child.get_absolute_url() in html


def test_runs_list_does_not_count_the_table(staff_client, django_assert_max_num_queries):
    make_runs(120)
    with django_assert_max_num_queries(6) as ctx:
        response = staff_client.get(reverse("runs:list"))
    assert response.status_code == 200
    assert not any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)
    assert "?page=2" in response.content.decode() or "page=2" in response.content.decode()


def test_export_streams_the_filtered_runs_as_neutralised_csv(staff_client):
    make_runs(2, pipeline="clean")
    run = make_runs(1, pipeline="sample")[0]
    Run.objects.filter(pk=run.pk).update(message="=HYPERLINK(\"http://evil\")")
    response = staff_client.get(reverse("runs:export"), {"pipeline": "sample"})
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["id", "pipeline", "parent_id"]
    assert len(rows) == 2
    assert rows[1][1] == "sample"
    assert rows[1][-1] == "'=HYPERLINK(\"http://evil\")"


@pytest.mark.parametrize("value", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\r=1+2"])
def test_csv_cells_that_look_like_formulas_are_neutralised(value):
    from runs.views import csv_cell

    assert csv_cell(value) == "'" + value
    assert csv_cell("plain") == "plain"
    assert csv_cell(12) == "12"


@pytest.mark.django_db(transaction=True)
def test_run_detail_shows_steps_errors_and_tracebacks(client):
    user = User.objects.create_user("v", password="x", is_staff=True)
    grant_view(user)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["trigger_run", "cancel_run"]))
    client.force_login(user)
    run = run_pipeline("sample")
    html = client.get(run.get_absolute_url()).content.decode()
    for step in ("sample-download", "sample-sync", "sample-submit"):
        assert step in html
    assert "SAMPLE_API_KEY is not set" in html
    assert '<div class="timeline">' in html
    assert "<details><summary>" in html and "ZeroDivisionError" in html
    assert "c@example.org" in html


def test_run_detail_error_search_and_step_filter(staff_client):
    run = make_runs(1, errors_per_run=3)[0]
    other = RunStep.objects.create(run=run, position=3, name="other", status=StepStatus.FAILED)
    RunError.objects.create(run=run, step=other, step_name="other", identifier="ZZZ9999", message="different")
    url = run.get_absolute_url()
    html = staff_client.get(url, {"q": "ZZZ"}).content.decode()
    assert "ZZZ9999" in html and "bad row" not in html
    html = staff_client.get(url, {"q": "different"}).content.decode()
    assert "ZZZ9999" in html
    html = staff_client.get(url, {"step": other.pk}).content.decode()
    assert "ZZZ9999" in html and "bad row" not in html
    response = staff_client.get(url, {"step": "not-a-number"})
    assert response.status_code == 400 and "step must be a whole number" in response.content.decode()


def test_run_detail_pages_a_run_with_many_errors(staff_client, django_assert_max_num_queries):
    run = make_runs(1, errors_per_run=130)[0]
    with django_assert_max_num_queries(8):
        html = staff_client.get(run.get_absolute_url()).content.decode()
    assert html.count("<tr>") >= 50
    assert "next →" in html
    html = staff_client.get(run.get_absolute_url(), {"page": 3}).content.decode()
    assert "next →" not in html and "← previous" in html


@pytest.mark.parametrize(("status", "text"), [(RunStatus.ABANDONED, "This run was abandoned."),
                                              (RunStatus.SKIPPED, "This run was skipped")])
def test_run_detail_explains_abandoned_and_skipped_runs(staff_client, status, text):
    run = make_runs(1, status=status)[0]
    if status == RunStatus.SKIPPED:  # what the pipeline lock records: the run that held it
        Run.objects.filter(pk=run.pk).update(summary={"held_by": 1})
    assert text in staff_client.get(run.get_absolute_url()).content.decode()


def test_run_detail_shows_child_runs(staff_client):
    parent = make_runs(1, pipeline="family")[0]
    child = Run.objects.create(pipeline="clean", parent=parent, status=RunStatus.SUCCESS)
    html = staff_client.get(parent.get_absolute_url()).content.decode()
    assert "Child runs" in html and child.get_absolute_url() in html
    html = staff_client.get(child.get_absolute_url()).content.decode()
    assert f"part of <a href=\"{parent.get_absolute_url()}\">family #{parent.pk}</a>" in html


def test_run_detail_404(staff_client):
    assert staff_client.get(reverse("runs:detail", args=[999999])).status_code == 404


def test_errors_explorer_searches_identifiers_exactly_or_by_prefix(staff_client):
    make_runs(3)
    url = reverse("runs:errors")
    # "ID" is a prefix of all three (ID<pk>; on PostgreSQL pks keep growing across tests).
    html = staff_client.get(url, {"identifier": "ID", "match": "prefix"}).content.decode()
    assert html.count("bad row 0") == 3
    first = Run.objects.order_by("pk").first()
    ident = f"ID{first.pk:05d}"
    html = staff_client.get(url, {"identifier": ident, "match": "exact"}).content.decode()
    assert html.count("bad row 0") == 1
    html = staff_client.get(url, {"identifier": "nobody", "match": "exact"}).content.decode()
    assert "No errors match." in html


def test_errors_explorer_filters_by_pipeline_step_and_date(staff_client):
    make_runs(2, pipeline="sample")
    make_runs(1, pipeline="clean")
    url = reverse("runs:errors")
    html = staff_client.get(url, {"pipeline": "clean"}).content.decode()
    assert html.count("bad row 0") == 1
    make_runs(2, pipeline="boom", errors_per_run=0)
    assert "No errors match." in staff_client.get(url, {"pipeline": "boom"}).content.decode()
    html = staff_client.get(url, {"step": "step-2"}).content.decode()
    assert html.count("bad row 0") == 3
    html = staff_client.get(url, {"step": "step-1"}).content.decode()
    assert "No errors match." in html
    future = (timezone.localdate() + timedelta(days=2)).isoformat()
    assert "No errors match." in staff_client.get(url, {"since": future}).content.decode()


def test_errors_grouped_view_counts_runs_and_first_last_seen(staff_client):
    start = timezone.now() - timedelta(days=20)
    runs = make_runs(12, errors_per_run=0, start=start)
    for run in runs:
        RunError.objects.create(run=run, step_name="sync", identifier="ABC12D3", message="no email",
                                created_at=run.started_at)
    html = staff_client.get(reverse("runs:errors"), {"identifier": "ABC12D3", "match": "exact",
                                                     "view": "grouped"}).content.decode()
    assert "ABC12D3" in html and "no email" in html
    assert '<td class="num">12</td><td class="num">12</td>' in html
    html = staff_client.get(reverse("runs:errors"), {"view": "grouped"}).content.decode()
    assert "Grouping the newest" in html


def test_pipeline_page_shows_schedule_chart_and_history(staff_client):
    make_runs(5, status=RunStatus.SUCCESS)
    html = staff_client.get(reverse("runs:pipeline", args=["sample"])).content.decode()
    assert '<svg class="chart"' in html and html.count("<rect ") == 5
    assert "0 8 * * *" in html
    assert html.count('class="row-success') == 5


def test_pipeline_page_404_for_unknown_pipeline(staff_client):
    assert staff_client.get(reverse("runs:pipeline", args=["nope"])).status_code == 404


def test_exported_text_is_escaped_everywhere(staff_client):
    run = make_runs(1, errors_per_run=0)[0]
    RunError.objects.create(run=run, step_name="sync", identifier=XSS, message=f"member {XSS} failed",
                            traceback=f"Traceback {XSS}")
    Run.objects.filter(pk=run.pk).update(message=f"oops {XSS}")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for url, params in [(run.get_absolute_url(), {}), (reverse("runs:errors"), {}),
                        (reverse("runs:errors"), {"view": "grouped"}), (reverse("runs:overview"), {}),
                        (reverse("runs:errors"), {"identifier": XSS, "match": "exact"})]:
        html = staff_client.get(url, params).content.decode()
        assert XSS not in html, url
        assert escaped in html, url


def test_buttons_only_for_users_with_the_permissions(client, db):
    run = Run.objects.create(pipeline="sample", status=RunStatus.RUNNING)
    plain = User.objects.create_user("plain", password="x", is_staff=True)
    grant_view(plain)
    client.force_login(plain)
    html = client.get(run.get_absolute_url()).content.decode()
    assert "Run again" not in html and ">Cancel<" not in html
    html = client.get(reverse("runs:overview")).content.decode()
    assert "Run now" not in html


def test_buttons_post_to_the_action_endpoints(staff_client):
    run = Run.objects.create(pipeline="sample", status=RunStatus.RUNNING)
    html = staff_client.get(run.get_absolute_url()).content.decode()
    assert f'action="{reverse("runs:run-now", args=["sample"])}"' in html
    assert f'action="{reverse("runs:cancel", args=[run.pk])}"' in html
    assert 'name="csrfmiddlewaretoken"' in html and 'name="next"' in html


@pytest.mark.parametrize("page", ["overview", "list", "detail", "errors", "grouped", "pipeline"])
def test_query_count_does_not_grow_with_history(staff_client, django_assert_max_num_queries, page):
    def url():
        run = Run.objects.filter(pipeline="sample").order_by("-started_at").first()
        return {
            "overview": (reverse("runs:overview"), {}),
            "list": (reverse("runs:list"), {"pipeline": "sample"}),
            "detail": (run.get_absolute_url(), {}),
            "errors": (reverse("runs:errors"), {"identifier": "ID", "match": "prefix"}),
            "grouped": (reverse("runs:errors"), {"view": "grouped"}),
            "pipeline": (reverse("runs:pipeline", args=["sample"]), {}),
        }[page]

    make_runs(3)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        path, params = url()
        assert staff_client.get(path, params).status_code == 200
    make_runs(150, start=timezone.now() - timedelta(days=400))
    make_runs(60, pipeline="clean")
    path, params = url()
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert staff_client.get(path, params).status_code == 200
    assert len(small.captured_queries) <= 15


def test_run_detail_of_a_running_run_refreshes_itself(staff_client):
    run = Run.objects.create(pipeline="sample", status=RunStatus.RUNNING)
    RunStep.objects.create(run=run, position=1, name="sample-sync", total=3, created=1)
    html = staff_client.get(run.get_absolute_url()).content.decode()
    assert f'hx-get="{reverse("runs:progress", args=[run.pk])}"' in html
    assert "htmx-2.0.11.min.js" in html
    response = staff_client.get(reverse("runs:progress", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert "HX-Refresh" not in response
    assert 'value="1"' in response.content.decode()


def test_pipeline_page_keeps_the_history_of_an_unregistered_pipeline(staff_client):
    make_runs(2, pipeline="retired")
    html = staff_client.get(reverse("runs:pipeline", args=["retired"])).content.decode()
    assert "no longer registered" in html
    assert html.count("<rect ") == 2
