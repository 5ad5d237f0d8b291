"""Read-only admins for run history, built to stay fast on big tables.

- No COUNT(*) over history: `show_full_result_count = False` plus a paginator
  whose count stops at CAP rows (a LIMITed subquery).
- No DISTINCT scans: the pipeline filter takes its choices from the registry,
  status and mode from their choices; the date hierarchy's year/month levels
  come from MIN/MAX on the indexed column instead of a scan.
- Search uses exact / prefix lookups on indexed columns (run id, pipeline,
  identifier); message text is searched only when asked for ("message:…").
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db.models import Max, Min, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext

from runs.models import PipelineSettings, RecordChange, RecordProblem, Run, RunError, RunQuerySet, RunStatus, RunStep
from runs.pipeline import UnknownPipeline, all_pipelines
from runs.selectors import errors_of_pipeline, identifier_prefix_q
from runs.services import cancel_run, trigger_run
from runs.templatetags.runs_extras import duration, number, record_link, status_badge

ERROR_INLINE_LIMIT = 20


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: `SELECT COUNT(*) FROM (… LIMIT CAP+1)`.

    Past CAP the admin shows "10,001" results and pages up to there; the
    filters and the date hierarchy narrow the list further.
    """

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        # Without the ORDER BY the LIMITed subquery reads any narrow index.
        return self.object_list.order_by()[: self.CAP + 1].count()  # type: ignore[attr-defined]  # a QuerySet


if TYPE_CHECKING:  # what the mixins below are mixed into
    _QuerySetBase = QuerySet[Run]
    _AdminBase = admin.ModelAdmin
else:
    _QuerySetBase = _AdminBase = object


class CheapDatesMixin(_QuerySetBase):
    """The date hierarchy's levels from the first and last date (two index
    seeks) instead of `SELECT DISTINCT trunc(…)` over every row, which SQLite
    answers with a full scan. A year, month or day without rows may show up;
    clicking it shows an empty list."""

    def _bound(self, field_name, descending):
        return self.order_by(f"-{field_name}" if descending else field_name).values_list(field_name, flat=True) \
            .first()

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order, tzinfo)
        first, last = self._bound(field_name, False), self._bound(field_name, True)
        if first is None:
            return []
        first, last = timezone.localtime(first).date(), timezone.localtime(last).date()
        values, day = [], first.replace(month=1, day=1) if kind == "year" else first.replace(day=1) \
            if kind == "month" else first
        while day <= last:
            values.append(timezone.make_aware(dt.datetime(day.year, day.month, day.day)))
            if kind == "year":
                day = day.replace(year=day.year + 1)
            elif kind == "month":
                day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            else:
                day += dt.timedelta(days=1)
        return values if order == "ASC" else values[::-1]

    def aggregate(self, *args, **kwargs):
        # The date hierarchy asks for Min and Max together; SQLite only uses the
        # index for a lone MIN() or MAX(), so answer that pair with two seeks.
        if not args and set(kwargs) == {"first", "last"} and isinstance(kwargs["first"], Min) \
                and isinstance(kwargs["last"], Max):
            field_name = kwargs["first"].source_expressions[0].name  # type: ignore[attr-defined]  # an F()
            return {"first": self._bound(field_name, False), "last": self._bound(field_name, True)}
        return super().aggregate(*args, **kwargs)


class CheapDatesRunQuerySet(CheapDatesMixin, RunQuerySet):
    pass


def _with_cheap_dates(qs, cls):
    return cls(model=qs.model, query=qs.query.chain(), using=qs._db, hints=qs._hints)


class PipelineFilter(admin.SimpleListFilter):
    title = "pipeline"
    parameter_name = "pipeline"
    field = "pipeline"

    def lookups(self, request, model_admin):
        return [(p.name, p.name) for p in all_pipelines()]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class ErrorPipelineFilter(PipelineFilter):
    def queryset(self, request, queryset):
        value = self.value()
        return errors_of_pipeline(queryset, value) if value else queryset


class HistoryAdmin(admin.ModelAdmin):
    """Read-only: history is written by the tracker, never edited by hand."""

    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def action_checkbox(self, obj):
        # Django's markup, built without a CheckboxInput widget: rendering the
        # widget's template for every row was a third of the changelist's time.
        return format_html('<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
                           helpers.ACTION_CHECKBOX_NAME, obj.pk,
                           gettext("Select this object for an action - {}").format(obj))


def run_link(run_id: int | None, label: str | None = None):
    if run_id is None:
        return "—"
    return format_html('<a href="{}">{}</a>', reverse("admin:runs_run_change", args=[run_id]),
                       label or f"#{run_id}")


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
        return _with_cheap_dates(super().get_queryset(request), CheapDatesRunQuerySet)

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


class CheapDatesErrorQuerySet(CheapDatesMixin, QuerySet):
    pass


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
        return _with_cheap_dates(qs, CheapDatesErrorQuerySet)

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


# --- record history -------------------------------------------------------------


class IdentifierSearchMixin(_AdminBase):
    """Search an identifier exactly or by prefix (an index range), never icontains."""

    search_fields = ("=identifier",)
    search_help_text = "An identifier (relatiecode, email, team…; matches the start)."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(identifier=term) | identifier_prefix_q(term)), False

    @admin.display(description="identifier", ordering="identifier")
    def identifier_col(self, obj):
        return record_link(obj.identifier)


@admin.register(RecordChange)
class RecordChangeAdmin(IdentifierSearchMixin, HistoryAdmin):
    list_display = ("created_at", "identifier_col", "action", "record_type", "label", "pipeline", "run_col")
    list_filter = ("action",)
    readonly_fields = ("created_at", "identifier_col", "identifier_kind", "record_type", "label", "action",
                       "changes", "pipeline", "step_name", "run_col")
    fields = readonly_fields

    @admin.display(description="run")
    def run_col(self, obj):
        return run_link(obj.run_id)


@admin.register(RecordProblem)
class RecordProblemAdmin(IdentifierSearchMixin, HistoryAdmin):
    list_display = ("identifier_col", "pipeline", "first_seen_at", "last_seen_at", "failing_runs", "resolved_at",
                    "resolution", "short_message")
    list_filter = (PipelineFilter, "resolution")
    readonly_fields = ("identifier_col", "identifier_kind", "pipeline", "step_name", "message", "first_seen_at",
                       "last_seen_at", "failing_runs", "first_run", "last_run", "resolved_at", "resolution",
                       "resolved_run")
    fields = readonly_fields

    @admin.display(description="latest message")
    def short_message(self, obj):
        return obj.message if len(obj.message) <= 200 else obj.message[:200] + "…"


# --- pipeline settings (alert threshold per pipeline) ----------------------------


class PipelineSettingsForm(forms.ModelForm):
    pipeline = forms.ChoiceField(choices=())

    class Meta:
        model = PipelineSettings
        fields = ("pipeline", "alert_after_failures")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = [p.name for p in all_pipelines()]
        if self.instance.pk and self.instance.pipeline not in names:
            names.append(self.instance.pipeline)  # a pipeline that is no longer registered
        cast(forms.ChoiceField, self.fields["pipeline"]).choices = [(n, n) for n in names]


@admin.register(PipelineSettings)
class PipelineSettingsAdmin(admin.ModelAdmin):
    """ALERT_AFTER_FAILURES per pipeline; `schedule_since` is kept by runs.scheduling."""

    form = PipelineSettingsForm
    list_display = ("pipeline", "alert_after_failures", "schedule_since")
    readonly_fields = ("schedule_since",)
    fields = ("pipeline", "alert_after_failures", "schedule_since")
