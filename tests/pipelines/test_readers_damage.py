"""The CSV readers under damage: arbitrary bytes, odd rows, cut-off or mangled exports never store a wrong value."""

from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.readers import (
    MEMBERS,
    EmptyExport,
    ExportError,
    open_table,
    read_members,
)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_reader(data):
    try:
        table = open_table("junk.csv", data, MEMBERS)
    except ExportError:
        return
    result = read_members(table)
    assert len(result.records) + len(result.errors) <= result.rows


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), max_size=12), max_size=8),
                max_size=10))
def test_odd_rows_become_records_or_row_errors(rows):
    header = "Rel. code;Achternaam;Geb.dat.;E-mailadres"
    body = "\n".join(";".join('"' + c.replace('"', '""') + '"' for c in row) for row in rows)
    try:
        result = read_members(open_table("odd.csv", (header + "\n" + body + "\n").encode()))
    except EmptyExport:
        assert not any("".join(row).strip() for row in rows)
        return
    assert len(result.records) + len(result.errors) == result.rows
    assert all(e.row >= 2 for e in result.errors)


# --- hypothesis: damage never changes a stored value or retires a damaged row's member -------
#
# Start from a valid Sportlink-style export (`;`, every non-empty value quoted, CRLF,
# UTF-8 with Dutch names) and damage it: cut it off anywhere, lose or add a separator
# between cells, put bytes that are not UTF-8 into a row, or make one value longer than
# its registry field. Whatever the reader then keeps must be exactly what the undamaged
# export says for that relatiecode, and the member of a damaged row is never "gone"
# (it is a record or in bad_keys) as long as the damaged row still holds its relatiecode.

DAMAGE_HEADINGS = ["Naam", "Roepnaam", "Tussenvoegsel(s)", "Achternaam", "Rel. code", "Geslacht", "Geb.dat.",
                   "E-mailadres", "Telefoon ouder 2", "Lokale teams", "Woonplaats"]
# Every name holds a Dutch letter or two, as a real club's export does (a UTF-8 file
# is told from Windows-1252 by its valid multi-byte characters).
dutch_names = st.tuples(st.sampled_from(["Daniël", "Zoë", "Renée", "Inès", "Ruud", "Noë"]),
                        st.text(alphabet="abcdeëéfghijklmnoöpqrstuvwxyz -'", max_size=10)).map(
    lambda parts: (parts[0] + parts[1]).strip())
damage_codes = st.from_regex(r"[A-Z]{2}(-?[0-9]{2,4})[A-Z]?[0-9]", fullmatch=True)


@st.composite
def sportlink_rows(draw):
    rows = draw(st.lists(st.tuples(damage_codes, dutch_names, dutch_names, st.sampled_from(["", "van", "de"]),
                                   st.sampled_from(["Man", "Vrouw", ""]),
                                   st.dates(date(1940, 1, 1), date(2020, 12, 31)),
                                   st.sampled_from(["", "JO11-1", "JO11-1, MO13-2"]),
                                   st.sampled_from(["Hoogland", "Amersfoort", "Leusden", "Zoëterwoude", ""]),
                                   st.sampled_from(["", "06-12345678"])),
                         min_size=2, max_size=12, unique_by=lambda r: r[0].upper()))
    return [{"Naam": f"{last}, {first[0].upper()}. ({first})", "Roepnaam": first, "Tussenvoegsel(s)": infix,
             "Achternaam": last, "Rel. code": code, "Geslacht": gender, "Geb.dat.": born.isoformat(),
             "E-mailadres": f"{code.lower()}@example.org", "Lokale teams": teams, "Woonplaats": city,
             "Telefoon ouder 2": phone}
            for code, first, last, infix, gender, born, teams, city, phone in rows]


def sportlink_bytes(rows, bom):
    def line(values):
        return ";".join(f'"{v}"' if v else "" for v in values)

    text = "\r\n".join([line(DAMAGE_HEADINGS), *(line(row[h] for h in DAMAGE_HEADINGS) for row in rows)]) + "\r\n"
    return ("\ufeff" if bom else "") + text


def stored(record):
    return (record.first_name, record.infix, record.last_name, record.initials, record.email, record.gender,
            record.birth_date, record.teams, record.city)


def row_spans(data):
    """(start, end) byte offsets of each data row's line (without its CRLF)."""
    spans, start = [], data.index(b"\r\n") + 2
    while start < len(data):
        end = data.index(b"\r\n", start)
        spans.append((start, end))
        start = end + 2
    return spans


def separator_positions(line):
    """Offsets of the `;` between cells (outside quotes) in one line."""
    out, quoted = [], False
    for i, byte in enumerate(line):
        if byte == ord('"'):
            quoted = not quoted
        elif byte == ord(";") and not quoted:
            out.append(i)
    return out


@st.composite
def damaged_exports(draw):
    rows = draw(sportlink_rows())
    data = sportlink_bytes(rows, draw(st.booleans())).encode("utf-8")
    spans = row_spans(data)
    victim = draw(st.integers(0, len(rows) - 1))
    start, end = spans[victim]
    kind = draw(st.sampled_from(["truncate", "lose separator", "extra separator", "bad bytes", "oversized"]))
    if kind == "truncate":
        cut = draw(st.integers(start + 1, end + 1))  # inside the row, up to just before its line feed
        damaged, kept = data[:cut], data[start:cut]
    elif kind in ("lose separator", "extra separator"):
        line = data[start:end]
        at = start + draw(st.sampled_from(separator_positions(line)))
        damaged = data[:at] + data[at + 1:] if kind == "lose separator" else data[:at] + b";" + data[at:]
        kept = data[start:end]
    elif kind == "bad bytes":
        at = draw(st.integers(start, end))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80", b"\xe2\x82", b"\xfe\xfe"]))
        damaged, kept = data[:at] + junk + data[at:], data[start:at]
    else:
        heading = draw(st.sampled_from([h for h in DAMAGE_HEADINGS if h not in ("Rel. code", "Geb.dat.", "Geslacht")]))
        rows = [dict(row) for row in rows]
        rows[victim][heading] = "x" * draw(st.integers(501, 3000))
        damaged = sportlink_bytes(rows, False).encode("utf-8")
        kept = data[start:end]
    code = rows[victim]["Rel. code"]
    # The damaged row still names its member when the whole relatiecode cell survived.
    names_member = f'"{code}"'.encode() in kept or kind in ("lose separator", "extra separator", "oversized")
    return data, damaged, code.upper(), names_member, kind


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_exports())
def test_damage_never_stores_a_different_value_or_retires_a_damaged_rows_member(export):
    data, damaged, code, names_member, kind = export
    whole = {m.knvb_id: stored(m) for m in read_members(open_table("Leden.csv", data)).records}
    assert len(whole) == data.count(b"\r\n") - 1
    try:
        result = read_members(open_table("Leden.csv", damaged))
    except ExportError:
        return  # the file as a whole is refused: nothing is written, nobody retired
    for record in result.records:
        assert record.knvb_id in whole, f"{kind}: a key that is not in the export: {record.knvb_id}"
        assert stored(record) == whole[record.knvb_id], kind
    kept = {m.knvb_id for m in result.records} | result.bad_keys
    if names_member:
        assert code in kept, f"{kind}: the member of the damaged row would be retired"
    if kind != "truncate":
        # Damage to one row never loses the others.
        assert set(whole) - {code} <= kept, kind
