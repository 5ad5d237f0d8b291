"""The dashboard's action views (POST only): run a pipeline now, sync some
records again, cancel a run, approve the removals a run held back. (The admin's
actions are in runs.admin.history; both call runs.services.)

Staff only (others go to the login page), a permission each (403 without),
POST with the CSRF token (GET is 405). Each redirects back to a safe `next`
or to the page the button was on, with a message saying what happened.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from runs.history import identifiers_in
from runs.models import Mode, Run
from runs.pipeline import UnknownPipeline
from runs.services import approve_removals as approve_held_removals
from runs.services import cancel_run, trigger_run


def _back(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def pipeline_url(name: str) -> str:
    """The pipeline's page, or the overview where there is none."""
    try:
        return reverse("runs:pipeline", args=[name])
    except NoReverseMatch:
        return reverse("runs:overview")


@staff_member_required
@require_POST
@permission_required("runs.trigger_run", raise_exception=True)
def run_now(request: HttpRequest, name: str) -> HttpResponse:
    try:
        result = trigger_run(name, user=request.user, mode=str(Mode.DASHBOARD))
    except UnknownPipeline:
        raise Http404(f"Unknown pipeline {name!r}") from None
    if result.queued:
        messages.success(request, result.message)
    else:
        messages.warning(request, result.message)
    return redirect(_back(request, pipeline_url(name)))


@staff_member_required
@require_POST
@permission_required("runs.trigger_run", raise_exception=True)
def sync_records(request: HttpRequest, name: str) -> HttpResponse:
    """"Sync again" on the record page: queue pipeline `name` for the posted
    identifiers only (`only`, one or more fields)."""
    only = identifiers_in(request.POST.getlist("only"))
    if not only:
        messages.error(request, "Name the record to sync (no identifier was sent).")
        return redirect(_back(request, pipeline_url(name)))
    try:
        result = trigger_run(name, user=request.user, mode=str(Mode.DASHBOARD), only=only)
    except UnknownPipeline:
        raise Http404(f"Unknown pipeline {name!r}") from None
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect(_back(request, pipeline_url(name)))
    (messages.success if result.queued else messages.warning)(request, result.message)
    return redirect(_back(request, pipeline_url(name)))


@staff_member_required
@require_POST
@permission_required("runs.cancel_run", raise_exception=True)
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=pk)
    if cancel_run(run, user=request.user):
        messages.success(request, f"Cancel requested: {run} stops at its next item or step.")
    elif run.is_running:
        messages.info(request, f"Cancel was already requested for {run}.")
    else:
        messages.warning(request, f"{run} is not running ({run.get_status_display().lower()}).")
    return redirect(_back(request, run.get_absolute_url()))


@staff_member_required
@require_POST
@permission_required("runs.trigger_run", raise_exception=True)
def approve_removals(request: HttpRequest, pk: int) -> HttpResponse:
    """"Approve removals and run again": queue the pipeline once with removals allowed."""
    run = get_object_or_404(Run, pk=pk)
    try:
        result = approve_held_removals(run, user=request.user)
    except UnknownPipeline:
        raise Http404(f"Unknown pipeline {run.pipeline!r}") from None
    if result.queued:
        messages.success(request, result.message)
    else:
        messages.warning(request, result.message)
    return redirect(_back(request, run.get_absolute_url()))
