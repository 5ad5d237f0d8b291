"""Held removals in the engine: Step.hold_removals, the run page's "Approve removals and run again"
button (permission, POST + CSRF, once, who approved), runsync --allow-removals. Generic: a test
pipeline holds removals the way a club pipeline's guard does."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.html import escape

from runs.models import Run, RunError, RunStatus, StepStatus
from runs.pipeline import register, unregister
from runs.runner import run_pipeline
from runs.services import approve_removals, can_approve_removals
from tests.runs.test_action_views import CsrfClient, make_user, q_sync, texts  # noqa: F401 - q_sync is a fixture

pytestmark = pytest.mark.django_db(transaction=True)

HELD = "3 of 4 things would be removed. Nothing was removed."


@pytest.fixture
def holder():
    """A pipeline that holds its removals unless they are allowed; records what it saw."""
    seen = []

    @register("holder")
    def holder_pipeline(run):
        seen.append(run.allow_removals)
        with run.step("sync") as step:
            step.created()
            if run.allow_removals:
                step.updated(3)
            else:
                step.hold_removals("things removed", 3, HELD)

    yield seen
    unregister("holder")


def detail_url(run):
    return reverse("runs:detail", args=[run.pk])


def approve_url(run):
    return reverse("runs:approve-removals", args=[run.pk])


def test_a_step_that_holds_removals_ends_partial_with_one_error_and_the_reason(holder):
    run = run_pipeline("holder")
    assert run.status == RunStatus.PARTIAL
    step = run.steps.get()
    assert (step.status, step.reason, step.failed, step.created) == (StepStatus.PARTIAL, HELD, 0, 1)
    assert step.held_removals == {"things removed": 3}
    [error] = RunError.objects.filter(run=run)
    assert (error.message, error.identifier, error.identifier_kind) == (HELD, "things removed", "held_removals")
    assert not run.allow_removals and run.removals_approved_by is None


def test_the_run_page_offers_the_button_only_with_the_permission(holder):
    run = run_pipeline("holder")
    viewer = CsrfClient(make_user("viewer", "view_run", "view_runerror"))
    page = viewer.get(detail_url(run)).content.decode()
    assert "This run held back removals" in page and "3 things removed" in page
    assert "Approve removals and run again" not in page
    assert viewer.post(approve_url(run)).status_code == 403
    ops = CsrfClient(make_user("ops", "view_run", "view_runerror", "trigger_run"))
    page = ops.get(detail_url(run)).content.decode()
    assert "Approve removals and run again" in page and escape(approve_url(run)) in page


@pytest.mark.usefixtures("q_sync")
def test_approving_queues_the_pipeline_once_with_removals_allowed_and_records_who(holder):
    held = run_pipeline("holder")
    user = make_user("ops", "view_run", "view_runerror", "trigger_run")
    client = CsrfClient(user)
    response = client.post(approve_url(held))
    assert response.status_code == 302 and response.url == detail_url(held)
    assert texts(response)[0].startswith("Removals approved: holder queued with removals allowed")
    assert holder == [False, True]
    held.refresh_from_db()
    assert held.removals_approved_by == user and held.removals_approved_at is not None
    approved = Run.objects.exclude(pk=held.pk).get(pipeline="holder")
    assert (approved.allow_removals, approved.triggered_by, approved.mode) == (True, user, "dashboard")
    assert approved.status == RunStatus.SUCCESS and approved.updated == 3
    # A second click (or a second person) queues nothing.
    again = CsrfClient(make_user("other", "trigger_run")).post(approve_url(held))
    assert "already approved by ops" in texts(again)[0]
    assert holder == [False, True] and Run.objects.filter(pipeline="holder").count() == 2
    page = client.get(detail_url(held)).content.decode()
    assert "Approved by ops" in page and "Approve removals and run again" not in page
    assert "allowed for this run (by ops)" in client.get(detail_url(approved)).content.decode()


def test_the_approve_action_needs_a_post_with_the_csrf_token(holder):
    run = run_pipeline("holder")
    client = CsrfClient(make_user("ops", "view_run", "view_runerror", "trigger_run"))
    assert client.get(approve_url(run)).status_code == 405
    assert client.post(approve_url(run), csrf=False).status_code == 403
    assert CsrfClient().post(approve_url(run)).status_code == 302  # anonymous: to the login page
    run.refresh_from_db()
    assert run.removals_approved_at is None


def test_only_the_latest_run_that_held_removals_can_be_approved(holder):
    clean = run_pipeline("clean")
    assert not can_approve_removals(clean)
    older = run_pipeline("holder")
    newer = run_pipeline("holder")
    assert not can_approve_removals(older) and can_approve_removals(newer)
    result = approve_removals(older, user=make_user("ops", "view_run", "view_runerror", "trigger_run"))
    assert not result.queued and "a newer run of holder exists" in result.message
    assert not can_approve_removals(run_pipeline("holder", dry_run=True))


def test_an_approval_that_cannot_be_queued_is_rolled_back(holder):
    held = run_pipeline("holder")
    # Another run of the pipeline is going (its lock row): nothing is queued, the approval stays open.
    running = Run.objects.create(pipeline="holder", status=RunStatus.RUNNING)
    assert not can_approve_removals(held)  # a newer run exists while it runs
    running.delete()
    Run.objects.create(pipeline="holder", status=RunStatus.RUNNING, started_at=held.started_at)
    result = approve_removals(held, user=make_user("ops", "view_run", "view_runerror", "trigger_run"))
    assert not result.queued and "already running" in result.message
    held.refresh_from_db()
    assert held.removals_approved_at is None


def test_runsync_allow_removals_lets_them_through_and_the_summary_says_what_was_held(holder):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_code:
        call_command("runsync", "holder", stdout=out)
    assert exit_code.value.code == 3
    assert f"sync held removals: {HELD}" in out.getvalue()
    out = io.StringIO()
    call_command("runsync", "holder", "--allow-removals", stdout=out)
    run = Run.objects.order_by("-id").first()
    assert run.allow_removals and run.status == RunStatus.SUCCESS
    assert "held" not in out.getvalue()
    assert holder == [False, True]
