"""The club registry in the admin: browsable, searchable, read-only.

The registry is written by the pipelines from the exports; an edit here would
be overwritten by the next run, so these admins show and search, they do not
edit. Search uses exact / prefix lookups (indexed: relatiecode, email, the
name index) rather than `icontains` scans; lists never count past what they
show (`show_full_result_count = False`).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from pipelines.models import (
    Commissie,
    CommissieMembership,
    Contribution,
    DisciplineCase,
    LapostaSubscription,
    Member,
    Parent,
    Team,
    TeamMembership,
)


class ReadOnlyMixin:
    """Synced rows: viewable by staff with the view permission, never edited here."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class RegistryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    show_full_result_count = False
    list_per_page = 50


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


class TeamMembershipInline(ReadOnlyInline):
    model = TeamMembership
    fields = ("team", "role", "since", "until")
    readonly_fields = fields
    ordering = ("until", "team__name")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("team", "member")


class CommissieMembershipInline(ReadOnlyInline):
    model = CommissieMembership
    fields = ("commissie", "role", "since", "until", "is_current")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("commissie", "member")


class ContributionInline(ReadOnlyInline):
    model = Contribution
    fields = ("year", "total", "balance", "status", "nikki_id")
    readonly_fields = fields


class DisciplineCaseInline(ReadOnlyInline):
    model = DisciplineCase
    fields = ("dossier_id", "match_date", "description", "sanction", "fee", "status")
    readonly_fields = fields


class ParentInline(ReadOnlyInline):
    model = Parent.children.through
    verbose_name = "parent"
    verbose_name_plural = "parents"
    fields = ("parent",)
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("parent", "member")


def _former_badge(is_former: bool) -> str:
    if is_former:
        return format_html('<span class="badge badge-skipped">{}</span>', "former")
    return format_html('<span class="badge badge-success">{}</span>', "member")


@admin.register(Member)
class MemberAdmin(RegistryAdmin):
    list_display = ("knvb_id", "name", "email", "age_category", "member_type", "status", "last_synced_at")
    list_display_links = ("knvb_id", "name")
    # Exact relatiecode, prefix of surname / first name / email: all index-friendly.
    search_fields = ("=knvb_id", "^last_name", "^first_name", "^email")
    search_help_text = "Relatiecode (exact), or the start of a surname, first name or email address."
    list_filter = (
        "is_former",
        ("team_memberships__team", admin.RelatedOnlyFieldListFilter),
        ("commissie_memberships__commissie", admin.RelatedOnlyFieldListFilter),
        "age_category",
        "gender",
    )
    ordering = ("last_name", "first_name")
    inlines = (ParentInline, TeamMembershipInline, CommissieMembershipInline, ContributionInline,
               DisciplineCaseInline)
    fieldsets = (
        (None, {"fields": ("knvb_id", "first_name", "infix", "last_name", "initials", "gender", "birth_date",
                           "photo_preview")}),
        ("Contact", {"fields": ("email", "phone", "mobile", "street", "house_number", "postcode", "city")}),
        ("Membership", {"fields": ("member_type", "age_category", "local_teams", "member_since", "left_on",
                                   "is_former")}),
        ("Sync", {"fields": ("freescout_id", "source_hash", "last_synced_at", "created_at")}),
    )
    readonly_fields = ("photo_preview",)

    @admin.display(description="name", ordering="last_name")
    def name(self, obj: Member) -> str:
        return obj.full_name

    @admin.display(description="status", ordering="is_former")
    def status(self, obj: Member) -> str:
        return _former_badge(obj.is_former)

    @admin.display(description="photo")
    def photo_preview(self, obj: Member) -> str:
        if not obj.photo:
            return "-"
        # format_html escapes the URL (it holds the relatiecode from the export).
        return format_html('<img src="{}" alt="{}" style="max-height:96px">', obj.photo.url, obj.full_name)


@admin.register(Parent)
class ParentAdmin(RegistryAdmin):
    list_display = ("email", "name", "phone", "last_synced_at")
    search_fields = ("^email", "^name", "=children__knvb_id")
    search_help_text = "The start of an email address or name, or a child's relatiecode (exact)."
    fields = ("email", "name", "phone", "children_list", "source_hash", "last_synced_at", "created_at")
    readonly_fields = ("children_list",)

    @admin.display(description="children")
    def children_list(self, obj: Parent) -> str:
        return ", ".join(f"{child.full_name} ({child.knvb_id})" for child in obj.children.all()) or "-"


@admin.register(Team)
class TeamAdmin(RegistryAdmin):
    list_display = ("name", "kind", "sportlink_id", "last_synced_at")
    search_fields = ("^name", "=sportlink_id")
    list_filter = ("kind",)
    inlines = (TeamMembershipInline,)


@admin.register(TeamMembership)
class TeamMembershipAdmin(RegistryAdmin):
    list_display = ("member", "team", "role", "since", "until")
    list_select_related = ("member", "team")
    list_filter = ("role", ("team", admin.RelatedOnlyFieldListFilter), ("until", admin.EmptyFieldListFilter))
    search_fields = ("=member__knvb_id", "^member__last_name", "^team__name")


@admin.register(Commissie)
class CommissieAdmin(RegistryAdmin):
    list_display = ("name", "sportlink_id", "last_synced_at")
    search_fields = ("^name", "=sportlink_id")
    inlines = (CommissieMembershipInline,)


@admin.register(CommissieMembership)
class CommissieMembershipAdmin(RegistryAdmin):
    list_display = ("member", "commissie", "role", "since", "until", "is_current")
    list_select_related = ("member", "commissie")
    list_filter = ("is_current", ("commissie", admin.RelatedOnlyFieldListFilter), "role")
    search_fields = ("=member__knvb_id", "^member__last_name", "^commissie__name")


@admin.register(DisciplineCase)
class DisciplineCaseAdmin(RegistryAdmin):
    list_display = ("dossier_id", "member", "match_date", "description", "sanction", "fee", "status")
    list_select_related = ("member",)
    list_filter = ("status",)
    search_fields = ("=dossier_id", "=member__knvb_id", "^member__last_name")
    date_hierarchy = "match_date"


@admin.register(Contribution)
class ContributionAdmin(RegistryAdmin):
    list_display = ("member", "year", "total", "balance", "status", "nikki_id")
    list_select_related = ("member",)
    list_filter = ("year", "status")
    search_fields = ("=member__knvb_id", "^member__last_name", "=nikki_id")


@admin.register(LapostaSubscription)
class LapostaSubscriptionAdmin(RegistryAdmin):
    list_display = ("email", "list_id", "member", "parent", "laposta_member_id", "synced_at")
    list_select_related = ("member", "parent")
    list_filter = ("list_id",)
    search_fields = ("^email", "=laposta_member_id")
