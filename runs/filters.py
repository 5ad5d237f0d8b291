"""django-filter FilterSets for the runs list and the error explorer.

Filters map to indexed columns: pipeline and status lead an index with
started_at; the identifier search is an exact match or an index range
(prefix), never icontains.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils import timezone

from runs.models import Mode, RecordProblem, Run, RunError, RunStatus
from runs.pipeline import all_pipelines
from runs.selectors import MIN_PREFIX, errors_of_pipeline, identifier_prefix_q


def pipeline_choices():
    return [(p.name, p.name) for p in all_pipelines()]


def _day_start(value):
    return timezone.make_aware(datetime.combine(value, time.min))


class DateRangeMixin:
    """`since` / `until` (inclusive) days in the local time zone, on `date_field`."""

    date_field = "started_at"

    def filter_since(self, queryset, name, value):
        return queryset.filter(**{f"{self.date_field}__gte": _day_start(value)}) if value else queryset

    def filter_until(self, queryset, name, value):
        return queryset.filter(**{f"{self.date_field}__lt": _day_start(value + timedelta(days=1))}) \
            if value else queryset


_date_widget = forms.DateInput(attrs={"type": "date"})
# Dates far outside this range overflow the time-zone arithmetic (year 1, year 9999).
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
_DATE_RANGE = "Pick a day between 1970-01-01 and 2999-12-31."


def _date_filter(label: str, method: str) -> django_filters.DateFilter:
    return django_filters.DateFilter(method=method, label=label, widget=_date_widget, validators=[
        MinValueValidator(_FIRST_DAY, message=_DATE_RANGE), MaxValueValidator(_LAST_DAY, message=_DATE_RANGE)])


class RunFilter(DateRangeMixin, django_filters.FilterSet):
    pipeline = django_filters.ChoiceFilter(choices=pipeline_choices, empty_label="all pipelines")
    status = django_filters.ChoiceFilter(choices=RunStatus.choices, empty_label="any status")
    mode = django_filters.ChoiceFilter(choices=Mode.choices, empty_label="any mode")
    since = _date_filter("From", "filter_since")
    until = _date_filter("To", "filter_until")
    parent = django_filters.NumberFilter(field_name="parent_id", label="Part of run", widget=forms.HiddenInput,
                                         min_value=1, max_value=2**63 - 1, decimal_places=0)

    class Meta:
        model = Run
        fields = ["pipeline", "status", "mode", "since", "until", "parent"]


class ErrorFilter(DateRangeMixin, django_filters.FilterSet):
    date_field = "created_at"

    identifier = django_filters.CharFilter(method="filter_identifier", label="Identifier",
                                           widget=forms.TextInput(attrs={"placeholder": "relatiecode or email"}))
    match = django_filters.ChoiceFilter(choices=[("prefix", "starts with"), ("exact", "exactly")],
                                        method="filter_noop", empty_label=None, label="Match")
    pipeline = django_filters.ChoiceFilter(method="filter_pipeline", choices=pipeline_choices,
                                           empty_label="all pipelines")
    step = django_filters.CharFilter(field_name="step_name", label="Step")
    since = _date_filter("From", "filter_since")
    until = _date_filter("To", "filter_until")

    class Meta:
        model = RunError
        fields = ["identifier", "match", "pipeline", "step", "since", "until"]

    @property
    def identifier_value(self) -> str:
        if not self.is_bound or not self.is_valid():
            return ""
        return (self.form.cleaned_data.get("identifier") or "").strip()

    @property
    def exact(self) -> bool:
        return self.is_bound and self.is_valid() and self.form.cleaned_data.get("match") == "exact"

    def filter_pipeline(self, queryset, name, value):
        return errors_of_pipeline(queryset, value) if value else queryset

    def filter_noop(self, queryset, name, value):
        return queryset

    def filter_identifier(self, queryset, name, value):
        # Index: runerror_identifier_created, already in newest-first order.
        return identifier_match(queryset, value, exact=self.form.cleaned_data.get("match") == "exact")


def identifier_match(queryset, value: str, *, exact: bool):
    """An identifier exactly, or (two characters or more) by prefix: an index range, never icontains."""
    value = value.strip()
    if not value:
        return queryset
    if exact or len(value) < MIN_PREFIX:
        return queryset.filter(identifier=value)
    return queryset.filter(identifier_prefix_q(value))


class ProblemFilter(django_filters.FilterSet):
    """/problems/: open (default) or resolved, one pipeline, an identifier (exact or prefix)."""

    state = django_filters.ChoiceFilter(choices=[("open", "open"), ("resolved", "recently resolved")],
                                        method="filter_noop", empty_label=None, label="State")
    pipeline = django_filters.ChoiceFilter(choices=pipeline_choices, empty_label="all pipelines")
    identifier = django_filters.CharFilter(method="filter_identifier", label="Identifier",
                                           widget=forms.TextInput(attrs={"placeholder": "relatiecode or email"}))
    match = django_filters.ChoiceFilter(choices=[("prefix", "starts with"), ("exact", "exactly")],
                                        method="filter_noop", empty_label=None, label="Match")

    class Meta:
        model = RecordProblem
        fields = ["state", "pipeline", "identifier", "match"]

    def filter_noop(self, queryset, name, value):
        return queryset

    def filter_identifier(self, queryset, name, value):
        return identifier_match(queryset, value, exact=self.form.cleaned_data.get("match") == "exact")
