"""The CSV readers' cell values: amounts, dates, relatiecodes, genders, names (emails: test_emails.py)."""

from datetime import date
from decimal import Decimal

import pytest

from pipelines.readers import (
    BadValue,
    multi,
    open_table,
    parse_amount,
    parse_date,
    parse_gender,
    parse_knvb_id,
    read_members,
    split_naam,
)


def members(text: str):
    return read_members(open_table("Leden.csv", text.encode()))


@pytest.mark.parametrize(("text", "amount"), [
    ("€ 1.234,56", Decimal("1234.56")), ("€ 12,50", Decimal("12.50")), ("-€ 12,50", Decimal("-12.50")),
    ("€ -7,00", Decimal("-7.00")), ("(3,25)", Decimal("-3.25")), ("1234.56", Decimal("1234.56")),
    ("1.234", Decimal("1234")), ("1,234.50", Decimal("1234.50")), ("", Decimal("0")), ("€\u00a095,00", Decimal("95")),
])
def test_it_parses_dutch_amounts(text, amount):
    assert parse_amount(text) == amount


@pytest.mark.parametrize("text", ["abc", "€ 1,2,3.4.5x", "NaN", "Infinity", "12)", "(12", "-"])
def test_it_rejects_what_is_not_an_amount(text):
    with pytest.raises(BadValue):
        parse_amount(text)


def test_dates():
    assert parse_date("2012-02-29") == date(2012, 2, 29)
    assert parse_date("29-02-2012") == date(2012, 2, 29)
    assert parse_date("1/2/2012") == date(2012, 2, 1)
    assert parse_date("") is None
    for bad in ("2012-02-30", "gisteren", "31-13-2012"):
        with pytest.raises(BadValue):
            parse_date(bad)


@pytest.mark.parametrize(("text", "amount"), [
    ("12,50-", Decimal("-12.50")), ("(-3,25)", Decimal("3.25")), ("EUR 10", Decimal("10")),
    ("1.234.567", Decimal("1234567")), ("1,234,567", Decimal("1234567")), ("1.23", Decimal("1.23")),
    ("12.5", Decimal("12.5")), ("€ 1.234,56-", Decimal("-1234.56")), ("1234,5", Decimal("1234.5")),
    ("-€1.234", Decimal("-1234")), ("(€ 5)", Decimal("-5")), ("0,00", Decimal("0.00")),
    ("12,50 €", Decimal("12.50")), ("1\u00a0234,56", Decimal("1234.56")), ("10 EUR", Decimal("10")),
    ("1 234,56", Decimal("1234.56")),
])
def test_it_parses_signs_and_separators_of_amounts(text, amount):
    assert parse_amount(text) == amount
    assert str(parse_amount(text)) == str(amount)  # the exact digits, not just an equal value


def test_a_bad_amount_names_the_column_and_the_cell():
    with pytest.raises(BadValue) as info:
        parse_amount("ongeveer € 10", "Boete")
    assert str(info.value) == "Boete 'ongeveer € 10' is not an amount"
    with pytest.raises(BadValue, match="^amount 'sNaN' is not an amount$"):
        parse_amount("sNaN")


def test_dates_with_a_time_or_single_digits_and_the_message_names_the_column():
    assert parse_date("2012-02-29 10:15") == date(2012, 2, 29)
    assert parse_date("2012-02-29T10:15:00") == date(2012, 2, 29)
    assert parse_date("2012-2-9") == date(2012, 2, 9)
    assert parse_date("9.2.2012") == date(2012, 2, 9)
    assert parse_date("09/02/2012 00:00") == date(2012, 2, 9)
    with pytest.raises(BadValue) as info:
        parse_date("2012-02-30", "birth date")
    assert str(info.value) == "birth date '2012-02-30' is not a date (expected YYYY-MM-DD)"
    with pytest.raises(BadValue, match="^date '30-02-2012' is not a date"):
        parse_date("30-02-2012")
    with pytest.raises(BadValue):
        parse_date("2012-02-29x")
    for short in ("1/2", "12", "2012"):  # too short for the fast path's checks: still a BadValue
        with pytest.raises(BadValue):
            parse_date(short)



def test_relatiecodes_are_upper_cased_and_checked():
    assert parse_knvb_id(" abc12d3 ") == "ABC12D3"
    assert parse_knvb_id("A") == "A" and parse_knvb_id("QX-4821") == "QX-4821"
    assert parse_knvb_id("A" * 20) == "A" * 20
    for bad in ("A" * 21, "ABC 12D3", "ABC_12D3", "ÄBC12D3", "ABC.12"):
        with pytest.raises(BadValue):
            parse_knvb_id(bad)
    with pytest.raises(BadValue) as info:
        parse_knvb_id("ab c")
    assert str(info.value) == ("relatiecode 'ab c' is not a valid relatiecode (letters, digits and hyphens, "
                               "1 to 20 characters)")
    with pytest.raises(BadValue) as info:
        parse_knvb_id("  ")
    assert str(info.value) == "the relatiecode (Rel. code) is missing"


@pytest.mark.parametrize(("text", "gender"), [
    ("Man", "M"), (" MALE ", "M"), ("m", "M"), ("jongen", "M"), ("Vrouw", "V"), ("female", "V"), ("v", "V"),
    ("F", "V"), ("Meisje", "V"), ("", ""), ("onbekend", ""), ("x", ""),
])
def test_genders(text, gender):
    assert parse_gender(text) == gender


def test_comma_separated_cells():
    assert multi("JO11-1,  JO11-2") == ["JO11-1", "JO11-2"]
    assert multi("JO11-1") == ["JO11-1"]
    assert multi("") == []
    assert multi("a,,b, ") == ["a", "b"]
    assert multi(" , ") == []


def test_naam_without_a_comma_or_roepnaam():
    assert split_naam("  Jansen  ") == ("", "", "Jansen", "")
    assert split_naam("Vries, J. de") == ("", "de", "Vries", "J.")
    assert split_naam("Vries,J.P.  (Jan Piet)") == ("Jan Piet", "", "Vries", "J.P.")
    assert split_naam("Vries, J.  P. (Jan)") == ("Jan", "", "Vries", "J. P.")
    assert split_naam(" Berg , A. ( Anna ) van ") == ("Anna", "van", "Berg", "A.")


def test_naam_is_split_when_the_name_columns_are_missing():
    assert split_naam("Berg, J. (Jan) van den") == ("Jan", "van den", "Berg", "J.")
    assert split_naam("Hart, A. (Anouk) 't") == ("Anouk", "'t", "Hart", "A.")
    [m] = members("Naam;Rel. code\n\"Berg, J. (Jan) van den\";ABC12D3\n").records
    assert (m.first_name, m.infix, m.last_name, m.initials) == ("Jan", "van den", "Berg", "J.")
