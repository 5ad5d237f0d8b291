"""The club registry: what the pipelines read from Sportlink and Nikki.

Every synced row keeps `source_hash` (a hash of the normalised source record)
and `last_synced_at`: the sync compares hashes loaded in one query per table,
so an unchanged record is skipped without touching its row. Members who leave
the export are marked former (`is_former`), never deleted: their history
(teams, commissies, contributions, discipline cases) stays.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# The contact fields a volunteer may correct in the admin (pipelines.corrections
# tracks them against Sportlink's values): model field -> label.
CONTACT_FIELDS = {
    "email": "email",
    "mobile": "mobile",
    "phone": "phone",
    "street": "street",
    "house_number": "house number",
    "house_number_addition": "addition",
    "postcode": "postcode",
    "city": "city",
}


# The contact fields of a parent (Parent has no mobile or address): model field -> label.
PARENT_CONTACT_FIELDS = {
    "email": "email",
    "phone": "phone",
}


def sportlink_field(name: str) -> str:
    """The Member (or Parent) column holding the value of contact field `name` last imported from Sportlink."""
    return f"sportlink_{name}"


class Gender(models.TextChoices):
    MALE = "M", "Male"
    FEMALE = "V", "Female"
    UNKNOWN = "", "Unknown"


class Synced(models.Model):
    """What every synced row keeps: the hash of the source data it was last
    written from (unchanged hash -> the row is skipped) and when."""

    source_hash = models.CharField(max_length=64, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class Member(Synced):
    # Sportlink's relatiecode ("Rel. code", PublicPersonId): the key of everything.
    # Letters, digits and hyphens, 1 to 20 characters (pipelines.readers.parse_knvb_id).
    knvb_id = models.CharField("relatiecode", max_length=20, unique=True)
    first_name = models.CharField(max_length=100, blank=True)
    infix = models.CharField(max_length=30, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    initials = models.CharField(max_length=30, blank=True)
    # Laposta and FreeScout look members up by email.
    email = models.CharField(max_length=254, blank=True, db_index=True)
    gender = models.CharField(max_length=1, choices=Gender.choices, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    member_type = models.CharField(max_length=60, blank=True)
    age_category = models.CharField(max_length=60, blank=True)
    local_teams = models.CharField(max_length=500, blank=True, help_text="'Lokale teams' as exported")
    phone = models.CharField(max_length=40, blank=True)
    mobile = models.CharField(max_length=40, blank=True)
    street = models.CharField(max_length=150, blank=True)
    house_number = models.CharField(max_length=20, blank=True)
    house_number_addition = models.CharField("addition", max_length=20, blank=True)
    postcode = models.CharField(max_length=12, blank=True)
    city = models.CharField(max_length=100, blank=True)
    # The contact fields as last imported from Sportlink, written by the import
    # only. A contact field that differs from its copy here was corrected in the
    # registry (by any path: admin, shell, a bulk update()); the reverse-sync
    # step turns each such difference into a Correction (pipelines.corrections).
    sportlink_email = models.CharField(max_length=254, blank=True)
    sportlink_mobile = models.CharField(max_length=40, blank=True)
    sportlink_phone = models.CharField(max_length=40, blank=True)
    sportlink_street = models.CharField(max_length=150, blank=True)
    sportlink_house_number = models.CharField(max_length=20, blank=True)
    sportlink_house_number_addition = models.CharField(max_length=20, blank=True)
    sportlink_postcode = models.CharField(max_length=12, blank=True)
    sportlink_city = models.CharField(max_length=100, blank=True)
    member_since = models.DateField(null=True, blank=True)
    left_on = models.DateField(null=True, blank=True)
    # Set when the member is no longer in the export; the admin filters on it.
    is_former = models.BooleanField(default=False, db_index=True)
    freescout_id = models.PositiveIntegerField(null=True, blank=True)
    # Hash of the customer payload last sent to FreeScout (pipelines.freescout).
    freescout_hash = models.CharField(max_length=64, blank=True)
    # Photo: a file in Django's storage, replaced only when the source bytes change.
    photo = models.FileField(upload_to="members/photos/", blank=True)
    photo_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["last_name", "first_name"]
        indexes = [
            # Admin changelist default ordering and its "^last_name" prefix search.
            models.Index(fields=["last_name", "first_name"], name="member_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.full_name} ({self.knvb_id})"

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.infix, self.last_name) if part)


class Parent(Synced):
    # Parents have no relatiecode in the member export: Sportlink stores them on
    # each child's row, and the import knows them by their email there.
    email = models.CharField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    # The email and phone as last imported from Sportlink, written by the import
    # only (like Member.sportlink_*). `sportlink_email` is also the parent's
    # key for the import, so an email corrected here (pipelines.corrections)
    # keeps the parent's row instead of making a new one.
    sportlink_email = models.CharField(max_length=254, unique=True)
    sportlink_phone = models.CharField(max_length=40, blank=True)
    # Set when no child's row in the export names this parent any more.
    is_former = models.BooleanField(default=False)
    children = models.ManyToManyField(Member, related_name="parents", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


class LapostaSubscription(models.Model):
    """What was last sent to Laposta for one email on one list (written by pipelines.laposta)."""

    list_id = models.CharField(max_length=64)
    email = models.CharField(max_length=254)
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="laposta_subscriptions")
    parent = models.ForeignKey(Parent, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="laposta_subscriptions")
    laposta_member_id = models.CharField(max_length=64, blank=True)
    payload_hash = models.CharField(max_length=64, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["list_id", "email"], name="laposta_list_email_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.email} on {self.list_id}"


class Team(Synced):
    # Sportlink's team id: a renamed team keeps its id, so it updates the same row.
    # Exports without a team id column use the team name as the id.
    sportlink_id = models.CharField("Sportlink team id", max_length=64, unique=True)
    name = models.CharField(max_length=150)
    kind = models.CharField("Teamsoort", max_length=60, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    """Team work history: a member's role in a team from a date, until a date (open = current)."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="team_memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField("Teamrol", max_length=60, blank=True)
    since = models.DateField()
    until = models.DateField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["team", "role", "member"]
        constraints = [
            # One open membership per member, team and role: the sync matches on it.
            models.UniqueConstraint(fields=["member", "team", "role"], condition=Q(until__isnull=True),
                                    name="team_membership_open_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.role} in {self.team_id}"


class Commissie(Synced):
    name = models.CharField(max_length=150, unique=True)
    # Optional: when the export carries a commissie code, it is the stable key.
    sportlink_id = models.CharField(max_length=64, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "commissie"

    def __str__(self) -> str:
        return self.name


class CommissieMembership(models.Model):
    """Commissie work history: a member's function in a commissie, from/until as exported."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="commissie_memberships")
    commissie = models.ForeignKey(Commissie, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField("Functie", max_length=100, blank=True)
    since = models.DateField(null=True, blank=True)
    until = models.DateField(null=True, blank=True)
    # Still in the functions export (False once it disappeared from it).
    is_current = models.BooleanField(default=True)
    source_hash = models.CharField(max_length=64, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["commissie", "role", "member"]
        constraints = [
            models.UniqueConstraint(fields=["member", "commissie", "role", "since"],
                                    name="commissie_membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.role} in {self.commissie_id}"


class DisciplineCase(Synced):
    dossier_id = models.CharField(max_length=32, unique=True)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="discipline_cases")
    match_date = models.DateField(null=True, blank=True)
    match = models.CharField(max_length=200, blank=True)
    team_name = models.CharField(max_length=150, blank=True)
    description = models.TextField(blank=True)
    sanction = models.CharField(max_length=300, blank=True)
    fee = models.DecimalField(max_digits=9, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["-match_date", "dossier_id"]

    def __str__(self) -> str:
        return self.dossier_id


class Contribution(Synced):
    """Nikki contribution of one member in one year (several Nikki lines summed)."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="contributions")
    year = models.PositiveSmallIntegerField()
    nikki_id = models.CharField(max_length=64, blank=True)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    balance = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    status = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-year", "member"]
        constraints = [
            models.UniqueConstraint(fields=["member", "year"], name="contribution_member_year_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.year}"


class CorrectionState(models.TextChoices):
    PENDING = "pending", "to enter in Sportlink"
    CONFLICT = "conflict", "conflict"
    CONFIRMED = "confirmed", "confirmed by the export"
    DISCARDED = "discarded", "Sportlink's value taken"
    WITHDRAWN = "withdrawn", "withdrawn (set back to Sportlink's value)"
    CLOSED = "closed", "closed (left the export)"


#: States still on the worklist.
OPEN_STATES = (CorrectionState.PENDING, CorrectionState.CONFLICT)


class Correction(models.Model):
    """A contact field corrected in the registry that Sportlink does not show yet.

    Written by pipelines.corrections (the reverse-sync step and the admin);
    see docs/volunteers.md ("Corrections") and docs/development.md for the states and their transitions.
    """

    # Exactly one of member and parent (the constraint correction_member_xor_parent).
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.CASCADE, related_name="corrections")
    parent = models.ForeignKey(Parent, null=True, blank=True, on_delete=models.CASCADE, related_name="corrections")
    field = models.CharField(max_length=32, choices=list(CONTACT_FIELDS.items()))
    # What Sportlink shows now (the value to replace; on a conflict, Sportlink's new value).
    sportlink_value = models.CharField("in Sportlink", max_length=254, blank=True)
    # Sportlink's value when the correction was made.
    original_value = models.CharField("Sportlink's value at detection", max_length=254, blank=True)
    our_value = models.CharField("to enter", max_length=254, blank=True)
    state = models.CharField(max_length=12, choices=CorrectionState.choices, default=CorrectionState.PENDING)
    detected_at = models.DateTimeField(default=timezone.now)
    # Known when the correction was made in the admin; empty for other paths.
    detected_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            # One open correction per member and field. Also the index of the
            # worklist, the overview's count and the reverse-sync step's load,
            # which all filter on state IN ('pending', 'conflict').
            models.UniqueConstraint(fields=["member", "field"], condition=Q(state__in=OPEN_STATES),
                                    name="correction_open_unique"),
            models.UniqueConstraint(fields=["parent", "field"], condition=Q(state__in=OPEN_STATES),
                                    name="correction_parent_open_unique"),
            models.CheckConstraint(condition=Q(member__isnull=False, parent__isnull=True)
                                   | Q(member__isnull=True, parent__isnull=False),
                                   name="correction_member_xor_parent"),
        ]

    def __str__(self) -> str:
        owner = self.member_id if self.member_id else f"parent {self.parent_id}"
        return f"{owner} {self.field}: {self.sportlink_value!r} -> {self.our_value!r} ({self.state})"

    @property
    def label(self) -> str:
        return CONTACT_FIELDS.get(self.field, self.field)
