"""The CSV readers: bytes, separators, headings, bad rows, the other exports, any encoding."""

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipelines.readers import (
    MEMBERS,
    BadValue,
    EmptyExport,
    ExportError,
    MissingColumns,
    classify,
    decode,
    detect_separator,
    open_table,
    parse_knvb_id,
    read_discipline,
    read_functions,
    read_members,
    read_nikki,
    read_teams,
    status_rank,
)
from pipelines.readers.files import _UTF8_MULTIBYTE

MEMBER_HEADER = "Naam;Roepnaam;Tussenvoegsel(s);Achternaam;Rel. code;Geslacht;Geb.dat.;E-mailadres;Lidsoort"


def members(text: str, *, encoding="utf-8", name="Leden.csv"):
    return read_members(open_table(name, text.encode(encoding)))


# --- bytes and separators ------------------------------------------------------------


def test_it_decodes_utf8_with_and_without_bom_and_windows_1252():
    assert decode("Zoë;Daniël".encode()) == "Zoë;Daniël"
    assert decode(b"\xef\xbb\xbf" + "Zoë".encode()) == "Zoë"
    assert decode("Zoë;Renée".encode("cp1252")) == "Zoë;Renée"
    assert decode("Zoë".encode("utf-16")) == "Zoë"
    # Bytes that Windows-1252 leaves undefined do not fail the file.
    assert decode(b"abc\x81\x8d") == "abc\x81\x8d"


@pytest.mark.parametrize(("line", "sep"), [
    ('"Naam";"Rel. code";"E-mail"', ";"),
    ("Naam,Rel. code,E-mail", ","),
    ("Naam\tRel. code\tE-mail", "\t"),
    ('"Achternaam, V.";"Rel. code"', ";"),  # a comma inside quotes does not count
    ("Naam", ";"),
])
def test_it_takes_the_separator_from_the_header_row(line, sep):
    assert detect_separator(line) == sep


def test_it_reads_crlf_bom_quoted_fields_and_empty_fields():
    text = ('\ufeff"Naam";"Roepnaam";"Tussenvoegsel(s)";"Achternaam";"Rel. code";"Geslacht";"Geb.dat.";'
            '"E-mailadres"\r\n'
            '"Vries, J. (Jan) de";"Jan";"de";"Vries";"ABC12D3";"Man";"2010-05-01";\r\n')  # empty last cell
    result = members(text)
    assert not result.errors
    [m] = result.records
    assert (m.knvb_id, m.first_name, m.infix, m.last_name, m.gender, m.birth_date, m.email) == (
        "ABC12D3", "Jan", "de", "Vries", "M", date(2010, 5, 1), "")
    assert m.row_number == 2


# --- headings ------------------------------------------------------------------------


def test_it_accepts_known_alternative_headings_and_ignores_unknown_columns():
    text = ("Relatiecode,Voornaam,Achternaam,E-mail,Lievelingskleur,Geboortedatum\n"
            "XYZ98A7,Sanne,Bakker,s@example.org,blauw,01-02-2003\n")
    [m] = members(text).records
    assert (m.knvb_id, m.first_name, m.email, m.birth_date) == ("XYZ98A7", "Sanne", "s@example.org",
                                                                 date(2003, 2, 1))


def test_a_missing_required_heading_names_the_file_and_the_heading():
    # `Naam` alone is enough for the name.
    open_table("Leden 3 personen gevonden.csv", b"Naam;Lidsoort;Rel. code\n", MEMBERS)
    with pytest.raises(MissingColumns) as caught:
        open_table("Leden.csv", b"Lidsoort;Rel. code;Geslacht\n", MEMBERS)
    message = str(caught.value)
    assert "Leden.csv" in message and "Achternaam or Naam" in message


def test_a_teams_export_without_teamrol_is_not_a_teams_export():
    with pytest.raises(MissingColumns) as caught:
        open_table("Teams.csv", b"Team;Teamsoort;Teamrol;Naam\n")
    assert "Rel. code" in str(caught.value) and "Teams.csv" in str(caught.value)


def test_files_are_recognised_by_their_header_row():
    assert classify(["Naam", "Rel. code", "Geb.dat."]).kind == "members"
    assert classify(["Team", "Teamsoort", "Teamrol", "Naam", "Rel. code"]).kind == "teams"
    assert classify(["Commissie", "Functie", "Rel. code"]).kind == "functions"
    assert classify(["Dossiernummer", "Rel. code"]).kind == "discipline"
    assert classify(["Jaar", "Naam", "Lidnr.", "Nikki ID", "Saldo"]).kind == "nikki"
    assert classify(["Foo", "Bar"]) is None
    with pytest.raises(ExportError, match="not a recognised export"):
        open_table("random.csv", b"Foo;Bar\n1;2\n")


def test_the_older_team_export_variant_is_read():
    text = ("Team;Teamsoort;Teamrol;Naam;Lidsoort;Rel. code;Geb.dat.;E-mailadres\n"
            "JO11-1;Jeugd;Teamspeler;Bos, T. (Tim);Bondslid;ABC12D3;2016-01-01;\n")
    [role] = read_teams(open_table("t.csv", text.encode())).records
    assert (role.team_name, role.team_id, role.role, role.knvb_id) == ("JO11-1", "JO11-1", "Teamspeler", "ABC12D3")


# --- bad rows ------------------------------------------------------------------------


def test_bad_rows_become_errors_with_row_number_and_best_identifier_and_the_rest_go_on():
    text = "\n".join([
        MEMBER_HEADER,
        "Vries, J. (Jan);Jan;;Vries;AAA11A1;Man;2010-01-01;jan@example.org;Bondslid",
        "Bos, T. (Tim);Tim;;Bos;BBB22B2;Man;2010-01-01;tim@@example.org;Bondslid",   # invalid email
        "Kok, K. (Kees);Kees;;Kok;;Man;2010-01-01;kees@example.org;Bondslid",       # no relatiecode
        "Smit, S. (Sem);Sem;;Smit;AAA11A1;Man;2010-01-01;sem@example.org;Bondslid",  # duplicate
        "Maas, M. (Mila);Mila;;Maas;CCC33C3;Vrouw;2010-02-30;mila@example.org;Bondslid",  # bad date
        "Prins, P. (Piet);Piet;;Prins;DDD44D4;Man;;;",
    ]) + "\n"
    result = members(text, name="Leden 6 personen gevonden.csv")
    assert [m.knvb_id for m in result.records] == ["AAA11A1", "DDD44D4"]
    errors = [(e.row, e.identifier, e.identifier_kind) for e in result.errors]
    assert errors == [(3, "BBB22B2", "knvb_id"), (4, "kees@example.org", "email"), (5, "AAA11A1", "knvb_id"),
                      (6, "CCC33C3", "knvb_id")]
    messages = [e.as_error()["message"] for e in result.errors]
    assert messages[0].startswith("Leden 6 personen gevonden.csv row 3: ")
    assert "not a valid email" in messages[0]
    assert "relatiecode (Rel. code) is missing" in messages[1]
    assert "duplicate relatiecode AAA11A1: already on row 2" in messages[2]
    assert "'2010-02-30' is not a date" in messages[3]
    # Relatiecodes seen on bad rows are still in the export (never marked former).
    assert {"BBB22B2", "CCC33C3"} <= result.bad_keys


def test_rows_with_too_few_or_too_many_cells_are_errors_and_their_members_are_kept():
    text = ("Rel. code;Achternaam;E-mailadres\r\n\r\nAAA11A1;Bos\r\n;;\r\nBBB22B2;Kok;k@example.org;extra;cells\r\n"
            "CCC33C3;Kok;c@example.org;;\r\nddd44d4;Maas;d@example.org\r\n")
    result = members(text)
    # Blank lines and lines of only separators are skipped; even empty extra cells are damage
    # (an extra separator in the middle shifts every value after it).
    assert [m.knvb_id for m in result.records] == ["DDD44D4"]
    assert [(e.row, e.identifier) for e in result.errors] == [(3, "AAA11A1"), (5, "BBB22B2"), (6, "CCC33C3")]
    messages = [e.as_error()["message"] for e in result.errors]
    assert messages[0] == ("Leden.csv row 3 has 2 of 3 columns; a separator may be missing or extra, or a value "
                           "may hold an unquoted separator")
    assert messages[1].startswith("Leden.csv row 5 has 5 of 3 columns;")
    # What could be a relatiecode on a damaged row is kept (never retired): the columns may have shifted.
    assert {"AAA11A1", "BBB22B2", "CCC33C3"} <= result.bad_keys and "DDD44D4" not in result.bad_keys


def test_a_file_cut_off_in_its_last_row_is_an_error_for_that_row():
    whole = MEMBER_HEADER + "\nVries, J. (Jan);Jan;;Vries;AAA11A1;Man;2010-01-01;jan@example.org;Bondslid\n"
    last = "Bos, T. (Tim);Tim;;Bos;qx-4821;Man;2011-03-04;tim@example.org;Bondslid\n"
    # Cut mid-row (fewer cells), inside the last cell (same count, no line break), inside a quoted value.
    for cut, problem in ((last[:40], "has 7 of 9 columns; the file may be cut off"),
                         (last[:-4], "does not end with a line break; the file may be cut off"),
                         (last.replace("Bos, T. (Tim)", '"Bos, T. (Tim)')[:30], "the file may be cut off")):
        result = members(whole + cut)
        assert [m.knvb_id for m in result.records] == ["AAA11A1"]
        [error] = result.errors
        assert error.row == 3 and problem in error.message
        assert "QX-4821" not in error.identifier  # identifiers as in the file, not upper-cased
        assert "AAA11A1" not in result.bad_keys
    result = members(whole + last)
    assert [m.knvb_id for m in result.records] == ["AAA11A1", "QX-4821"] and not result.errors


def test_a_quote_that_is_never_closed_damages_the_rows_it_swallows():
    text = (MEMBER_HEADER + "\n"
            'Vries, J. (Jan);Jan;;"Vries;AAA11A1;Man;2010-01-01;jan@example.org;Bondslid\n'
            "Bos, T. (Tim);Tim;;Bos;BBB22B2;Man;2011-03-04;tim@example.org;Bondslid\n")
    result = members(text)
    assert result.records == []
    [error] = result.errors
    assert error.row == 2 and "runs over 2 lines" in error.message or "columns" in error.message


@pytest.mark.parametrize(("data", "message"), [
    (b"", "Leden.csv is empty (0 bytes)"),
    (bytes(range(256)) * 4, "Leden.csv is not a CSV export (binary data)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "Leden.csv is not a CSV export (binary data)"),
    (b"just some text\nwithout separators\n", "Leden.csv is not a CSV export"),
    (b"Foo;Bar\n1;2\n", "Leden.csv: not a recognised export (headings: Foo, Bar)"),
])
def test_empty_binary_and_unrecognised_files_each_get_their_own_message(data, message):
    with pytest.raises(ExportError) as caught:
        open_table("Leden.csv", data)
    assert str(caught.value).startswith(message)


def test_a_header_without_member_rows_is_never_everyone_left():
    for text in (MEMBER_HEADER + "\n", MEMBER_HEADER + "\r\n\r\n;;;\r\n", MEMBER_HEADER):
        with pytest.raises(EmptyExport) as caught:
            members(text, name="Leden 0 personen gevonden.csv")
        assert str(caught.value).startswith(
            "Leden 0 personen gevonden.csv: the export has a header row but no member rows")
    with pytest.raises(EmptyExport, match="no team rows"):
        read_teams(open_table("t.csv", b"Team;Teamrol;Rel. code\n"))


@pytest.mark.parametrize("code", ["QX-4821", "qx-4821", "A", "12345678901234567890", "AB-CD-12", " ZZ1 "])
def test_relatiecodes_are_letters_digits_and_hyphens_of_1_to_20(code):
    assert parse_knvb_id(code) == code.strip().upper()


@pytest.mark.parametrize("code", ["-", "---", "123456789012345678901", "AB 12", "AB_12", "AB.12", "ÄB12"])
def test_other_relatiecodes_are_refused_with_the_rule(code):
    with pytest.raises(BadValue, match="letters, digits and hyphens, 1 to 20 characters"):
        parse_knvb_id(code)


def test_a_value_too_long_for_its_registry_field_is_a_row_error_naming_column_limit_and_length():
    text = (MEMBER_HEADER + ";Woonplaats\n"
            f"Vries, J. (Jan);Jan;;{'V' * 100_000};AAA11A1;Man;2010-01-01;jan@example.org;Bondslid;Delft\n"
            f"Bos, T. (Tim);Tim;;Bos;BBB22B2;Man;2010-01-01;tim@example.org;Bondslid;{'D' * 101}\n"
            f"Kok, K. (Kees);Kees;;Kok;CCC33C3;Man;2010-01-01;kees@example.org;Bondslid;{'D' * 100}\n")
    result = members(text)
    assert [m.knvb_id for m in result.records] == ["CCC33C3"]
    first, second = (e.as_error()["message"] for e in result.errors)
    assert first == ("Leden.csv row 2: 'Achternaam' is 100,000 characters long; the registry keeps at most 150. "
                     "Shorten it in the export's source")
    assert "'Woonplaats' is 101 characters long; the registry keeps at most 100" in second
    assert result.bad_keys == {"AAA11A1", "BBB22B2"}


def test_amounts_that_do_not_fit_and_long_nikki_and_team_values_are_row_errors():
    cases = read_discipline(open_table("d.csv", (
        "Dossiernummer;Rel. code;Boete;Sanctie\n"
        "T-1;AAA11A1;€ 12.345.678,00;\n"
        "T-2;AAA11A1;€ 12,345;\n"
        f"T-3;AAA11A1;€ 5,00;{'x' * 301}\n"
        "T-4;AAA11A1;€ 5,00;Boete\n").encode()))
    assert [c.dossier_id for c in cases.records] == ["T-4"]
    assert ["too large" in e.message for e in cases.errors] == [True, False, False]
    assert "more than 2 decimals" in cases.errors[1].message
    assert "'Sanctie' is 301 characters long; the registry keeps at most 300" in cases.errors[2].message
    teams = read_teams(open_table("t.csv", f"Team;Teamrol;Rel. code\nJO11-1;{'r' * 61};AAA11A1\n".encode()))
    assert teams.records == [] and "'Teamrol' is 61 characters long" in teams.errors[0].message


def test_nikki_lines_whose_sum_does_not_fit_are_an_error_for_that_member_and_year():
    line = "2025;Jan;AAA11A1;{id};€ 60.000.000,00;€ 0,00;Open\n"
    text = "Jaar;Naam;Lidnr.;Nikki ID;Bedrag;Saldo;Status\n" + line.format(id="N1") + line.format(id="N2") + \
        "2025;Kees;BBB22B2;N3;€ 10,00;€ 0,00;Open\n"
    result = read_nikki(open_table("nikki.csv", text.encode()))
    assert [c.knvb_id for c in result.records] == ["BBB22B2"]
    [error] = result.errors
    assert (error.row, error.identifier) == (2, "AAA11A1")
    assert "'Bedrag' 120000000.00 is too large" in error.message and "summed" in error.message


def test_a_utf8_file_with_a_few_damaged_bytes_stays_utf8_and_only_those_rows_are_errors():
    text = (MEMBER_HEADER + "\n"
            "Daniël, D. (Zoë);Zoë;;Daniël;AAA11A1;Vrouw;2010-01-01;zoe@example.org;Bondslid\n"
            "Renée, R. (Renée);Renée;;Renée;BBB22B2;Vrouw;2010-01-01;renee@example.org;Bondslid\n"
            "Jansen, J. (Jan);Jan;;Jansen;CCC33C3;Man;2010-01-01;jan@example.org;Bondslid\n")
    data = text.encode().replace(b"Jansen;CCC", b"Jan\xffsen;CCC")
    result = read_members(open_table("Leden.csv", data))
    assert [(m.knvb_id, m.last_name) for m in result.records] == [("AAA11A1", "Daniël"), ("BBB22B2", "Renée")]
    [error] = result.errors
    assert error.identifier == "CCC33C3" and "bytes that are not valid text" in error.message
    with pytest.raises(ExportError, match="heading row contains bytes that are not valid text"):
        open_table("Leden.csv", data.replace(b"Achternaam", b"Achter\xffnaam"))


def test_parents_are_keyed_by_email_and_shared_by_siblings():
    text = ("Rel. code;Achternaam;Naam ouder 1;E-mailadres ouder 1;Naam ouder 2;E-mailadres ouder 2\n"
            "AAA11A1;Bos;Piet Bos;Piet@Example.org;Anna Bos;anna@example.org\n"
            "BBB22B2;Bos;Piet Bos;piet@example.org;;\n"
            "CCC33C3;Kok;Kees Kok;kees@@example.org;;\n")
    result = members(text)
    parents = {p.email: p for p in result.extra["parents"]}
    assert sorted(parents) == ["anna@example.org", "piet@example.org"]
    assert parents["piet@example.org"].children == ["AAA11A1", "BBB22B2"]
    # A bad parent email is an error on that row; the member itself is kept.
    assert [m.knvb_id for m in result.records] == ["AAA11A1", "BBB22B2", "CCC33C3"]
    [error] = result.errors
    assert (error.row, error.identifier) == (4, "CCC33C3") and "parent 1" in error.message


def test_known_unchanged_rows_are_not_converted():
    text = MEMBER_HEADER + "\nVries, J. (Jan);Jan;;Vries;AAA11A1;Man;2010-01-01;jan@example.org;Bondslid\n"
    first = members(text)
    [record] = first.records
    again = read_members(open_table("Leden.csv", text.encode()), known={"AAA11A1": record.source_hash})
    assert again.records == [] and again.extra["unchanged"] == ["AAA11A1"]
    changed = read_members(open_table("Leden.csv", text.replace("jan@", "jan2@").encode()),
                           known={"AAA11A1": record.source_hash})
    assert [m.email for m in changed.records] == ["jan2@example.org"]


# --- the other exports ---------------------------------------------------------------


def test_nikki_lines_of_one_member_and_year_are_summed_and_the_worst_status_wins():
    text = ("\ufeffJaar;Naam;Lidnr.;Nikki ID;Bedrag;Saldo;Status\n"
            '2025;Jan;AAA11A1;N1;"€ 1.000,00";"€ 0,00";Betaald\n'
            '2025;Jan;AAA11A1;N2;"€ 234,56";"€ 234,56";Open\n'
            '2026;Jan;AAA11A1;N3;"€ 95,00";"€ 0,00";Betaald\n'
            "2026;Kees;BBB22B2;N4;€ 10,00;veel;Open\n"
            "twintig;Kees;BBB22B2;N5;€ 10,00;€ 0,00;Open\n")
    result = read_nikki(open_table("nikki.csv", text.encode()))
    by_key = {(c.knvb_id, c.year): c for c in result.records}
    c2025 = by_key[("AAA11A1", 2025)]
    assert (c2025.total, c2025.balance, c2025.status, c2025.lines) == (Decimal("1234.56"), Decimal("234.56"),
                                                                      "Open", 2)
    assert c2025.nikki_id == "N1,N2"
    assert by_key[("AAA11A1", 2026)].status == "Betaald"
    assert [(e.row, e.identifier) for e in result.errors] == [(5, "BBB22B2"), (6, "BBB22B2")]
    assert "'veel' is not an amount" in result.errors[0].message
    assert result.extra["lines"] == 3
    assert status_rank("Open") > status_rank("Deels betaald") > status_rank("Betaald")


def test_functions_and_discipline():
    functions = read_functions(open_table("f.csv", (
        b"Commissie,Functie,Rel. code,Vanaf,Tot en met\n"
        b"Bestuur,Voorzitter,AAA11A1,2020-01-01,\n"
        b",Lid,BBB22B2,,\n")))
    [role] = functions.records
    assert (role.commissie_name, role.role, role.since, role.until) == ("Bestuur", "Voorzitter", date(2020, 1, 1),
                                                                       None)
    assert functions.errors[0].row == 3 and "commissie name" in functions.errors[0].message
    cases = read_discipline(open_table("d.csv", (
        "Dossiernummer;Rel. code;Wedstrijddatum;Boete\n"
        "T-1;AAA11A1;2026-03-01;€ 25,00\n"
        "T-1;AAA11A1;2026-03-01;€ 25,00\n"
        ";AAA11A1;;\n").encode()))
    assert [c.fee for c in cases.records] == [Decimal("25.00")]
    assert [(e.row, e.identifier) for e in cases.errors] == [(3, "AAA11A1"), (4, "AAA11A1")]


# --- hypothesis: any encoding, separator, line ending and quoting ---------------------

names = st.text(alphabet=st.characters(codec="cp1252", exclude_characters="\r\n\x00", exclude_categories=("Cc",)),
                max_size=20).map(str.strip)
codes = st.from_regex(r"[A-Z]{3}[0-9]{2}[A-Z][0-9]", fullmatch=True)
emails = st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,5})?@example\.(org|com)", fullmatch=True) | st.just("")


@st.composite
def exports(draw):
    rows = draw(st.lists(st.tuples(codes, names, names, emails, st.dates(date(1940, 1, 1), date(2020, 12, 31))),
                         min_size=1, max_size=15, unique_by=lambda r: r[0]))
    sep = draw(st.sampled_from([";", ",", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    quote_all = draw(st.booleans())
    headings = draw(st.permutations(["Rel. code", "Roepnaam", "Achternaam", "E-mailadres", "Geb.dat.", "Extra"]))
    return rows, sep, newline, encoding, quote_all, headings


def _cell(value: str, sep: str, quote_all: bool) -> str:
    if quote_all or sep in value or '"' in value or value.strip() != value:
        return '"' + value.replace('"', '""') + '"' if value else ""
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports())
def test_any_encoding_separator_line_ending_and_column_order_reads_the_same(export):
    rows, sep, newline, encoding, quote_all, headings = export
    lines = [sep.join(_cell(h, sep, quote_all) for h in headings)]
    for code, first, last, email, born in rows:
        values = {"Rel. code": code, "Roepnaam": first, "Achternaam": last, "E-mailadres": email,
                  "Geb.dat.": born.isoformat(), "Extra": "x;y,z"}
        lines.append(sep.join(_cell(values[h], sep, quote_all) for h in headings))
    data = (newline.join(lines) + newline).encode(encoding)
    if encoding == "cp1252":
        # Windows-1252 bytes that happen to be valid UTF-8 characters (`Ã©` is `é`,
        # `à\xa0¡` is `ࠡ`) are ambiguous by nature: they are read as UTF-8.
        assume(not _UTF8_MULTIBYTE.search(data))
    result = read_members(open_table("export.csv", data))
    assert not result.errors
    got = [(m.knvb_id, m.first_name, m.last_name, m.email, m.birth_date) for m in result.records]
    assert got == [(c, f.strip(), la.strip(), e, b) for c, f, la, e, b in rows]
