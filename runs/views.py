"""Dashboard pages: overview, runs list + CSV export, run detail, errors, pipeline.

Read-only and thin: the queries live in runs.selectors; starting and
cancelling runs are POST endpoints elsewhere (runs.services). Every page needs
a staff login (the admin login page, which redirects back).
"""

from __future__ import annotations

import csv
from typing import Any

from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django_filters.views import FilterView
from django_tables2 import LazyPaginator, RequestConfig, SingleTableMixin

from runs import selectors
from runs.filters import ErrorFilter, ProblemFilter, RunFilter
from runs.models import RecordProblem, Run, RunError, RunStatus
from runs.overview import overview_cards
from runs.permissions import VIEW_ERRORS, VIEW_RUNS, staff_permission_required
from runs.pipeline import UnknownPipeline, card_notes, get_pipeline
from runs.services import can_approve_removals
from runs.states import pipeline_states
from runs.tables import ErrorTable, PipelineRunTable, ProblemTable, RunTable

PER_PAGE = 25
ERRORS_PER_PAGE = 50
# Hostile input: anything outside these answers 400 with a message, never a
# 500 from an integer the database cannot hold or an offset past its range.
MAX_PAGE = 100_000
MAX_PER_PAGE = 500
MAX_ID = 2**63 - 1  # bigint


def _bad_request(message: str) -> HttpResponse:
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


def _bounded_int(value: str | None, *, name: str, maximum: int) -> int | None:
    """`value` as a whole number from 1 to `maximum`; None when absent; ValueError with a message."""
    if value is None or value == "":
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise ValueError(f"{name} must be a whole number from 1 to {maximum}, got {value[:40]!r}.")
    return int(text)


def _paging_error(request) -> str | None:
    """What is wrong with the `page` / `per_page` query parameters django-tables2 reads, if anything."""
    try:
        _bounded_int(request.GET.get("page"), name="page", maximum=MAX_PAGE)
        _bounded_int(request.GET.get("per_page"), name="per_page", maximum=MAX_PER_PAGE)
    except ValueError as exc:
        return str(exc)
    return None


def _actions(request, run: Run | None = None, pipeline: str | None = None) -> dict:
    """Run now / cancel form targets, only for users allowed to use them."""
    actions = {}
    if pipeline and request.user.has_perm("runs.trigger_run"):
        actions["run_now_url"] = reverse("runs:run-now", args=[pipeline])
    if run is not None and run.status == RunStatus.RUNNING and request.user.has_perm("runs.cancel_run"):
        actions["cancel_url"] = reverse("runs:cancel", args=[run.pk])
    return actions


def _held_removals(request, run: Run, steps: list) -> dict:
    """What the run held back, and the approve button's target for users allowed to use it."""
    held = {}
    for step in steps:
        held.update(step.held_removals)
    context: dict[str, Any] = {"held_removals": held}
    if held and request.user.has_perm("runs.trigger_run") and can_approve_removals(run, held=held):
        context["approve_removals_url"] = reverse("runs:approve-removals", args=[run.pk])
    return context


@staff_permission_required(VIEW_RUNS)
def overview(request):
    cards = overview_cards()
    can_trigger = request.user.has_perm("runs.trigger_run")
    problems = selectors.open_problem_counts([card.pipeline.name for card in cards])
    for card in cards:
        card.run_now_url = reverse("runs:run-now", args=[card.pipeline.name]) if can_trigger else None
        card.notes = card_notes(card.pipeline.name, request.user)
        card.open_problems = problems.get(card.pipeline.name, 0)
        card.open_problems_capped = card.open_problems >= selectors.OPEN_PROBLEMS_CAP
    return render(request, "runs/overview.html", {"cards": cards, "nav": "overview"})


class HistoryListView(SingleTableMixin, FilterView):
    """A filtered, sortable table over a history table, staff with `permissions` only.

    Only the table paginates, with LazyPaginator (one page plus one row);
    ListView's own paginator would COUNT(*) the whole history.
    """

    table_pagination = {"paginator_class": LazyPaginator, "per_page": PER_PAGE}
    strict = True
    permissions: tuple[str, ...] = (VIEW_RUNS,)

    @classmethod
    def as_view(cls, **initkwargs):
        return staff_permission_required(*cls.permissions)(super().as_view(**initkwargs))

    def get(self, request, *args, **kwargs):
        problem = _paging_error(request)
        if problem:
            return _bad_request(problem)
        response = super().get(request, *args, **kwargs)
        if self.filterset.is_bound and not self.filterset.is_valid():
            response.status_code = 400  # the page shows what is wrong next to the filter
        return response


class RunListView(HistoryListView):
    """Runs, filterable and sortable."""

    model = Run
    table_class = RunTable
    filterset_class = RunFilter
    template_name = "runs/run_list.html"

    def get_queryset(self):
        return selectors.runs_queryset()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["nav"] = "runs"
        context["export_query"] = self.request.GET.urlencode()
        return context


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: formula-looking text gets a leading quote."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


class _Echo:
    def write(self, value):
        return value


EXPORT_COLUMNS = ["id", "pipeline", "parent_id", "mode", "status", "started_at", "finished_at", "duration_ms",
                  "created", "updated", "skipped", "failed", "error_count", "message"]


@staff_permission_required(VIEW_RUNS)
def run_export(request):
    """The filtered runs as CSV, streamed in chunks: memory stays flat for any size."""
    filterset = RunFilter(request.GET, queryset=selectors.runs_queryset())
    if not filterset.is_valid():
        return HttpResponse("Invalid filter: " + filterset.errors.as_text(), status=400,
                            content_type="text/plain; charset=utf-8")
    rows = filterset.qs.values_list(*EXPORT_COLUMNS).iterator(chunk_size=2000)
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            row = list(row)
            for i in (5, 6):  # started_at, finished_at in local time
                if row[i] is not None:
                    row[i] = timezone.localtime(row[i]).isoformat()
            yield writer.writerow([csv_cell(v) for v in row])

    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="runs-{stamp}.csv"'
    return response


def _load_run(pk: int) -> Run:
    if pk > MAX_ID:
        raise Http404("No such run.")
    try:
        return selectors.run_detail(pk)
    except Run.DoesNotExist:
        raise Http404("No such run.") from None


@staff_permission_required(VIEW_RUNS)
def run_detail(request, pk: int):
    run = _load_run(pk)
    try:
        step_id = _bounded_int(request.GET.get("step"), name="step", maximum=MAX_ID)
        page = _bounded_int(request.GET.get("page"), name="page", maximum=MAX_PAGE) or 1
    except ValueError as exc:
        return _bad_request(str(exc))
    q = (request.GET.get("q") or "").strip()[:200]
    if "\x00" in q:
        return _bad_request("The search must not contain NUL characters.")
    steps = selectors.run_steps(run)
    # One page plus one row tells whether there is a next page; no COUNT(*).
    offset = (page - 1) * ERRORS_PER_PAGE
    children = selectors.child_runs(run) if run.pipeline and not run.parent_id else []
    # A parent's page lists its children's errors too (its count is their sum).
    can_view_errors = request.user.has_perm(VIEW_ERRORS)
    errors = list(selectors.run_errors(run, step_id=step_id, q=q, children=children)
                  [offset:offset + ERRORS_PER_PAGE + 1]) if can_view_errors else []
    has_next = len(errors) > ERRORS_PER_PAGE
    errors = errors[:ERRORS_PER_PAGE]
    steps_by_id = {s.pk: s for s in steps}
    context = {
        "run": run,
        "steps": steps,
        "children": children,
        "children_by_id": {c.pk: c for c in children},
        "errors": errors,
        "can_view_errors": can_view_errors,
        "steps_by_id": steps_by_id,
        "error_step": step_id,
        "q": q,
        "page": page,
        "has_next": has_next,
        "has_previous": page > 1,
        "nav": "runs",
        **_actions(request, run=run, pipeline=run.pipeline),
        **_held_removals(request, run, steps),
    }
    return render(request, "runs/run_detail.html", context)


@staff_permission_required(VIEW_RUNS)
def run_progress(request, pk: int):
    """The live part of a running run (htmx polls it). Once the run has
    finished, HX-Refresh reloads the whole page to show the final state."""
    run = _load_run(pk)
    response = render(request, "runs/_run_progress.html",
                      {"run": run, "steps": selectors.run_steps(run), "poll": run.is_running})
    if not run.is_running and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"
    return response


class ErrorListView(HistoryListView):
    """Every error across runs; `?view=grouped` groups by identifier + message."""

    model = RunError
    table_class = ErrorTable
    filterset_class = ErrorFilter
    template_name = "runs/error_list.html"
    permissions = (VIEW_RUNS, VIEW_ERRORS)

    def get_queryset(self):
        return selectors.errors_queryset()

    @property
    def grouped(self) -> bool:
        return self.request.GET.get("view") == "grouped"

    def get_table_data(self):
        if self.grouped:
            return []
        return super().get_table_data()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["nav"] = "errors"
        context["grouped"] = self.grouped
        filterset = context["filter"]
        if self.grouped and filterset.is_valid():
            # One member's errors (an exact identifier) are few: group them all.
            # Anything wider is grouped over the newest GROUP_WINDOW matches only.
            one_member = bool(filterset.identifier_value) and filterset.exact
            context["groups"] = selectors.grouped_errors(filterset.qs, bounded_by_identifier=one_member)
            context["group_window"] = None if one_member else selectors.GROUP_WINDOW
        query = self.request.GET.copy()
        query.pop("view", None)
        query.pop("page", None)
        context["base_query"] = query.urlencode()
        return context


@staff_permission_required(VIEW_RUNS)
def pipeline_detail(request, name: str):
    if len(name) > 64 or "\x00" in name:  # Run.pipeline is 64 characters; PostgreSQL refuses NUL
        raise Http404("No such pipeline.")
    problem = _paging_error(request)
    if problem:
        return _bad_request(problem)
    try:
        pipeline = get_pipeline(name)
    except UnknownPipeline:
        pipeline = None
    chart_runs = selectors.pipeline_chart_runs(name)
    if pipeline is None and not chart_runs:
        raise Http404("No such pipeline.")
    table = PipelineRunTable(selectors.runs_queryset().filter(pipeline=name), request=request)
    RequestConfig(request, paginate={"paginator_class": LazyPaginator, "per_page": PER_PAGE}).configure(table)
    state = pipeline_states().get(name)
    context = {
        "name": name,
        "pipeline": pipeline,
        "schedule": state.schedule if state is not None else None,
        "chart_runs": chart_runs,
        "table": table,
        "problems": selectors.pipeline_open_problems(name),
        "nav": "pipelines",
        **_actions(request, pipeline=name if pipeline else None),
    }
    return render(request, "runs/pipeline_detail.html", context)


class ProblemListView(HistoryListView):
    """Open problems (newest first), or `?state=resolved` the recently resolved ones."""

    model = RecordProblem
    table_class = ProblemTable
    filterset_class = ProblemFilter
    template_name = "runs/problem_list.html"
    permissions = (VIEW_RUNS, VIEW_ERRORS)  # a problem shows its latest error message

    @property
    def resolved(self) -> bool:
        return self.request.GET.get("state") == "resolved"

    def get_queryset(self):
        return selectors.problems_queryset(resolved=self.resolved)

    def get_table(self, **kwargs):
        table = super().get_table(**kwargs)
        table.exclude = ("resolved_at",) if not self.resolved else ()
        return table

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["nav"] = "problems"
        context["resolved"] = self.resolved
        return context


@staff_permission_required(VIEW_RUNS, VIEW_ERRORS)
def record_detail(request, identifier: str):
    """One record's story: registry values, changes, errors, problems, destinations.

    A fixed number of queries: the club app's panel (runs.records), then one
    bounded index range each for changes, errors and problems.
    """
    from runs.records import describe_record

    identifier = identifier.strip()
    if "\x00" in identifier or len(identifier) > 255:
        return _bad_request("An identifier has at most 255 characters and no NUL characters.")
    info = describe_record(identifier)
    changes = selectors.record_changes(identifier)
    errors = selectors.record_errors(identifier)
    problems = selectors.record_problems(identifier)
    if info is None and not changes and not errors and not problems:
        raise Http404("Nothing is known about this identifier.")
    sync_pipelines: list[str] = []
    if request.user.has_perm("runs.trigger_run"):
        names = list(info.pipelines) if info else []
        names += [p.pipeline for p in problems if p.is_open and p.pipeline not in names]
        for name in names:
            try:
                get_pipeline(name)
            except UnknownPipeline:
                continue
            sync_pipelines.append(name)
    context = {
        "identifier": identifier,
        "info": info,
        "changes": changes,
        "errors": errors,
        "problems": problems,
        "open_problems": [p for p in problems if p.is_open],
        "sync_pipelines": sync_pipelines,
        "changes_limit": selectors.RECORD_CHANGES_SHOWN,
        "errors_limit": selectors.RECORD_ERRORS_SHOWN,
        "nav": "problems",
    }
    return render(request, "runs/record_detail.html", context)

