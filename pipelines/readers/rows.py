"""Rows to records: one reader per kind of export, and what they all share.

`read_members`, `read_teams`, `read_functions`, `read_discipline` and
`read_nikki` turn a Table into a ReadResult: the records, a RowError per bad
row (the other rows go on), the keys seen on bad rows (`bad_keys`, never
retired because of this export) and what else a pipeline needs (`extra`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.readers.files import EmptyExport, Table
from pipelines.readers.specs import MEMBERS
from pipelines.readers.values import (
    BadValue,
    multi,
    parse_amount,
    parse_date,
    parse_email,
    parse_gender,
    parse_knvb_id,
    record_checker,
    split_naam,
)
from pipelines.records import (
    CommissieRoleRecord,
    ContributionRecord,
    DisciplineRecord,
    MemberRecord,
    ParentRecord,
    TeamRoleRecord,
)


@dataclass
class RowError:
    row: int
    message: str
    identifier: str = ""
    identifier_kind: str = ""
    filename: str = ""

    def as_error(self) -> dict:
        where = f"{self.filename} row {self.row}" if self.filename else f"row {self.row}"
        message = f"{where}: {self.message}"
        if self.message.startswith(f"row {self.row} "):  # "row 7 has 12 of 17 columns; ..."
            message = f"{self.filename} {self.message}" if self.filename else self.message
        return {"identifier": self.identifier, "identifier_kind": self.identifier_kind, "message": message}



def _best_identifier(row: dict[str, str]) -> tuple[str, str]:
    for key, kind in (("knvb_id", "knvb_id"), ("email", "email"), ("dossier_id", "dossier_id"),
                      ("team_name", "team"), ("commissie_name", "commissie"), ("full_name", "name")):
        value = row.get(key, "").strip()
        if value:
            return value[:255], kind  # as it is in the file: a volunteer searches for what they see
    return "", ""



# --- row -> records --------------------------------------------------------------


@dataclass
class ReadResult:
    records: list = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    # Keys seen on bad rows: they are in the export, so they are not "former".
    bad_keys: set[str] = field(default_factory=set)
    rows: int = 0
    extra: dict = field(default_factory=dict)


def read_table(table: Table, convert: Callable[[dict[str, str]], object], *,
               key: Callable[[object], str] | None = None,
               result: ReadResult | None = None) -> ReadResult:
    """Convert every row; a damaged row or a BadValue becomes a RowError and the rows go on.

    With `key`, a second row with the same key is an error (the first wins).
    Every record must fit the registry (`record_checker`). A file with a header
    and no data rows raises EmptyExport, unless its kind may be empty
    (FileSpec.may_be_empty: discipline cases).
    """
    result = result or ReadResult()
    seen: dict[str, int] = {}
    fits = record_checker(table)
    for number, row, problem in table.checked():
        result.rows += 1
        try:
            if problem:
                raise BadValue(problem)
            record = convert(row)
            fits(record)
            if key is not None:
                record_key = key(record)
                if record_key in seen:
                    raise BadValue(f"duplicate relatiecode {record_key}: already on row {seen[record_key]}; "
                                   "this row is ignored")
                seen[record_key] = number
            if hasattr(record, "row_number"):
                record.row_number = number
        except (BadValue, ValueError) as exc:
            _row_error(result, table, number, row, exc)
            continue
        result.records.append(record)
    if not result.rows and not table.spec.may_be_empty:
        raise EmptyExport(table.filename, table.spec)
    result.bad_keys |= table.suspect_keys
    return result


def _row_error(result: ReadResult, table: Table, number: int, row: dict[str, str], exc: Exception) -> None:
    identifier, kind = _best_identifier(row)
    result.errors.append(RowError(number, str(exc), identifier, kind, table.filename))
    code = row.get("knvb_id", "").strip().upper()
    if code:
        result.bad_keys.add(code)



def member_from_row(row: dict[str, str]) -> MemberRecord:
    knvb_id = parse_knvb_id(row.get("knvb_id", ""))
    first, infix, last, initials = row.get("first_name", ""), row.get("infix", ""), row.get("last_name", ""), \
        row.get("initials", "")
    if not last and row.get("full_name"):
        n_first, n_infix, n_last, n_initials = split_naam(row["full_name"])
        first, infix, last, initials = first or n_first, infix or n_infix, n_last, initials or n_initials
    return MemberRecord(
        knvb_id=knvb_id,
        first_name=first,
        infix=infix,
        last_name=last,
        initials=initials,
        email=parse_email(row.get("email", "")),
        gender=parse_gender(row.get("gender", "")),
        birth_date=parse_date(row.get("birth_date", ""), "birth date"),
        member_type=row.get("member_type", ""),
        age_category=row.get("age_category", ""),
        teams=multi(row.get("teams", "")),
        phone=row.get("phone", ""),
        mobile=row.get("mobile", ""),
        street=row.get("street", ""),
        house_number=row.get("house_number", ""),
        house_number_addition=row.get("house_number_addition", ""),
        postcode=row.get("postcode", "").upper(),
        city=row.get("city", ""),
        member_since=parse_date(row.get("member_since", ""), "member since date"),
        left_on=parse_date(row.get("left_on", ""), "Afmelddatum"),
    )


MEMBER_KEYS = tuple(column.key for column in MEMBERS.columns)


def member_row_hash(row: dict[str, str]) -> str:
    """The hash of a member row's mapped cells, in a fixed column order.

    Independent of the export's column order and of columns we do not read;
    a column that appears or disappears changes it, as it should.
    """
    get = row.get
    return hashlib.blake2b("\x1f".join([get(key, "") for key in MEMBER_KEYS]).encode(),
                           digest_size=16).hexdigest()


def read_members(table: Table, *, known: dict[str, str] | None = None) -> ReadResult:
    """Members and, from the parent columns, their parents (keyed by email).

    Every record carries `source_hash`, the hash of its row (member_row_hash).
    With `known` (relatiecode -> hash stored in the registry), a row whose
    hash is unchanged is not converted: its relatiecode goes to
    `result.extra["unchanged"]` instead of a record. Its parents are still
    read, and a bad row never has a stored hash, so it is reported every time.
    """
    parents: dict[str, ParentRecord] = {}
    result = ReadResult()
    unchanged: list[str] = []
    seen: dict[str, int] = {}
    fits = record_checker(table)
    for number, row, problem in table.checked():
        result.rows += 1
        code = row.get("knvb_id", "").upper()
        try:
            if problem:
                raise BadValue(problem)
            if code in seen:
                raise BadValue(f"duplicate relatiecode {row['knvb_id']}: already on row {seen[code]}; "
                               "this row is ignored")
            digest = member_row_hash(row)
            if known is not None and code and known.get(code) == digest:
                member = None  # stored from this very row, so it fitted
            else:
                member = member_from_row(row)
                fits(member)
                member.row_number = number
                member.source_hash = digest
        except BadValue as exc:
            _row_error(result, table, number, row, exc)
            continue
        seen[code] = number
        if member is None:
            unchanged.append(code)
        else:
            result.records.append(member)
        for n in (1, 2):
            email = row.get(f"parent{n}_email", "")
            if not email:
                continue
            name, phone = row.get(f"parent{n}_name", ""), row.get(f"parent{n}_phone", "")
            try:
                email = parse_email(email, f"email address of parent {n}").lower()
                fits(ParentRecord(email=email, name=name, phone=phone))
            except BadValue as exc:
                message = str(exc) if "parent" in str(exc) else f"parent {n}: {exc}"
                result.errors.append(RowError(number, message, row["knvb_id"], "knvb_id", table.filename))
                continue
            parent = parents.get(email)
            if parent is None:
                parent = parents[email] = ParentRecord(email=email, name=name, phone=phone)
            else:
                parent.name = parent.name or name
                parent.phone = parent.phone or phone
            if code not in parent.children:
                parent.children.append(code)
    if not result.rows:
        raise EmptyExport(table.filename, table.spec)
    result.bad_keys |= table.suspect_keys
    result.extra["parents"] = list(parents.values())
    result.extra["unchanged"] = unchanged
    return result


def read_teams(table: Table) -> ReadResult:
    def convert(row: dict[str, str]) -> TeamRoleRecord:
        name = row.get("team_name", "")
        if not name:
            raise BadValue("the team name (Team) is missing")
        return TeamRoleRecord(
            knvb_id=parse_knvb_id(row.get("knvb_id", "")),
            team_name=name,
            team_id=row.get("team_id", "") or name,
            team_kind=row.get("team_kind", ""),
            role=row.get("role", ""),
        )

    return read_table(table, convert)


def read_functions(table: Table) -> ReadResult:
    def convert(row: dict[str, str]) -> CommissieRoleRecord:
        name = row.get("commissie_name", "")
        if not name:
            raise BadValue("the commissie name (Commissie) is missing")
        return CommissieRoleRecord(
            knvb_id=parse_knvb_id(row.get("knvb_id", "")),
            commissie_name=name,
            commissie_id=row.get("commissie_id", ""),
            role=row.get("role", ""),
            since=parse_date(row.get("since", ""), "Vanaf"),
            until=parse_date(row.get("until", ""), "Tot en met"),
        )

    return read_table(table, convert)


def read_discipline(table: Table) -> ReadResult:
    seen: dict[str, int] = {}

    def convert(row: dict[str, str]) -> DisciplineRecord:
        dossier = row.get("dossier_id", "").strip()
        if not dossier:
            raise BadValue("the dossier number (Dossiernummer) is missing")
        fee = row.get("fee", "")
        record = DisciplineRecord(
            dossier_id=dossier,
            knvb_id=parse_knvb_id(row.get("knvb_id", "")),
            match_date=parse_date(row.get("match_date", ""), "Wedstrijddatum"),
            match=row.get("match", ""),
            team_name=row.get("team_name", ""),
            description=row.get("description", ""),
            sanction=row.get("sanction", ""),
            fee=parse_amount(fee, "Boete") if fee else None,
            status=row.get("status", ""),
        )
        if dossier in seen:
            raise BadValue(f"duplicate dossier {dossier}: already on row {seen[dossier]}; this row is ignored")
        seen[dossier] = 0
        return record

    result = read_table(table, convert)
    return result


# The worst status wins when lines of one member and year are summed.
_STATUS_RANK = {"betaald": 0, "voldaan": 0, "": 1, "deels betaald": 2, "open": 3, "herinnering": 4,
                "achterstallig": 5, "incasso": 6, "oninbaar": 7}


def status_rank(status: str) -> int:
    return _STATUS_RANK.get(status.strip().casefold(), 2)


def read_nikki(table: Table) -> ReadResult:
    """Contribution lines, summed per member and year (worst status wins)."""

    def convert(row: dict[str, str]) -> ContributionRecord:
        year_text = row.get("year", "").strip()
        if not re.fullmatch(r"\d{4}", year_text):
            raise BadValue(f"year {year_text!r} is not a year")
        balance = parse_amount(row.get("balance", ""), "Saldo")
        total_text = row.get("total", "")
        return ContributionRecord(
            knvb_id=parse_knvb_id(row.get("knvb_id", "")),
            year=int(year_text),
            nikki_id=row.get("nikki_id", ""),
            total=parse_amount(total_text, "Bedrag") if total_text else balance,
            balance=balance,
            status=row.get("status", ""),
            lines=1,
        )

    result = read_table(table, convert)
    merged: dict[tuple[str, int], ContributionRecord] = {}
    for line in result.records:
        key = (line.knvb_id, line.year)
        current = merged.get(key)
        if current is None:
            merged[key] = line
            continue
        current.total += line.total
        current.balance += line.balance
        current.lines += 1
        if status_rank(line.status) > status_rank(current.status):
            current.status = line.status
        if line.nikki_id and line.nikki_id not in current.nikki_id.split(","):
            current.nikki_id = ",".join(filter(None, (current.nikki_id, line.nikki_id)))
    result.extra["lines"] = len(result.records)
    # The sums and the joined Nikki ids must fit too (checked per line above, again summed).
    fits = record_checker(table)
    result.records = []
    for record in merged.values():
        try:
            fits(record)
        except BadValue as exc:
            result.errors.append(RowError(record.row_number, f"{exc} (the Nikki lines of {record.year} summed)",
                                          record.knvb_id, "knvb_id", table.filename))
            result.bad_keys.add(record.knvb_id)
            continue
        result.records.append(record)
    return result


READERS: dict[str, Callable[[Table], ReadResult]] = {
    "members": read_members,
    "teams": read_teams,
    "functions": read_functions,
    "discipline": read_discipline,
    "nikki": read_nikki,
}
