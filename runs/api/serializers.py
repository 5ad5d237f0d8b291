"""The API's JSON shapes (openapi.yaml's Run, Step, RunError and Problem schemas)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from runs.isotime import iso
from runs.models import RecordProblem, Run, RunError, RunStep


def run_json(run: Run, request: HttpRequest) -> dict:
    return {
        "id": run.pk,
        "pipeline": run.pipeline,
        "parent_id": run.parent_id,
        "mode": run.mode,
        "status": run.status,
        "dry_run": run.dry_run,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_ms": run.duration_ms,
        "created": run.created,
        "updated": run.updated,
        "skipped": run.skipped,
        "failed": run.failed,
        "error_count": run.error_count,
        "message": run.message,
        "only": run.only or None,
        "url": settings.SITE_URL + run.get_absolute_url(),
        "api_url": request.build_absolute_uri(reverse("api:run", args=[run.pk])),
    }


def step_json(step: RunStep) -> dict:
    return {
        "id": step.pk,
        "position": step.position,
        "name": step.name,
        "status": step.status,
        "critical": step.critical,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "duration_ms": step.duration_ms,
        "read": step.read,
        "created": step.created,
        "updated": step.updated,
        "skipped": step.skipped,
        "failed": step.failed,
        "total": step.total,
        "reason": step.reason,
    }


def error_json(error: RunError) -> dict:
    return {
        "id": error.pk,
        "step_id": error.step_id,
        "step_name": error.step_name,
        "identifier": error.identifier,
        "identifier_kind": error.identifier_kind,
        "message": error.message,
        "traceback": error.traceback,
        "created_at": iso(error.created_at),
    }


def _record_url(identifier: str) -> str | None:
    try:
        return settings.SITE_URL + reverse("runs:record", args=[identifier])
    except NoReverseMatch:  # e.g. a line break from a quoted CSV cell: no URL can carry it
        return None


def problem_json(problem: RecordProblem) -> dict:
    return {
        "id": problem.pk,
        "pipeline": problem.pipeline,
        "identifier": problem.identifier,
        "identifier_kind": problem.identifier_kind,
        "step_name": problem.step_name,
        "message": problem.message,
        "first_seen_at": iso(problem.first_seen_at),
        "last_seen_at": iso(problem.last_seen_at),
        "failing_runs": problem.failing_runs,
        "first_run_id": problem.first_run_id,
        "last_run_id": problem.last_run_id,
        "resolved_at": iso(problem.resolved_at),
        "resolution": problem.resolution or None,
        "resolved_run_id": problem.resolved_run_id,
        "record_url": _record_url(problem.identifier),
    }
