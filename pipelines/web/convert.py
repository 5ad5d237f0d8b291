"""Sportlink's and Nikki's own data, turned into the tables the CSV readers read.

One record model, two sources: each function here builds a
`pipelines.readers.Table` with the same FileSpec and column keys as the CSV
export of that kind, so `read_members`, `read_teams`, ... and everything after
them (validation, field limits, the removal guard) run unchanged. Values are
given as the export would give them (text, stripped by `Table.dicts`); the
readers do the parsing, so a bad date in the JSON is the same row error as a
bad date in a CSV file.

Row numbers are 1-based positions in the JSON list (`SearchMembers record 7`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from pipelines.readers import (
    DISCIPLINE,
    FUNCTIONS,
    MEMBERS,
    NIKKI,
    TEAMS,
    ExportError,
    Table,
    decode,
    normalise_heading,
)

# Table key -> Sportlink member JSON key (SearchMembers), in the members FileSpec's terms.
MEMBER_FIELDS: tuple[tuple[str, str], ...] = (
    ("knvb_id", "PublicPersonId"),
    ("first_name", "FirstName"),
    ("initials", "Initials"),
    ("infix", "Infix"),
    ("last_name", "LastName"),
    ("member_type", "TypeOfMemberDescription"),
    ("gender", "GenderCode"),
    ("birth_date", "DateOfBirth"),
    ("email", "Email"),
    ("age_category", "AgeClassDescription"),
    ("teams", "UnionTeams"),
    ("phone", "Telephone"),
    ("mobile", "Mobile"),
    ("street", "StreetName"),
    ("house_number", "AddressNumber"),
    ("house_number_addition", "AddressNumberAppendix"),
    ("postcode", "ZipCode"),
    ("city", "City"),
    ("member_since", "MemberSince"),
    ("left_on", "RelationEnd"),
    ("parent1_name", "NameParent1"),
    ("parent1_email", "EmailAddressParent1"),
    ("parent1_phone", "TelephoneParent1"),
    ("parent2_name", "NameParent2"),
    ("parent2_email", "EmailAddressParent2"),
    ("parent2_phone", "TelephoneParent2"),
)
_MEMBER_MAPPING = {key: index for index, (key, _json) in enumerate(MEMBER_FIELDS)}
_MEMBER_JSON_KEYS = tuple(json_key for _key, json_key in MEMBER_FIELDS)
_INFIX = _MEMBER_MAPPING["infix"]
_TEAMS = _MEMBER_MAPPING["teams"]


def _table(filename: str, spec: Any, mapping: dict[str, int], rows: Iterable[tuple[Any, ...]], *,
           lines: bool = False) -> Table:
    """A Table as an export would give it: one heading per column (the keys, in
    column order) and each row as (row number, cells, lines it took: 1), so
    the readers check every web row exactly as they check an export's.
    `lines`: the rows already carry their line count (the members' hot path)."""
    header = sorted(mapping, key=mapping.__getitem__)
    numbered: Iterator[tuple[int, list[str], int]] = (
        iter(rows) if lines else ((number, cells, 1) for number, cells in rows))
    return Table(filename, spec, mapping, numbered, header=header)


class UnexpectedShape(ExportError):
    """The site answered, but not with the JSON shape the facts describe."""


def _text(value: Any) -> str:
    """A JSON value as the export would show it: null is empty, numbers as written."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise ValueError(f"unexpected value {json.dumps(value)[:60]}")


def parse_json(data: bytes | str) -> Any:
    """JSON as the sites send it: orjson (a 50,000-member search is ~3x faster
    to parse), falling back to the standard parser for what orjson refuses
    (NaN, Infinity). ValueError when it is not JSON. orjson reads an integer
    beyond 64 bits as a float; the sites send identifiers as strings."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def load_json(data: bytes, what: str) -> Any:
    try:
        return parse_json(data)
    except ValueError:
        raise UnexpectedShape(f"{what} did not answer with JSON: {_head(data)}") from None


def _head(data: bytes, limit: int = 300) -> str:
    return data[:limit * 4].decode("utf-8", errors="replace")[:limit]


def records_of(body: Any, key: str, what: str) -> list[dict]:
    """The list under `key`; a lone object counts as a list of one (as the site sometimes sends)."""
    if not isinstance(body, dict) or key not in body:
        raise UnexpectedShape(f"{what} answered without a {key!r} list: {_head(json.dumps(body).encode())}")
    items = body[key]
    if items is None:
        return []
    if isinstance(items, dict):
        return [items]
    if not isinstance(items, list):
        raise UnexpectedShape(f"{what}: {key!r} is not a list")
    return items


def members_table(body: Any, *, filename: str = "SearchMembers") -> Table:
    """SearchMembers `{"Members": [...]}` as the members export."""
    items = records_of(body, "Members", "SearchMembers")

    def rows() -> Iterator[tuple[int, list[str], int]]:
        keys = _MEMBER_JSON_KEYS
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise UnexpectedShape(f"SearchMembers record {number} is not an object")
            get = item.get
            # Runs once per member of a 50,000-member club: strings and nulls take the short
            # path; anything else (a number, a nested value) is written out as text.
            # Each cell is a str (mypy does not narrow on `__class__ is str`).
            cells: list[Any] = [value if value.__class__ is str else "" if value is None else _text_or_json(value)
                     for value in map(get, keys)]
            if cells[_INFIX]:
                cells[_INFIX] = cells[_INFIX].lower()
            if not cells[_TEAMS]:
                cells[_TEAMS] = _text_or_json(get("ClubTeams"))
            yield number, cells, 1

    return _table(filename, MEMBERS, dict(_MEMBER_MAPPING), rows(), lines=True)


def _text_or_json(value: Any) -> str:
    try:
        return _text(value)
    except ValueError:
        return json.dumps(value)


TEAM_KEYS = ("team_name", "team_id", "team_kind", "role", "knvb_id")


def team_rows(team: dict, people: Iterable[dict], *, players: bool) -> Iterator[list[str]]:
    """One row per person of one team (`{"Person": [...]}` of the team-details page)."""
    name = _text_or_json(team.get("TeamName") or team.get("Name"))
    team_id = _text_or_json(team.get("PublicTeamId"))
    kind = _text_or_json(team.get("GameActivityDescription"))
    for person in people:
        if not isinstance(person, dict):
            continue
        if players:
            role = _text_or_json(person.get("RoleFunctionDescription")) or "Teamspeler"
        else:
            role = _text_or_json(person.get("FunctionDescription")) or "Staf"
        yield [name, team_id, kind, role, _text_or_json(person.get("PublicPersonId"))]


def teams_table(rows: list[list[str]], *, filename: str = "Teams") -> Table:
    return _table(filename, TEAMS, {key: i for i, key in enumerate(TEAM_KEYS)}, enumerate(rows, start=1))


FUNCTION_KEYS = ("commissie_name", "commissie_id", "role", "knvb_id", "since", "until")


def is_active(item: dict) -> bool:
    """Active: status ACTIVE/Actief, or no end date (the facts' rule)."""
    status = _text_or_json(item.get("Status")).strip().casefold()
    return status in {"active", "actief"} or not item.get("RelationEnd")


def committee_rows(knvb_id: str, body: Any) -> list[list[str]]:
    """A member's current commissie functions (`{"Committee": [...]}`) as function-export rows."""
    rows = []
    for item in records_of(body, "Committee", "MemberCommittees"):
        if isinstance(item, dict) and is_active(item):
            rows.append([_text_or_json(item.get("CommitteeName")), _text_or_json(item.get("PublicCommitteeId")),
                         _text_or_json(item.get("CommitteeFunctionName")), knvb_id,
                         _text_or_json(item.get("RelationStart")), _text_or_json(item.get("RelationEnd"))])
    return rows


def functions_table(rows: list[list[str]], *, filename: str = "MemberCommittees") -> Table:
    return _table(filename, FUNCTIONS, {key: i for i, key in enumerate(FUNCTION_KEYS)},
                  enumerate(rows, start=1))


DISCIPLINE_FIELDS: tuple[tuple[str, str], ...] = (
    ("dossier_id", "DossierId"),
    ("knvb_id", "PublicPersonId"),
    ("match_date", "MatchDate"),
    ("match", "MatchDescription"),
    ("team_name", "TeamName"),
    ("description", "ChargeDescription"),
    ("sanction", "SanctionDescription"),
    ("fee", "AdministrativeFee"),
    ("status", "Status"),
)


def discipline_cases(body: Any) -> list:
    """The case list: the body itself, or under Cases, Results, Items or Data; anything else fails."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("Cases", "Results", "Items", "Data"):
            if isinstance(body.get(key), list):
                return body[key]
    raise UnexpectedShape("DisciplineClubCasesPlayer answered with an unknown shape (expected a list, or one "
                          f"under Cases, Results, Items or Data): {_head(json.dumps(body).encode())}")


def _fee(value: Any) -> str:
    # A JSON number is an amount in euros with a decimal point; never let
    # 1.250 read as the Dutch thousands `1.250`.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return f"{Decimal(str(value)):.2f}"
        except InvalidOperation:
            return str(value)
    return _text_or_json(value)


def discipline_table(body: Any, *, filename: str = "DisciplineClubCasesPlayer") -> Table:
    cases = discipline_cases(body)
    keys = tuple(json_key for _key, json_key in DISCIPLINE_FIELDS)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for number, case in enumerate(cases, start=1):
            if not isinstance(case, dict):
                raise UnexpectedShape(f"DisciplineClubCasesPlayer case {number} is not an object")
            cells = [_text_or_json(case.get(key)) for key in keys]
            cells[7] = _fee(case.get("AdministrativeFee"))
            yield number, cells

    return _table(filename, DISCIPLINE, {key: i for i, (key, _json) in enumerate(DISCIPLINE_FIELDS)}, rows())


# --- Nikki ------------------------------------------------------------------------

NIKKI_KEYS = ("year", "knvb_id", "nikki_id", "balance", "status", "total")


def nikki_amounts(csv_bytes: bytes | None) -> dict[str, str]:
    """nikki_id -> `hoofdsom` from Nikki's CSV report (`;`, a header, maybe a BOM; outer quotes stripped)."""
    if not csv_bytes:
        return {}
    lines = decode(csv_bytes).lstrip("\ufeff").splitlines()
    if not lines:
        return {}
    header = [normalise_heading(cell.strip().strip('"')) for cell in lines[0].split(";")]
    try:
        id_at, amount_at = header.index("nikkiid"), header.index("hoofdsom")
    except ValueError:
        raise UnexpectedShape("Nikki's CSV report has no nikki_id and hoofdsom columns (headings: "
                              f"{lines[0][:200]})") from None
    amounts: dict[str, str] = {}
    width = max(id_at, amount_at) + 1
    for line in lines[1:]:
        cells = [cell.strip().strip('"') for cell in line.split(";")]
        if len(cells) >= width and cells[id_at]:
            amounts[cells[id_at]] = cells[amount_at]
    return amounts


def nikki_table(table_rows: list[list[str]], csv_bytes: bytes | None = None, *,
                filename: str = "Nikki leden") -> Table:
    """Nikki's members table (cells: 0 year, 3 KNVB id, 5 Nikki id, 6 saldo, 7 status) with the
    CSV report's `hoofdsom` joined on the Nikki id; without the report the total is the balance."""
    amounts = nikki_amounts(csv_bytes)
    rows = []
    for number, cells in enumerate(table_rows, start=1):
        if len(cells) < 8:
            raise UnexpectedShape(f"Nikki's members table row {number} has {len(cells)} cells, expected 8 or more")
        nikki_id = cells[5].strip()
        rows.append((number, [cells[0], cells[3], nikki_id, cells[6], cells[7], amounts.get(nikki_id, "")]))
    return _table(filename, NIKKI, {key: i for i, key in enumerate(NIKKI_KEYS)}, rows)
