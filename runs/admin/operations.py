"""Admins for operations: per-pipeline settings, API tokens, alert notifications.

A token is generated when the admin saves a new one and shown once, on the
page that answers the save; only its hash is stored. Revoking keeps the row
(so the API can answer "revoked" and the history stays). An optional expiry
(`expires_at`) can be set when the token is made and changed later; an
expired token answers 401 like a revoked one.
"""

from __future__ import annotations

from typing import cast

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone

from runs.models import ApiToken, Notification, PipelineSettings
from runs.pipeline import all_pipelines

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


# --- API tokens -------------------------------------------------------------------


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "expires_at", "active")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "prefix")
    actions = ("revoke",)
    autocomplete_fields = ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "user", "expires_at")
        return ("name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("user", "prefix", "created_at", "last_used_at", "revoked_at")

    @admin.display(boolean=True, description="Active")
    def active(self, obj: ApiToken) -> bool:
        return obj.is_active

    def save_model(self, request, obj: ApiToken, form, change) -> None:
        if not change:
            # Kept on the request only, for response_add; never stored or logged.
            request._syncsite_raw_token = ApiToken.generate()
            obj.set_token(request._syncsite_raw_token)
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        # An attribute of this request, not of HttpRequest: Django's add view calls save_model first,
        # but a request that reaches response_add without it (an override, a subclass) gets
        # Django's own page rather than an AttributeError; hence getattr.
        raw = getattr(request, "_syncsite_raw_token", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "token": obj,
            "raw_token": raw,
            "title": "API token created",
        }
        response = TemplateResponse(request, "admin/runs/apitoken/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)


# --- alert notifications (read-only history) --------------------------------------


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """What the alerts sent, when, and what failed: read-only history."""

    list_display = ("created_at", "event", "pipeline", "run", "status", "attempts", "email_sent_at",
                    "webhook_sent_at", "last_error")
    list_filter = ("event", "status")
    list_select_related = ("run",)
    date_hierarchy = None
    show_full_result_count = False
    ordering = ("-created_at", "-id")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
