"""The club registry: what the pipelines read from Sportlink and Nikki.

Every synced row keeps `source_hash` (a hash of the normalised source record)
and `last_synced_at`: the sync compares hashes loaded in one query per table,
so an unchanged record is skipped without touching its row. Members who leave
the export are marked former (`is_former`), never deleted: their history
(teams, commissies, contributions, discipline cases) stays.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


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
    postcode = models.CharField(max_length=12, blank=True)
    city = models.CharField(max_length=100, blank=True)
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
    # Parents have no relatiecode in the member export: they are keyed by email.
    email = models.CharField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=40, blank=True)
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
