"""The club registry in the admin: browsable, searchable, read-only.

The registry is written by the pipelines from the exports; an edit here would
be overwritten by the next run, so these admins show and search, they do not
edit. The exceptions: a member's contact fields (CONTACT_FIELDS), which
users with `pipelines.change_member` may correct, and a parent's email and
phone (PARENT_CONTACT_FIELDS, `pipelines.change_parent`); the import keeps
those and each becomes a Correction to enter in Sportlink
(pipelines.corrections).
Search uses exact / prefix lookups (indexed: relatiecode, email, the
name index) rather than `icontains` scans; lists never count past what they
show (`show_full_result_count = False`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from pipelines import corrections
from pipelines.emails import email_problem
from pipelines.models import (
    CONTACT_FIELDS,
    OPEN_STATES,
    PARENT_CONTACT_FIELDS,
    Commissie,
    CommissieMembership,
    Contribution,
    Correction,
    CorrectionState,
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


PHONE_RE = re.compile(r"^[0-9+() ./-]*$")


if TYPE_CHECKING:
    _ModelFormBase = forms.ModelForm
else:
    _ModelFormBase = object


class ContactFormMixin(_ModelFormBase):
    """Checks the contact fields the way Sportlink will need them (mixed into a ModelForm)."""

    def clean(self):
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean() returns
        for name in self._meta.fields or ():
            if isinstance(data.get(name), str):
                data[name] = data[name].strip()
        return data

    def clean_email(self) -> str:
        value = self.cleaned_data["email"].strip()
        # The one email rule (pipelines.emails): what the readers, Laposta and FreeScout accept.
        problem = email_problem(value) if value else ""
        if problem:
            raise ValidationError(f"“{value}” is not an email address ({problem}). Write it like "
                                  "name@example.org, or leave it empty.")
        return value

    def _phone(self, name: str) -> str:
        value = self.cleaned_data[name].strip()
        if not PHONE_RE.match(value):
            raise ValidationError("Use digits, spaces and + - ( ) only, like 06 12345678 or +31 6 12345678.")
        return value

    def clean_phone(self) -> str:
        return self._phone("phone")


class MemberContactForm(ContactFormMixin, forms.ModelForm):
    """The contact fields a volunteer may correct on a member."""

    class Meta:
        model = Member
        fields = list(CONTACT_FIELDS)

    def clean_mobile(self) -> str:
        return self._phone("mobile")

    def clean_postcode(self) -> str:
        return self.cleaned_data["postcode"].strip().upper()


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
        ("Contact", {"fields": ("email", "phone", "mobile", "street", "house_number", "house_number_addition",
                                "postcode", "city", "open_corrections"),
                     "description": "Corrections here are kept by the import and listed on the corrections "
                                    "worklist until Sportlink shows them."}),
        ("Membership", {"fields": ("member_type", "age_category", "local_teams", "member_since", "left_on",
                                   "is_former")}),
        ("Sync", {"fields": ("freescout_id", "source_hash", "last_synced_at", "created_at")}),
    )
    form = MemberContactForm

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Only the contact fields are editable (get_readonly_fields); adding and
        # deleting stay with the import.
        return request.user.has_perm("pipelines.change_member")

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [name for name in flatten_fieldsets(self.fieldsets) if name not in CONTACT_FIELDS]

    def save_model(self, request: HttpRequest, obj: Member, form: forms.ModelForm, change: bool) -> None:
        # Same transaction as the save (the admin's change view is atomic).
        super().save_model(request, obj, form, change)
        corrections.record_edit(obj, form.changed_data, user=request.user)

    @admin.display(description="corrections to enter in Sportlink")
    def open_corrections(self, obj: Member) -> str:
        return _open_corrections(obj)

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


class ParentContactForm(ContactFormMixin, forms.ModelForm):
    """A parent's email and phone. The email is lower case (as the import reads it) and must not be
    another parent's, here or in Sportlink: the import knows parents by their email."""

    class Meta:
        model = Parent
        fields = list(PARENT_CONTACT_FIELDS)

    def clean_email(self) -> str:
        value = super().clean_email().lower()
        if not value:
            raise ValidationError("A parent needs an email address: it is how Sportlink's export names the parent.")
        others = Parent.objects.exclude(pk=self.instance.pk)
        if others.filter(Q(email=value) | Q(sportlink_email=value)).exists():
            raise ValidationError(f"“{value}” is already another parent's email address (here or in Sportlink).")
        return value


@admin.register(Parent)
class ParentAdmin(RegistryAdmin):
    list_display = ("email", "name", "phone", "last_synced_at")
    search_fields = ("^email", "^name", "=children__knvb_id")
    search_help_text = "The start of an email address or name, or a child's relatiecode (exact)."
    fieldsets = (
        (None, {"fields": ("name", "children_list")}),
        ("Contact", {"fields": ("email", "phone", "sportlink_email", "open_corrections"),
                     "description": "Corrections here are kept by the import and listed on the corrections "
                                    "worklist until Sportlink shows them on the children's rows."}),
        ("Sync", {"fields": ("is_former", "source_hash", "last_synced_at", "created_at")}),
    )
    form = ParentContactForm

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Only the email and phone are editable (get_readonly_fields).
        return request.user.has_perm("pipelines.change_parent")

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [name for name in flatten_fieldsets(self.fieldsets) if name not in PARENT_CONTACT_FIELDS]

    def save_model(self, request: HttpRequest, obj: Parent, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        corrections.record_edit(obj, form.changed_data, user=request.user)

    @admin.display(description="corrections to enter in Sportlink")
    def open_corrections(self, obj: Parent) -> str:
        return _open_corrections(obj)

    @admin.display(description="children")
    def children_list(self, obj: Parent) -> str:
        return ", ".join(f"{child.full_name} ({child.knvb_id})" for child in obj.children.all()) or "-"


def _open_corrections(obj: Member | Parent) -> str:
    rows = obj.corrections.filter(state__in=OPEN_STATES).order_by("field")
    return format_html_join("", "<div>{}: in Sportlink “{}” — enter “{}” ({})</div>",
                            ((c.label, c.sportlink_value, c.our_value, c.get_state_display()) for c in rows)) or "-"


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


@admin.register(Correction)
class CorrectionAdmin(admin.ModelAdmin):
    """Corrections (written by pipelines.corrections); a person decides conflicts here or on the worklist."""

    list_display = ("who", "field", "sportlink_value", "our_value", "state_badge", "detected_at", "detected_by")
    list_select_related = ("member", "parent", "detected_by")
    list_filter = ("state", "field", ("parent", admin.EmptyFieldListFilter))
    search_fields = ("=member__knvb_id", "^member__last_name", "^parent__sportlink_email", "^parent__email")
    search_help_text = "Relatiecode (exact), the start of a surname, or the start of a parent's email address."
    show_full_result_count = False
    list_per_page = 50
    actions = ("keep_ours", "take_sportlink")
    fields = ("member", "parent", "field", "sportlink_value", "original_value", "our_value", "state", "detected_at",
              "detected_by", "resolved_at", "resolved_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="member or parent")
    def who(self, obj: Correction) -> str:
        return str(obj.member) if obj.member_id else f"parent {obj.parent}"

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Correction) -> str:
        badges: dict[str, str] = {CorrectionState.PENDING: "partial", CorrectionState.CONFLICT: "failed",
                                  CorrectionState.CONFIRMED: "success"}
        css = badges.get(obj.state, "skipped")
        return format_html('<span class="badge badge-{}">{}</span>', css, obj.get_state_display())

    @admin.action(description="Keep ours (a conflict goes back to pending)", permissions=["change"])
    def keep_ours(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = corrections.keep_ours(queryset.values_list("pk", flat=True), user=request.user)
        self.message_user(request, f"Kept our value on {done} conflict(s); other selected rows were not conflicts.")

    @admin.action(description="Take Sportlink's value (the registry takes it; the correction closes)",
                  permissions=["change"])
    def take_sportlink(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = corrections.take_sportlink(queryset.values_list("pk", flat=True), user=request.user)
        self.message_user(request, f"Took Sportlink's value for {done} open correction(s).")
