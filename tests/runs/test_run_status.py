"""One status function: `all` adds up its children, not configured is not success."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from runs.alerts import check_alerts
from runs.health import pipeline_states
from runs.models import ApiToken, Notification, Run, RunError, RunStatus, RunStep
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_dir  # noqa: F401 - fixture

AMS = ZoneInfo("Europe/Amsterdam")


def local(*args):
    return datetime(*args, tzinfo=AMS)


T0 = local(2025, 3, 10, 14, 0)


def finished(pipeline, status, *, at, parent=None, **fields):
    return Run.objects.create(pipeline=pipeline, status=status, started_at=at, finished_at=at + timedelta(minutes=2),
                              duration_ms=120_000, parent=parent, **fields)


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


# --- the one status function ----------------------------------------------------------------------------


def test_steps_all_skipped_make_a_skipped_run_and_the_lock_keeps_partial():
    from runs.tracker import compute_run_status

    assert compute_run_status(["skipped", "skipped"], 0) == "skipped"
    assert compute_run_status(["skipped", "success"], 0) == "success"
    assert compute_run_status(["skipped"], 1) == "partial"
    assert compute_run_status(["skipped"], 0, ["skipped"]) == "partial"  # a child held by the lock
    assert compute_run_status([], 0) == "success"


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
