"""Normalised records read from the exports, shared by the readers, the
registry sync and the destinations (Laposta, FreeScout).

The readers (pipelines.readers) turn export rows into these; everything after
the download step works on them, never on raw CSV columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


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
    postcode: str = ""
    city: str = ""
    member_since: date | None = None
    left_on: date | None = None  # Afmelddatum
    row_number: int = 0  # line in the export, for error messages

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.infix, self.last_name) if part)


@dataclass
class ParentRecord:
    email: str  # the key: parents are matched by email
    name: str = ""
    phone: str = ""
    children: list[str] = field(default_factory=list)  # knvb_ids
