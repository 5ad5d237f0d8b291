"""Normalised records read from the exports, shared by the readers, the
registry sync and the destinations (Laposta, FreeScout).

The readers (pipelines.readers) turn export rows into these; everything after
the download step works on them, never on raw CSV columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass
class MemberRecord:
    knvb_id: str  # Sportlink "Rel. code" (relatiecode)
    first_name: str = ""  # Roepnaam
    infix: str = ""  # Tussenvoegsel(s)
    last_name: str = ""  # Achternaam
    initials: str = ""
    email: str = ""
    gender: str = ""  # "M" / "V" / ""
    birth_date: date | None = None
    member_type: str = ""  # Lidsoort
    age_category: str = ""  # Leeftijdscategorie
    teams: list[str] = field(default_factory=list)  # Lokale teams
    phone: str = ""
    mobile: str = ""
    street: str = ""
    house_number: str = ""
    house_number_addition: str = ""  # Toevoeging
    postcode: str = ""
    city: str = ""
    member_since: date | None = None
    left_on: date | None = None  # Afmelddatum
    row_number: int = 0  # line in the export, for error messages
    source_hash: str = ""  # hash of the export row (pipelines.readers.member_row_hash)

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.infix, self.last_name) if part)


@dataclass
class ParentRecord:
    email: str  # the key: parents are matched by email
    name: str = ""
    phone: str = ""
    children: list[str] = field(default_factory=list)  # knvb_ids


@dataclass
class TeamRoleRecord:
    """One row of the team export: a person in a role in a team."""

    knvb_id: str
    team_name: str
    team_id: str = ""  # Sportlink's team id when exported, else the team name
    team_kind: str = ""  # Teamsoort
    role: str = ""  # Teamrol


@dataclass
class CommissieRoleRecord:
    """One row of the functions export: a person's function in a commissie."""

    knvb_id: str
    commissie_name: str
    commissie_id: str = ""
    role: str = ""  # Functie
    since: date | None = None
    until: date | None = None


@dataclass
class DisciplineRecord:
    dossier_id: str
    knvb_id: str
    match_date: date | None = None
    match: str = ""
    team_name: str = ""
    description: str = ""
    sanction: str = ""
    fee: Decimal | None = None
    status: str = ""


@dataclass
class ContributionRecord:
    """A member's Nikki contribution for one year (the export's lines summed)."""

    knvb_id: str
    year: int
    nikki_id: str = ""
    total: Decimal = Decimal("0")
    balance: Decimal = Decimal("0")
    status: str = ""
    lines: int = 1
    row_number: int = 0  # the first line in the export, for error messages
