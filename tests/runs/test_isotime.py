from datetime import date, datetime, timedelta, timezone

from runs.isotime import iso


def test_a_datetime_keeps_its_offset():
    value = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert iso(value) == "2026-03-29T01:30:00+02:00"


def test_a_date_is_a_plain_date():
    assert iso(date(2026, 11, 29)) == "2026-11-29"


def test_none_stays_none():
    assert iso(None) is None
