"""Read Sportlink Club and Nikki CSV exports into records.

The exports come from volunteers, so the reader is forgiving about form and
strict about content:

- bytes: UTF-8 with or without BOM, else Windows-1252 (old exports, Excel
  re-saves); CRLF or LF; `;`, `,` or tab separated (taken from the header row);
- headings: matched case- and punctuation-insensitively, with known
  alternatives (`E-mail` / `E-mailadres`); unknown columns are ignored; a
  missing required heading raises MissingColumns naming the file and headings;
- a file is recognised by its header row, never by its name;
- a bad row (no relatiecode, a date that is not a date, an invalid email, a
  duplicate relatiecode) becomes a RowError with its row number and the best
  identifier available; the other rows go on.

Nothing damaged is ever used (docs/safe-sync.md): an empty, binary or
header-only file fails as a whole with a message naming the file; a row with
more or fewer cells than the header (a file cut off mid-row, a lost or extra
separator, a quote that is never closed), with bytes that are not valid text,
or a last row without its line break is a RowError and its key goes to
`bad_keys` (so nobody is retired because of it); every value is checked
against the registry field it goes to (length, choices, digits) before any
write (`check_fits`), so the same rules hold on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from operator import itemgetter
from typing import Any

from pipelines.records import (
    CommissieRoleRecord,
    ContributionRecord,
    DisciplineRecord,
    MemberRecord,
    ParentRecord,
    TeamRoleRecord,
)

# --- decoding and splitting ------------------------------------------------------


def decode(data: bytes) -> str:
    """Text of an export: UTF-8 (BOM or not, UTF-16 with BOM) or else Windows-1252."""
    return decode_checked(data)[0]


# A well-formed UTF-8 multi-byte character. Windows-1252 text almost never
# contains one by accident (it would take e.g. `Ã` followed by `©`).
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
#: What replaces bytes that are not valid text; a row holding it is damaged.
REPLACEMENT = "\ufffd"


def decode_checked(data: bytes) -> tuple[str, bool]:
    """(text, damaged): like `decode`, and whether some bytes were not valid text.

    A UTF-8 file with a few damaged bytes is still read as UTF-8 (the damaged
    characters become U+FFFD and their rows are not used) instead of as
    Windows-1252, which would turn every `ë` of every other row into `Ã«`.
    A file is taken for UTF-8 when it has at least as many valid multi-byte
    characters as invalid bytes, else for Windows-1252.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8", errors="replace")
        return text, REPLACEMENT in text and REPLACEMENT.encode() not in data
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), False
        except UnicodeDecodeError:
            return data.decode("utf-16", errors="replace"), True
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    # In Windows-1252 text nearly every non-ASCII byte is invalid UTF-8 and a
    # valid multi-byte sequence is a rare accident; in a damaged UTF-8 file the
    # valid characters are the many and the invalid bytes the few.
    if len(_UTF8_MULTIBYTE.findall(data)) >= text.count(REPLACEMENT):
        return text, True
    try:
        return data.decode("cp1252"), False
    except UnicodeDecodeError:
        # Windows-1252 leaves five bytes undefined; latin-1 maps every byte.
        return data.decode("latin-1"), False


def detect_separator(header_line: str) -> str:
    """The separator of a CSV file, from its header row (outside quotes)."""
    counts = {";": 0, ",": 0, "\t": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda sep: (counts[sep], sep == ";"))
    return best if counts[best] else ";"


def split_rows(text: str) -> tuple[list[str], Iterator[tuple[int, list[str], int]]]:
    """The header and an iterator of (row number, cells, lines); row 1 is the header.

    The row number is the line the row starts on; `lines` is how many lines
    it spans (more than 1 only for a quoted value with a line break in it,
    or a quote that is never closed).
    """
    end = text.find("\n")
    first_line = text if end < 0 else text[:end]
    sep = detect_separator(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"', skipinitialspace=False)
    try:
        header = next(reader)
    except StopIteration:
        return [], iter(())
    # Some exports quote sloppily; csv.reader has already stripped what it could.
    header = [cell.strip().lstrip("\ufeff") for cell in header]

    def rows() -> Iterator[tuple[int, list[str], int]]:
        last = reader.line_num
        for cells in reader:
            start, last = last + 1, reader.line_num
            if not "".join(cells).strip():
                continue  # an empty line, or one of only separators
            yield start, cells, last - start + 1

    return header, rows()


def normalise_heading(heading: str) -> str:
    """`E-mailadres`, `e-mail adres ` and `EMAILADRES` all become `emailadres`."""
    return re.sub(r"[^0-9a-z]", "", heading.casefold().replace("\ufeff", ""))


# --- file specifications --------------------------------------------------------


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


# --- errors ----------------------------------------------------------------------


class ExportError(Exception):
    """The export as a whole cannot be used (fails the download step)."""


class EmptyExport(ExportError):
    """A header row and no data rows: never "everyone left"."""

    def __init__(self, filename: str, spec: FileSpec) -> None:
        super().__init__(f"{filename}: the export has a header row but no {spec.row_noun}. Nothing was "
                         "changed; check the search or filter used for the export and export it again.")


class MissingColumns(ExportError):
    def __init__(self, filename: str, spec: FileSpec, missing: list[str]) -> None:
        self.filename, self.spec, self.missing = filename, spec, missing
        super().__init__(
            f"{filename}: the {spec.kind} export misses the required column(s) "
            + ", ".join(repr(m) for m in missing)
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


class BadValue(ValueError):
    pass


# --- mapping ---------------------------------------------------------------------


def map_header(header: list[str], spec: FileSpec, filename: str) -> dict[str, int]:
    """Column index per key; raises MissingColumns for missing required headings."""
    positions: dict[str, int] = {}
    for index, heading in enumerate(header):
        positions.setdefault(normalise_heading(heading), index)
    mapping: dict[str, int] = {}
    missing: list[str] = []
    for column in spec.columns:
        found = next((positions[h] for h in column.normalised if h in positions), None)
        if found is not None:
            mapping[column.key] = found
        elif column.required:
            missing.append(" or ".join(column.headings[:2]) if len(column.headings) > 1 else column.headings[0])
    for group in spec.one_of:
        if not any(key in mapping for key in group):
            missing.append(" or ".join(spec.column(key).headings[0] for key in group))
    if missing:
        raise MissingColumns(filename, spec, missing)
    return mapping


@dataclass
class Table:
    """One export file, mapped: rows as dicts of key -> stripped string.

    `checked()` also yields the rows that are damaged, with the reason (see
    the module docstring); `dicts()` only the whole ones.
    """

    filename: str
    spec: FileSpec
    mapping: dict[str, int]
    rows: Iterator[tuple[int, list[str], int]]
    header: list[str] = field(default_factory=list)
    #: Some bytes of the file were not valid text (rows holding them are damaged).
    damaged: bool = False
    #: The file ends with a line break; if not, its last row may be cut off.
    complete: bool = True
    #: Everything on damaged rows that could be a relatiecode (upper case): with a
    #: lost separator the columns shift, so the key may be in any cell; with a
    #: quote never closed, other rows hide inside one value. None of them is
    #: retired because of this export.
    suspect_keys: set[str] = field(default_factory=set)

    def heading(self, key: str) -> str:
        """The heading of `key`'s column as it is in the file (for messages)."""
        index = self.mapping.get(key)
        if index is not None and index < len(self.header):
            return self.header[index]
        return key

    def dicts(self) -> Iterator[tuple[int, dict[str, str]]]:
        for number, row, problem in self.checked():
            if not problem:
                yield number, row

    def checked(self) -> Iterator[tuple[int, dict[str, str], str]]:
        """(row number, row, problem): problem is "" for a whole row, else why it must not be used.

        A damaged row's dict holds what could be read (for its identifier).
        """
        keys = list(self.mapping)
        indices = list(self.mapping.values())
        width = max(indices) + 1
        # Every row has exactly as many cells as the header: with one more or
        # one fewer, every value after the damage is in the wrong column.
        columns = len(self.header)
        getter: Callable[[list[str]], tuple[str, ...]]
        if len(indices) == 1:
            index = indices[0]

            def one_cell(cells: list[str]) -> tuple[str, ...]:
                return (cells[index],)

            getter = one_cell
        else:
            getter = itemgetter(*indices)
        strip = str.strip
        damaged = self.damaged
        pending: tuple[int, list[str], int] | None = None
        # This runs once per row of a 50,000-member export: C-level calls only
        # on the path of a whole row.
        for current in self.rows:
            if pending is not None:
                yield self._check(pending, keys, getter, strip, width, columns, damaged, last=False)
            pending = current
        if pending is not None:
            yield self._check(pending, keys, getter, strip, width, columns, damaged, last=True)

    def _check(self, item: tuple[int, list[str], int], keys: list[str], getter: Callable, strip: Callable,
               width: int, columns: int, damaged: bool, *, last: bool) -> tuple[int, dict, str]:
        number, cells, lines = item
        problem = ""
        count = len(cells)
        if count != columns:
            cut = " the file may be cut off" if last and count < columns else " a separator may be missing " \
                "or extra, or a value may hold an unquoted separator"
            problem = f"row {number} has {count} of {columns} columns;{cut}"
        elif last and not self.complete:
            problem = (f"row {number} is the last row and does not end with a line break; the file may be cut "
                       "off")
        if count < width:
            cells = cells + [""] * (width - count)
        row = dict(zip(keys, map(strip, getter(cells)), strict=True))
        if not problem and lines > 1 and any("\n" in value or "\r" in value for value in row.values()):
            problem = (f"row {number} runs over {lines} lines: a quote (\") is not closed, or the file is cut off "
                       "inside a quoted value")
        if not problem and damaged and any(REPLACEMENT in value for value in row.values()):
            problem = f"row {number} contains bytes that are not valid text; the file may be damaged"
        if problem:
            for cell in cells:
                self.suspect_keys.update(token for token in _TOKENS.split(cell.upper()) if _KNVB_ID.match(token))
        return number, row, problem


def shown_headings(header: list[str]) -> str:
    """The first headings of a file for a message, each cut short."""
    return ", ".join(h if len(h) <= 40 else h[:39] + "…" for h in header[:8])


_TOKENS = re.compile(r'[\s;,"\ufffd]+')


def sniff(filename: str, data: bytes) -> tuple[str, bool, list[str]]:
    """(text, damaged, header) of an export's bytes, or ExportError naming the file:

    empty (0 bytes), not text or without a separated heading row ("not a CSV
    export"), or a heading row with bytes that are not text.
    """
    if not data:
        raise ExportError(f"{filename} is empty (0 bytes)")
    if b"\x00" in data[:65536] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ExportError(f"{filename} is not a CSV export (binary data)")
    text, damaged = decode_checked(data)
    sample = text[:65536]
    controls = sum(1 for char in sample if char < " " and char not in "\t\r\n")
    if controls * 100 > len(sample):
        raise ExportError(f"{filename} is not a CSV export (binary data)")
    header, _rows = split_rows(text)
    if len([h for h in header if h]) < 2:
        raise ExportError(f"{filename} is not a CSV export (binary data or text without a heading row "
                          "separated by ; , or tabs)")
    if damaged and any(REPLACEMENT in h for h in header):
        raise ExportError(f"{filename}: the heading row contains bytes that are not valid text; the file is "
                          "damaged. Export it again")
    return text, damaged, header


def open_table(filename: str, data: bytes, spec: FileSpec | None = None) -> Table:
    text, damaged, _header = sniff(filename, data)
    header, rows = split_rows(text)
    if spec is None:
        spec = classify(header)
        if spec is None:
            raise ExportError(f"{filename}: not a recognised export (headings: {shown_headings(header)})")
    return Table(filename, spec, map_header(header, spec, filename), rows, header=header, damaged=damaged,
                 complete=text.endswith(("\n", "\r")))


# --- values ----------------------------------------------------------------------

_DATE_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T].*)?$")
_DATE_NL = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?: .*)?$")
_EMAIL = re.compile(r"^[^@\s;,<>\"]+@[^@\s;,<>\"]+\.[A-Za-z]{2,}$")
# Letters, digits and hyphens, 1 to 20 (Sportlink's `QX-4821`, a club's own codes), not only hyphens.
_KNVB_ID = re.compile(r"^(?=.*[A-Z0-9])[A-Z0-9-]{1,20}$")


def parse_date(value: str, what: str = "date") -> date | None:
    if not value:
        return None
    if len(value) == 10 and value[4] == "-":
        try:
            return date.fromisoformat(value)  # the common case, in C
        except ValueError:
            pass
    match = _DATE_ISO.match(value)
    try:
        if match:
            return date(int(match[1]), int(match[2]), int(match[3]))
        match = _DATE_NL.match(value)
        if match:
            return date(int(match[3]), int(match[2]), int(match[1]))
    except ValueError:
        pass
    raise BadValue(f"{what} {value!r} is not a date (expected YYYY-MM-DD)")


def parse_email(value: str, what: str = "email address") -> str:
    value = value.strip()
    if value and not _EMAIL.match(value):
        raise BadValue(f"{what} {value!r} is not a valid email address")
    return value


def parse_knvb_id(value: str) -> str:
    code = value.strip().upper()
    if not code:
        raise BadValue("the relatiecode (Rel. code) is missing")
    if not _KNVB_ID.match(code):
        raise BadValue(f"relatiecode {value.strip()!r} is not a valid relatiecode (letters, digits and hyphens, "
                       "1 to 20 characters)")
    return code


def parse_gender(value: str) -> str:
    value = value.strip().casefold()
    if value in {"man", "male", "m", "jongen"}:
        return "M"
    if value in {"vrouw", "female", "v", "f", "meisje"}:
        return "V"
    return ""


def parse_amount(value: str, what: str = "amount") -> Decimal:
    """`€ 1.234,56` -> 1234.56; also `-€ 12,50`, `(12,50)`, `1234.56`."""
    raw = value
    text = value.replace("€", "").replace("EUR", "").replace("\u00a0", "").replace(" ", "").strip()
    if not text:
        return Decimal("0")
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1]
    if text.startswith("-"):
        negative, text = not negative, text[1:]
    elif text.endswith("-"):
        negative, text = not negative, text[:-1]
    if text.startswith("€"):
        text = text[1:]
    decimal_comma = text.rfind(",") > text.rfind(".")
    if "," in text and "." in text:
        text = text.replace(".", "").replace(",", ".") if decimal_comma else text.replace(",", "")
    elif "," in text:
        text = text.replace(",", ".") if text.count(",") == 1 else text.replace(",", "")
    elif text.count(".") > 1 or (text.count(".") == 1 and len(text.rsplit(".", 1)[1]) == 3):
        text = text.replace(".", "")  # Dutch thousands: `1.234`
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadValue(f"{what} {raw!r} is not an amount") from None
    if not amount.is_finite():
        raise BadValue(f"{what} {raw!r} is not an amount")
    return -amount if negative else amount


_NAAM = re.compile(r"^(?P<last>[^,]+),\s*(?P<initials>(?:[^\W\d_]{1,3}\.\s*)*)(?:\((?P<first>[^)]*)\)\s*)?"
                   r"(?P<infix>.*)$")


def split_naam(value: str) -> tuple[str, str, str, str]:
    """`Achternaam, V. (Roepnaam) tussenvoegsel` -> (first, infix, last, initials)."""
    match = _NAAM.match(value.strip())
    if not match:
        return "", "", value.strip(), ""
    return ((match["first"] or "").strip(), match["infix"].strip(), match["last"].strip(),
            " ".join(match["initials"].split()))


def multi(value: str) -> list[str]:
    """A comma-separated cell (`JO11-1,  JO11-2`) as a list."""
    if "," not in value:
        return [value] if value else []
    return [part.strip() for part in value.split(",") if part.strip()]


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
    Every record must fit the registry (`check_fits`). A file with a header
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


# --- fitting the registry ----------------------------------------------------------

# Record attribute -> (model, field, column key for the message). The limits
# are read from the model fields, so a changed max_length is checked at once.
FITS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "MemberRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("first_name", "Member", "first_name", "first_name"),
        ("infix", "Member", "infix", "infix"), ("last_name", "Member", "last_name", "last_name"),
        ("initials", "Member", "initials", "initials"), ("email", "Member", "email", "email"),
        ("gender", "Member", "gender", "gender"), ("member_type", "Member", "member_type", "member_type"),
        ("age_category", "Member", "age_category", "age_category"), ("local_teams", "Member", "local_teams", "teams"),
        ("phone", "Member", "phone", "phone"), ("mobile", "Member", "mobile", "mobile"),
        ("street", "Member", "street", "street"), ("house_number", "Member", "house_number", "house_number"),
        ("postcode", "Member", "postcode", "postcode"), ("city", "Member", "city", "city"),
    ),
    "ParentRecord": (
        ("email", "Parent", "email", "parent_email"), ("name", "Parent", "name", "parent_name"),
        ("phone", "Parent", "phone", "parent_phone"),
    ),
    "TeamRoleRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("team_id", "Team", "sportlink_id", "team_id"),
        ("team_name", "Team", "name", "team_name"), ("team_kind", "Team", "kind", "team_kind"),
        ("role", "TeamMembership", "role", "role"),
    ),
    "CommissieRoleRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("commissie_name", "Commissie", "name", "commissie_name"),
        ("commissie_id", "Commissie", "sportlink_id", "commissie_id"),
        ("role", "CommissieMembership", "role", "role"),
    ),
    "DisciplineRecord": (
        ("dossier_id", "DisciplineCase", "dossier_id", "dossier_id"), ("knvb_id", "Member", "knvb_id", "knvb_id"),
        ("match", "DisciplineCase", "match", "match"), ("team_name", "DisciplineCase", "team_name", "team_name"),
        ("sanction", "DisciplineCase", "sanction", "sanction"), ("fee", "DisciplineCase", "fee", "fee"),
        ("status", "DisciplineCase", "status", "status"),
    ),
    "ContributionRecord": (
        ("knvb_id", "Member", "knvb_id", "knvb_id"), ("nikki_id", "Contribution", "nikki_id", "nikki_id"),
        ("total", "Contribution", "total", "total"), ("balance", "Contribution", "balance", "balance"),
        ("status", "Contribution", "status", "status"),
    ),
}


@cache
def _limits(record_type: str) -> tuple[tuple[str, str, int | None, frozenset | None, tuple | None], ...]:
    """(attribute, column key, max_length, choices, (max_digits, decimal_places)) per checked attribute."""
    from django.apps import apps

    out = []
    for attribute, model, name, column in FITS.get(record_type, ()):
        model_field = apps.get_model("pipelines", model)._meta.get_field(name)
        choices = frozenset(value for value, _label in model_field.flatchoices) if model_field.choices else None
        digits = (model_field.max_digits, model_field.decimal_places) \
            if getattr(model_field, "max_digits", None) else None
        out.append((attribute, column, getattr(model_field, "max_length", None), choices, digits))
    return tuple(out)


def record_checker(table: Table) -> Callable[[object], None]:
    """A function raising BadValue when a record does not fit its registry fields (see FITS).

    Outside a set-up Django (bench/sync.py's raw floor reads the export in a
    Django-free process) there are no fields to check against and nothing is
    written, so it checks nothing.
    """
    from django.apps import apps

    if not apps.ready:
        return lambda record: None
    cache: dict[type, tuple] = {}

    def check(record: Any) -> None:  # a MemberRecord, ParentRecord, ... (the attributes are in FITS)
        kind = type(record)
        limits = cache.get(kind)
        if limits is None:
            limits = cache[kind] = _limits(kind.__name__)
        for attribute, column, max_length, choices, digits in limits:
            value: Any = ", ".join(record.teams) if attribute == "local_teams" else getattr(record, attribute)
            if value is None or value == "":
                continue
            if max_length is not None and len(value) > max_length:
                raise BadValue(f"{_heading(table, column)} is {len(value):,} characters long; the registry keeps at "
                               f"most {max_length}. Shorten it in the export's source")
            if choices is not None and value not in choices:
                raise BadValue(f"{_heading(table, column)} {value!r} is not one of {', '.join(map(repr, choices))}")
            if digits is not None:
                _check_digits(value, digits, _heading(table, column))

    return check


def _heading(table: Table, column: str) -> str:
    if column.startswith("parent_"):
        return f"{column.split('_')[1]} of a parent"
    return repr(table.heading(column))


def _check_digits(value: Decimal, digits: tuple[int, int], heading: str) -> None:
    max_digits, places = digits
    if abs(value) >= Decimal(10) ** (max_digits - places):
        raise BadValue(f"{heading} {value} is too large (at most {max_digits - places} digits before the "
                       "decimal point)")
    # Stored with `places` decimals: more would be rounded without anyone noticing.
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise BadValue(f"{heading} {value} has more than {places} decimals")


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
