"""A row whose value would not fit its registry field is a row error saying which column and why.

The registry's limits (max_length, choices, digits) are read from the model fields.
"""

import pytest

from pipelines.readers import open_table, read_discipline, read_members

pytestmark = pytest.mark.django_db  # the limits come from the models

HEADER = ("Naam;Roepnaam;Tussenvoegsel(s);Achternaam;Rel. code;Geslacht;Geb.dat.;E-mailadres;Lidsoort;"
          "Lokale teams;Naam ouder 1;E-mailadres ouder 1\n")


def members(*rows):
    return read_members(open_table("Leden.csv", (HEADER + "".join(rows)).encode()))


def test_a_member_without_a_gender_is_read():
    result = members("Vries, J. (Jan);Jan;;Vries;AAA11A1;;2010-01-01;jan@example.org;Bondslid;;;\n")
    assert result.errors == []
    assert [(m.knvb_id, m.gender) for m in result.records] == [("AAA11A1", "")]


def test_the_local_teams_are_measured_as_stored_joined_by_commas():
    teams = ", ".join(f"JO11-{i}" for i in range(80))
    result = members("Bos, T. (Tim);Tim;;Bos;BBB22B2;Man;2010-01-01;tim@example.org;Bondslid;" + teams + ";;\n")
    assert result.records == []
    assert [e.as_error()["message"] for e in result.errors] == [
        "Leden.csv row 2: 'Lokale teams' is 708 characters long; the registry keeps at most 500. "
        "Shorten it in the export's source"]
    assert result.bad_keys == {"BBB22B2"}


def test_a_parent_value_that_does_not_fit_names_the_parent_field():
    result = members("Kok, K. (Kees);Kees;;Kok;CCC33C3;Man;2010-01-01;kees@example.org;Bondslid;;"
                     + "P" * 300 + ";ouder@example.org\n")
    assert [e.as_error()["message"] for e in result.errors] == [
        "Leden.csv row 2: name of a parent is 300 characters long; the registry keeps at most 200. "
        "Shorten it in the export's source"]


def test_an_amount_with_one_digit_too_many_before_the_point_is_refused():
    cases = read_discipline(open_table("d.csv", (
        "Dossiernummer;Rel. code;Boete;Sanctie\n"
        "T-1;AAA11A1;€ 10.000.000,00;\n"
        "T-2;AAA11A1;€ 9.999.999,99;\n").encode()))
    assert [str(c.fee) for c in cases.records] == ["9999999.99"]
    assert [e.message for e in cases.errors] == [
        "'Boete' 10000000.00 is too large (at most 7 digits before the decimal point)"]
