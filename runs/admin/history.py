"""Read-only admins for run history: runs (with their steps and first errors), steps, errors.

Runs carry two actions, thin calls of runs.services guarded by the run
permissions: run the selected runs' pipelines now, cancel the running ones.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from runs.admin.base import (
    CheapDatesErrorQuerySet,
    CheapDatesRunQuerySet,
    ErrorPipelineFilter,
    HistoryAdmin,
    PipelineFilter,
    run_link,
    with_cheap_dates,
)
from runs.models import Run, RunError, RunStatus, RunStep
from runs.pipeline import UnknownPipeline
from runs.selectors import identifier_prefix_q
from runs.services import cancel_run, trigger_run
from runs.templatetags.runs_extras import duration, number, record_link, status_badge

ERROR_INLINE_LIMIT = 20


class RunStepInline(admin.TabularInline):
    model = RunStep
    extra = 0
    can_delete = False
    show_change_link = False
    fields = ("position", "name", "badge", "read", "created", "updated", "skipped", "failed", "human_duration",
              "reason")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def badge(self, obj):
        return status_badge(obj.status)

    @admin.display(description="duration")
    def human_duration(self, obj):
        return duration(obj.duration_ms)


class FirstErrorsFormSet(BaseInlineFormSet):
    """Only the first ERROR_INLINE_LIMIT errors: a run with 50,000 opens as fast as one with 5."""

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            # (run, step, id) order walks runerror_run_step without sorting.
            self._queryset = self.queryset.order_by("step_id", "id")[:ERROR_INLINE_LIMIT]  # type: ignore[union-attr]
        return self._queryset


class RunErrorInline(admin.TabularInline):
    model = RunError
    formset = FirstErrorsFormSet
    extra = 0
    can_delete = False
    verbose_name_plural = f"errors (the first {ERROR_INLINE_LIMIT}; the link above lists them all)"
    fields = ("step_name", "identifier_col", "identifier_kind", "message", "created_at")
    readonly_fields = fields

    @admin.display(description="identifier")
    def identifier_col(self, obj):
        return record_link(obj.identifier) or "—"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(HistoryAdmin):
    list_display = ("run_id", "pipeline", "badge", "mode", "started", "human_duration", "n_created", "n_updated",
                    "n_skipped", "n_failed", "n_errors", "parent_link", "dashboard")
    list_display_links = ("run_id",)
    list_filter = (PipelineFilter, "status", "mode", "dry_run")
    date_hierarchy = "started_at"
    search_fields = ("=pipeline",)
    search_help_text = "A run id (e.g. 123 or #123), a pipeline name, or message:text to search run messages."
    list_select_related = ("parent",)
    inlines = (RunStepInline, RunErrorInline)
    actions = ("run_now", "cancel_runs")
    readonly_fields = ("pipeline", "badge", "mode", "triggered_by", "parent_link", "dashboard", "errors_link",
                       "started_at", "finished_at", "human_duration", "created", "updated", "skipped", "failed",
                       "error_count", "message", "summary", "host", "pid", "heartbeat_at", "cancel_requested_at",
                       "cancel_requested_by", "task_id", "dry_run")
    fieldsets = (
        (None, {"fields": ("pipeline", "badge", "mode", "triggered_by", "parent_link", "dashboard", "message")}),
        ("Timing", {"fields": ("started_at", "finished_at", "human_duration", "heartbeat_at")}),
        ("Totals", {"fields": ("created", "updated", "skipped", "failed", "error_count", "errors_link")}),
        ("Process", {"classes": ("collapse",), "fields": ("host", "pid", "task_id", "dry_run",
                                                          "cancel_requested_at", "cancel_requested_by",
                                                          "summary")}),
    )

    def get_queryset(self, request):
        return with_cheap_dates(super().get_queryset(request), CheapDatesRunQuerySet)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.lstrip("#").isdigit():
            return queryset.filter(pk=int(term.lstrip("#"))), False
        if term.lower().startswith("message:"):
            return queryset.filter(message__icontains=term.split(":", 1)[1].strip()), False
        return queryset.filter(pipeline=term), False

    @admin.display(description="run", ordering="id")
    def run_id(self, obj):
        return f"#{obj.pk}"

    @admin.display(description="status", ordering="status")
    def badge(self, obj):
        return status_badge(obj.status)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj):
        return timezone.localtime(obj.started_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="duration", ordering="duration_ms")
    def human_duration(self, obj):
        return duration(obj.duration_ms)

    @admin.display(description="created")
    def n_created(self, obj):
        return number(obj.created)

    @admin.display(description="updated")
    def n_updated(self, obj):
        return number(obj.updated)

    @admin.display(description="skipped")
    def n_skipped(self, obj):
        return number(obj.skipped)

    @admin.display(description="failed")
    def n_failed(self, obj):
        return number(obj.failed)

    @admin.display(description="errors")
    def n_errors(self, obj):
        return number(obj.error_count)

    @admin.display(description="part of")
    def parent_link(self, obj):
        return run_link(obj.parent_id, f"{obj.parent.pipeline} #{obj.parent_id}") if obj.parent_id else ""

    @admin.display(description="dashboard")
    def dashboard(self, obj):
        return format_html('<a href="{}">open</a>', obj.get_absolute_url())

    @admin.display(description="all errors")
    def errors_link(self, obj):
        if Run.objects.filter(parent_id=obj.pk).exists():
            # A parent's count includes its children's errors: the dashboard lists them together.
            return format_html('<a href="{}#errors">{} errors (with its child runs) on the dashboard</a>',
                               obj.get_absolute_url(), number(obj.error_count))
        url = reverse("admin:runs_runerror_changelist") + "?" + urlencode({"run__id__exact": obj.pk})
        return format_html('<a href="{}">{} errors in the admin</a> · <a href="{}#errors">on the dashboard</a>',
                           url, number(obj.error_count), obj.get_absolute_url())

    # Actions: thin calls of the services, guarded by the run permissions.
    def has_trigger_permission(self, request):
        return request.user.has_perm("runs.trigger_run")

    def has_cancel_permission(self, request):
        return request.user.has_perm("runs.cancel_run")

    @admin.action(description="Run the selected runs' pipelines now", permissions=["trigger"])
    def run_now(self, request, queryset):
        for name in sorted(set(queryset.values_list("pipeline", flat=True))):
            try:
                result = trigger_run(name, user=request.user, mode="dashboard")
            except UnknownPipeline:
                self.message_user(request, f"{name} is no longer a registered pipeline.", messages.ERROR)
                continue
            self.message_user(request, result.message, messages.SUCCESS if result.queued else messages.WARNING)

    @admin.action(description="Cancel the selected running runs", permissions=["cancel"])
    def cancel_runs(self, request, queryset):
        asked = 0
        for run in queryset.filter(status=RunStatus.RUNNING):
            if cancel_run(run, user=request.user):
                asked += 1
        self.message_user(request, f"Asked {asked} running run(s) to stop." if asked
                          else "None of the selected runs is running.", messages.INFO)


@admin.register(RunStep)
class RunStepAdmin(HistoryAdmin):
    list_display = ("__str__", "run_col", "position", "name", "badge", "n_read", "created", "updated", "skipped",
                    "failed", "human_duration")
    list_filter = ("status",)
    list_select_related = ("run",)
    search_fields = ("=name",)
    search_help_text = "A run id (e.g. 123 or #123) or an exact step name."
    readonly_fields = ("run_col", "position", "name", "badge", "critical", "started_at", "finished_at",
                       "human_duration", "read", "created", "updated", "skipped", "failed", "total", "reason",
                       "detail")
    fields = readonly_fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term.lstrip("#").isdigit():
            return queryset.filter(run_id=int(term.lstrip("#"))), False
        return (queryset.filter(name=term), False) if term else (queryset, False)

    @admin.display(description="run")
    def run_col(self, obj):
        return run_link(obj.run_id, f"{obj.run.pipeline} #{obj.run_id}")

    @admin.display(description="status", ordering="status")
    def badge(self, obj):
        return status_badge(obj.status)

    @admin.display(description="read")
    def n_read(self, obj):
        return number(obj.read)

    @admin.display(description="duration", ordering="duration_ms")
    def human_duration(self, obj):
        return duration(obj.duration_ms)

@admin.register(RunError)
class RunErrorAdmin(HistoryAdmin):
    list_display = ("created", "identifier_col", "identifier_kind", "run_col", "step_name", "short_message")
    list_filter = (ErrorPipelineFilter,)
    date_hierarchy = "created_at"
    list_select_related = ("run",)
    search_fields = ("=identifier",)
    search_help_text = ("An identifier (relatiecode, email…; matches the start), a run id (#123), "
                        "or message:text to search messages (slow on a big table).")
    readonly_fields = ("run_col", "step_name", "identifier_col", "identifier_kind", "created_at", "message",
                       "traceback_block")
    fields = readonly_fields

    def get_queryset(self, request):
        qs = super().get_queryset(request).defer("traceback", "run__summary")
        return with_cheap_dates(qs, CheapDatesErrorQuerySet)

    def get_object(self, request, object_id, from_field=None):
        # The change page shows the traceback the list defers.
        return RunError.objects.select_related("run").filter(pk=object_id).first() if str(object_id).isdigit() \
            else None

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("#") and term[1:].isdigit():
            return queryset.filter(run_id=int(term[1:])), False
        if term.lower().startswith("message:"):
            return queryset.filter(message__icontains=term.split(":", 1)[1].strip()), False
        # Exact or prefix: an index range on runerror_identifier_created.
        return queryset.filter(Q(identifier=term) | identifier_prefix_q(term)), False

    @admin.display(description="when", ordering="created_at")
    def created(self, obj):
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="identifier", ordering="identifier")
    def identifier_col(self, obj):
        return record_link(obj.identifier) or "—"

    @admin.display(description="run")
    def run_col(self, obj):
        return format_html('{} · <a href="{}">dashboard</a>', run_link(obj.run_id, f"{obj.run.pipeline} #{obj.run_id}"),
                           obj.run.get_absolute_url())

    @admin.display(description="message")
    def short_message(self, obj):
        return obj.message if len(obj.message) <= 200 else obj.message[:200] + "…"

    @admin.display(description="traceback")
    def traceback_block(self, obj):
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', obj.traceback) if obj.traceback else "—"

