"""What the history admins share, built to stay fast on big tables.

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
from typing import TYPE_CHECKING

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db.models import Max, Min, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext

from runs.models import RunQuerySet
from runs.pipeline import all_pipelines
from runs.selectors import errors_of_pipeline, identifier_prefix_q
from runs.templatetags.runs_extras import record_link


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
    _QuerySetBase = QuerySet
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


def with_cheap_dates(qs, cls):
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



class CheapDatesErrorQuerySet(CheapDatesMixin, QuerySet):
    pass



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

