"""Reading an export file: bytes to text, separator, header row, rows checked whole.

`open_table(filename, data)` sniffs the bytes (`sniff`: empty, binary or
without a heading row fails as a whole), recognises the kind of export by its
header (`specs.classify`), maps the headings to column keys (`map_header`)
and returns a Table whose `checked()` yields every row with the reason it is
damaged, if it is.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from pipelines.readers.specs import FileSpec, classify, normalise_heading
from pipelines.readers.values import KNVB_ID_PATTERN

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
                self.suspect_keys.update(token for token in _TOKENS.split(cell.upper()) if KNVB_ID_PATTERN.match(token))
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
