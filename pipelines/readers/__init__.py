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

Nothing damaged is ever used (docs/volunteers.md, "What each error means"): an empty, binary or
header-only file fails as a whole with a message naming the file; a row with
more or fewer cells than the header (a file cut off mid-row, a lost or extra
separator, a quote that is never closed), with bytes that are not valid text,
or a last row without its line break is a RowError and its key goes to
`bad_keys` (so nobody is retired because of it); every value is checked
against the registry field it goes to (length, choices, digits) before any
write (`record_checker`), so the same rules hold on SQLite and PostgreSQL.

The package, by role (every name below is importable from `pipelines.readers`):

- `specs`: the exports' column specs (FileSpec, MEMBERS, TEAMS, ...) and `classify`;
- `files`: decoding, separators, sniffing, header mapping, Table, `open_table`
  and the whole-file errors (ExportError, EmptyExport, MissingColumns);
- `values`: the cell parsers (`parse_date`, `parse_amount`, `parse_email`,
  `parse_knvb_id`, ...), BadValue and `record_checker` (registry limits);
- `rows`: the readers (`read_members`, `read_teams`, ...), ReadResult, RowError.

Email addresses follow the one rule in pipelines.emails, shared with Laposta
and FreeScout.
"""

from __future__ import annotations

from pipelines.readers.files import (
    REPLACEMENT,
    EmptyExport,
    ExportError,
    MissingColumns,
    Table,
    decode,
    decode_checked,
    detect_separator,
    map_header,
    open_table,
    shown_headings,
    sniff,
    split_rows,
)
from pipelines.readers.rows import (
    MEMBER_KEYS,
    READERS,
    ReadResult,
    RowError,
    member_from_row,
    member_row_hash,
    read_discipline,
    read_functions,
    read_members,
    read_nikki,
    read_table,
    read_teams,
    status_rank,
)
from pipelines.readers.specs import (
    DISCIPLINE,
    FUNCTIONS,
    MEMBERS,
    NIKKI,
    RELATIECODE,
    SPECS,
    SPECS_BY_KIND,
    TEAMS,
    Column,
    FileSpec,
    classify,
    normalise_heading,
)
from pipelines.readers.values import (
    FITS,
    KNVB_ID_PATTERN,
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

__all__ = [
    "BadValue",
    "Column",
    "DISCIPLINE",
    "EmptyExport",
    "ExportError",
    "FITS",
    "FUNCTIONS",
    "FileSpec",
    "KNVB_ID_PATTERN",
    "MEMBERS",
    "MEMBER_KEYS",
    "MissingColumns",
    "NIKKI",
    "READERS",
    "RELATIECODE",
    "REPLACEMENT",
    "ReadResult",
    "RowError",
    "SPECS",
    "SPECS_BY_KIND",
    "TEAMS",
    "Table",
    "classify",
    "decode",
    "decode_checked",
    "detect_separator",
    "map_header",
    "member_from_row",
    "member_row_hash",
    "multi",
    "normalise_heading",
    "open_table",
    "parse_amount",
    "parse_date",
    "parse_email",
    "parse_gender",
    "parse_knvb_id",
    "read_discipline",
    "read_functions",
    "read_members",
    "read_nikki",
    "read_table",
    "read_teams",
    "record_checker",
    "shown_headings",
    "sniff",
    "split_naam",
    "split_rows",
    "status_rank",
]
