"""django-tables2 tables for run history. Cells that show exported text are
escaped by django-tables2 (or built with format_html)."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from runs.models import RecordProblem, Run, RunError
from runs.templatetags.runs_extras import duration, localstamp, number, record_link, status_badge, when


class NumberColumn(tables.Column):
    attrs = {"td": {"class": "num"}, "th": {"class": "num"}}

    def render(self, value):
        return number(value)


class RunTable(tables.Table):
    id = tables.Column(verbose_name="Run", linkify=True, attrs={"td": {"class": "num"}})
    pipeline = tables.Column(linkify=lambda record: reverse("runs:pipeline", args=[record.pipeline]))
    mode = tables.Column()
    status = tables.Column()
    started_at = tables.Column(verbose_name="Started")
    duration_ms = tables.Column(verbose_name="Duration", attrs={"td": {"class": "num"}})
    created = NumberColumn()
    updated = NumberColumn()
    skipped = NumberColumn()
    failed = NumberColumn()
    error_count = NumberColumn(verbose_name="Errors")
    parent = tables.Column(verbose_name="Part of", accessor="parent_id", orderable=False, default="")

    class Meta:
        model = Run
        fields = ("id", "pipeline", "mode", "status", "started_at", "duration_ms", "created", "updated",
                  "skipped", "failed", "error_count", "parent")
        order_by = ("-started_at",)
        attrs = {"class": "table"}
        row_attrs = {"class": lambda record: f"row-{record.status}" + (" child" if record.parent_id else "")}
        empty_text = "No runs match."

    def render_status(self, value, record):
        return status_badge(record.status)

    def render_mode(self, record):
        return record.get_mode_display()

    def render_started_at(self, value):
        return localstamp(value)

    def render_duration_ms(self, value):
        return duration(value)

    def render_parent(self, value):
        return format_html('<a href="{}">↑ #{}</a>', reverse("runs:detail", args=[value]), value)

    def order_started_at(self, queryset, is_descending):
        # A tie-breaker on id keeps the order stable and still walks run_started.
        prefix = "-" if is_descending else ""
        return queryset.order_by(f"{prefix}started_at", f"{prefix}id"), True


class PipelineRunTable(RunTable):
    class Meta(RunTable.Meta):
        exclude = ("pipeline",)


class ErrorTable(tables.Table):
    created_at = tables.Column(verbose_name="When")
    identifier = tables.Column()
    run = tables.Column(verbose_name="Run", accessor="run_id", orderable=False)
    step_name = tables.Column(verbose_name="Step", orderable=False)
    message = tables.Column(orderable=False)

    class Meta:
        model = RunError
        fields = ("created_at", "identifier", "run", "step_name", "message")
        order_by = ("-created_at",)
        attrs = {"class": "table errors"}
        empty_text = "No errors match."

    def render_created_at(self, value):
        return localstamp(value)

    def render_identifier(self, value, record):
        url = reverse("runs:errors") + "?" + urlencode({"identifier": value, "match": "exact"})
        return format_html('{} <span class="muted">{}</span> <a href="{}" class="muted" title="{}">errors</a>',
                           record_link(value), record.identifier_kind, url, "This identifier's errors")

    def render_run(self, value, record):
        return format_html('<a href="{}">{} #{}</a>', reverse("runs:detail", args=[value]), record.run.pipeline,
                           value)

    def render_message(self, value):
        return value if len(value) <= 300 else value[:300] + "…"

    def order_created_at(self, queryset, is_descending):
        prefix = "-" if is_descending else ""
        return queryset.order_by(f"{prefix}created_at", f"{prefix}id"), True


class ProblemTable(tables.Table):
    identifier = tables.Column(orderable=False)
    pipeline = tables.Column(orderable=False, linkify=lambda record: reverse("runs:pipeline", args=[record.pipeline]))
    first_seen_at = tables.Column(verbose_name="Failing since", orderable=False)
    failing_runs = tables.Column(verbose_name="Runs in a row", orderable=False, attrs={"td": {"class": "num"}})
    message = tables.Column(verbose_name="Latest message", orderable=False)
    last_seen_at = tables.Column(verbose_name="Last seen", orderable=False)
    resolved_at = tables.Column(verbose_name="Resolved", orderable=False)

    class Meta:
        model = RecordProblem
        fields = ("identifier", "pipeline", "first_seen_at", "failing_runs", "message", "last_seen_at",
                  "resolved_at")
        attrs = {"class": "table problems"}
        empty_text = "No problems match."

    def render_identifier(self, value, record):
        return format_html('{} <span class="muted">{}</span>', record_link(value), record.identifier_kind)

    def render_first_seen_at(self, value):
        return when(value)

    def render_last_seen_at(self, value, record):
        if record.last_run_id:
            return format_html('{} <a href="{}">run #{}</a>', when(value),
                               reverse("runs:detail", args=[record.last_run_id]), record.last_run_id)
        return when(value)

    def render_failing_runs(self, value):
        return number(value)

    def render_message(self, value, record):
        text = value if len(value) <= 300 else value[:300] + "…"
        return format_html('{} <span class="muted">({})</span>', text, record.step_name) if record.step_name \
            else text

    def render_resolved_at(self, value, record):
        return format_html("{} <span class=\"muted\">{}</span>", when(value), record.get_resolution_display())
