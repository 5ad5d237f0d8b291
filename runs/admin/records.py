"""Read-only admins for record history: what runs changed per record, and open problems."""

from __future__ import annotations

from django.contrib import admin

from runs.admin.base import HistoryAdmin, IdentifierSearchMixin, PipelineFilter, run_link
from runs.models import RecordChange, RecordProblem


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

