"""What each export is: its columns, their headings and how a file is recognised.

A FileSpec per kind of export (members, teams, functions, discipline, Nikki)
lists its columns with the heading Sportlink writes and the known
alternatives; `classify` tells the kind of a file from its header row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


def normalise_heading(heading: str) -> str:
    """`E-mailadres`, `e-mail adres ` and `EMAILADRES` all become `emailadres`."""
    return re.sub(r"[^0-9a-z]", "", heading.casefold().replace("\ufeff", ""))


@dataclass(frozen=True)
class Column:
    key: str
    headings: tuple[str, ...]  # the first is the one Sportlink writes; the rest are alternatives
    required: bool = False

    @property
    def normalised(self) -> tuple[str, ...]:
        return tuple(normalise_heading(h) for h in self.headings)


@dataclass(frozen=True)
class FileSpec:
    kind: str  # "members", "teams", ...
    title: str
    columns: tuple[Column, ...]
    # Headings that tell this kind of file apart from the others (any one of them).
    signature: tuple[str, ...]
    # Alternatives of which at least one must be present, e.g. a split name or `Naam`.
    one_of: tuple[tuple[str, ...], ...] = ()
    #: What a data row is, for "the export has a header row but no member rows".
    row_noun: str = "data rows"
    #: A header with no rows is a real answer (a club with no discipline cases
    #: today), not a failed export. Only for kinds nothing is removed from.
    may_be_empty: bool = False

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)


def _c(key: str, *headings: str, required: bool = False) -> Column:
    return Column(key, headings, required)


RELATIECODE = ("Rel. code", "Relatiecode", "Rel.code", "PublicPersonId", "KNVB ID")

MEMBERS = FileSpec(
    kind="members",
    title="Members (Sportlink Club, one row per person)",
    signature=RELATIECODE,
    one_of=(("last_name", "full_name"),),
    row_noun="member rows",
    columns=(
        _c("knvb_id", *RELATIECODE, required=True),
        _c("full_name", "Naam", "Volledige naam"),
        _c("first_name", "Roepnaam", "Voornaam"),
        _c("initials", "Voorletter(s)", "Voorletters"),
        _c("infix", "Tussenvoegsel(s)", "Tussenvoegsels", "Tussenvoegsel"),
        _c("last_name", "Achternaam"),
        _c("member_type", "Lidsoort", "Soort lid", "Type lid"),
        _c("gender", "Geslacht"),
        _c("birth_date", "Geb.dat.", "Geboortedatum"),
        _c("email", "E-mailadres", "E-mail", "Email"),
        _c("age_category", "Leeftijdscategorie"),
        _c("teams", "Lokale teams"),
        _c("phone", "Telefoon", "Telefoonnummer", "Vast telefoonnummer"),
        _c("mobile", "Mobiel", "Mobiel telefoonnummer", "Mobiele telefoon"),
        _c("street", "Straat", "Straatnaam"),
        _c("house_number", "Huisnummer", "Huisnr."),
        _c("house_number_addition", "Toevoeging", "Huisnummertoevoeging", "Huisnr. toev."),
        _c("postcode", "Postcode"),
        _c("city", "Woonplaats", "Plaats"),
        _c("member_since", "Lid sinds", "Lid vanaf"),
        _c("left_on", "Afmelddatum", "Einde relatie", "Lid tot"),
        _c("parent1_name", "Naam ouder 1", "NameParent1"),
        _c("parent1_email", "E-mailadres ouder 1", "EmailAddressParent1", "E-mail ouder 1"),
        _c("parent1_phone", "Telefoon ouder 1", "TelephoneParent1"),
        _c("parent2_name", "Naam ouder 2", "NameParent2"),
        _c("parent2_email", "E-mailadres ouder 2", "EmailAddressParent2", "E-mail ouder 2"),
        _c("parent2_phone", "Telefoon ouder 2", "TelephoneParent2"),
    ),
)

TEAMS = FileSpec(
    kind="teams",
    title="Teams with their players and staff (one row per person per team per role)",
    signature=("Teamrol",),
    row_noun="team rows",
    columns=(
        _c("team_name", "Team", "Teamnaam", required=True),
        _c("team_id", "Teamcode", "Team-ID", "Team id", "Teamnummer"),
        _c("team_kind", "Teamsoort", "Soort team"),
        _c("role", "Teamrol", "Rol", required=True),
        _c("knvb_id", *RELATIECODE, required=True),
        _c("full_name", "Naam"),
        _c("first_name", "Roepnaam"),
        _c("last_name", "Achternaam"),
        _c("email", "E-mailadres", "E-mail"),
    ),
)

FUNCTIONS = FileSpec(
    kind="functions",
    title="Functions in commissies (one row per person per function)",
    signature=("Commissie",),
    row_noun="function rows",
    columns=(
        _c("commissie_name", "Commissie", "Commissienaam", required=True),
        _c("commissie_id", "Commissiecode", "Commissie-ID", "Commissie id"),
        _c("role", "Functie", "Rol", required=True),
        _c("knvb_id", *RELATIECODE, required=True),
        _c("full_name", "Naam"),
        _c("since", "Vanaf", "Van", "Begindatum", "Datum vanaf"),
        _c("until", "Tot en met", "Tot", "Einddatum", "Datum tot en met"),
    ),
)

DISCIPLINE = FileSpec(
    kind="discipline",
    title="Discipline cases (one row per case)",
    signature=("Dossiernummer", "Dossier", "Dossier-ID", "Zaaknummer"),
    row_noun="discipline case rows",
    may_be_empty=True,
    columns=(
        _c("dossier_id", "Dossiernummer", "Dossier", "Dossier-ID", "Zaaknummer", required=True),
        _c("knvb_id", *RELATIECODE, required=True),
        _c("full_name", "Naam"),
        _c("match_date", "Wedstrijddatum", "Datum"),
        _c("match", "Wedstrijd"),
        _c("team_name", "Team"),
        _c("description", "Overtreding", "Omschrijving"),
        _c("sanction", "Strafmaatregel", "Straf", "Sanctie"),
        _c("fee", "Boete", "Kosten", "Administratiekosten"),
        _c("status", "Status"),
    ),
)

NIKKI = FileSpec(
    kind="nikki",
    title="Nikki contributions (one row per member per year; several lines are summed)",
    signature=("Nikki ID", "Saldo"),
    row_noun="contribution rows",
    columns=(
        _c("year", "Jaar", required=True),
        _c("knvb_id", "Lidnr.", "Lidnummer", *RELATIECODE, required=True),
        _c("full_name", "Naam"),
        _c("address", "Adres"),
        _c("team_name", "Team"),
        _c("nikki_id", "Nikki ID", "NikkiID"),
        _c("total", "Bedrag", "Totaal", "Contributie", "Te betalen"),
        _c("balance", "Saldo", required=True),
        _c("status", "Status"),
    ),
)

# Order matters: the most specific signature is tried first (a team export
# also has a `Rel. code` column, like the member export).
SPECS: tuple[FileSpec, ...] = (NIKKI, DISCIPLINE, FUNCTIONS, TEAMS, MEMBERS)
SPECS_BY_KIND = {spec.kind: spec for spec in SPECS}


def classify(header: Iterable[str]) -> FileSpec | None:
    """The kind of export a header row belongs to, or None."""
    present = {normalise_heading(h) for h in header}
    for spec in SPECS:
        if any(normalise_heading(h) in present for h in spec.signature):
            return spec
    return None
