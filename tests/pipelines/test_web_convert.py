"""JSON -> the tables the CSV readers read: one record model, two sources (no browser needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from pipelines.demodata import write_demo
from pipelines.readers import read_discipline, read_functions, read_members, read_nikki, read_teams
from pipelines.sources import ExportSource
from pipelines.web import convert
from pipelines.web.nikki import nikki_totp_now
from pipelines.web.site import LoginRefused
from pipelines.web.source import team_rows
from pipelines.web.sportlink import totp_now
from tests.web_standin import members_json_from_csv


def _comparable(record) -> dict:
    values = asdict(record)
    values.pop("source_hash")
    values.pop("row_number")
    return values


def test_the_web_json_gives_the_records_and_row_errors_of_the_csv_export(tmp_path):
    write_demo(tmp_path, members=120, seed=11, photos=0)
    csv_table = ExportSource(str(tmp_path)).table("members")
    from_csv = read_members(csv_table)
    body = {"Members": members_json_from_csv(next(tmp_path.glob("Leden *.csv")).read_bytes())}

    from_web = read_members(convert.members_table(json.loads(json.dumps(body)), filename="SearchMembers"))

    assert [_comparable(r) for r in from_web.records] == [_comparable(r) for r in from_csv.records]
    # CSV row 2 is JSON record 1 (row 1 is the header), in the positions and in the messages.
    assert [(e.row - 1, e.message, e.identifier) for e in from_web.errors] == \
        [(e.row - 2, re.sub(r"row (\d+)", lambda m: f"row {int(m[1]) - 1}", e.message), e.identifier)
         for e in from_csv.errors]
    assert len(from_csv.errors) == 4  # the demo's bad email, missing code, duplicate and bad date
    assert from_web.bad_keys == from_csv.bad_keys
    assert [asdict(p) for p in from_web.extra["parents"]] == [asdict(p) for p in from_csv.extra["parents"]]
    assert from_web.errors[0].as_error()["message"].startswith("SearchMembers row ")


def test_member_values_are_read_as_the_export_would_show_them():
    body = {"Members": [
        {"PublicPersonId": "xkqp81b", "FirstName": "Sam", "Infix": "Van Der", "LastName": "Berg", "GenderCode":
         "Female", "AddressNumber": 12, "AddressNumberAppendix": "a", "ClubTeams": "Zaal 1, Zaal 2",
         "UnionTeams": None, "DateOfBirth": "2013-05-04T00:00:00", "Email": None, "Unknown": {"nested": 1}},
    ]}
    record = read_members(convert.members_table(body)).records[0]
    assert (record.knvb_id, record.infix, record.gender, record.house_number, record.house_number_addition) == (
        "XKQP81B", "van der", "V", "12", "a")
    assert record.teams == ["Zaal 1", "Zaal 2"] and str(record.birth_date) == "2013-05-04" and record.email == ""


def test_a_nested_value_where_text_belongs_is_a_row_error_not_a_crash():
    body = {"Members": [{"PublicPersonId": "XKQP81B", "LastName": "Berg", "DateOfBirth": {"date": "2013"}},
                        {"PublicPersonId": "ABC12D3", "LastName": "Visser"}]}
    result = read_members(convert.members_table(body))
    assert [r.knvb_id for r in result.records] == ["ABC12D3"]
    assert "birth date '{\"date\": \"2013\"}' is not a date" in result.errors[0].message


@pytest.mark.parametrize("body", [{"members": []}, [], {"Members": "nope"}, {"Members": [1]}])
def test_an_unexpected_shape_is_an_error_that_quotes_the_answer(body):
    with pytest.raises(convert.UnexpectedShape) as caught:
        list(read_members(convert.members_table(body)).records)
    assert "SearchMembers" in str(caught.value)


def test_a_lone_object_counts_as_a_list_of_one():
    assert convert.records_of({"Team": {"PublicTeamId": "T1"}}, "Team", "UnionTeams") == [{"PublicTeamId": "T1"}]


def test_teams_become_one_row_per_person_per_role():
    raw = {"UnionTeams": {"Team": [{"PublicTeamId": "T9001", "TeamName": "JO13-1", "GameActivityDescription": "Veld"}]},
           "ClubTeams": {"Team": [{"PublicTeamId": "C77", "Name": "Zaal 1"}]},
           "members": {"T9001": {
               "players": {"Person": [{"PublicPersonId": "XKQP81B", "RoleFunctionDescription": None}]},
               "staff": {"Person": {"PublicPersonId": "ABC12D3", "FunctionDescription": "Trainer"}}},
                       "C77": {"players": {"Person": []}, "staff": None}}}
    result = read_teams(convert.teams_table(team_rows(raw)))
    assert [(r.team_id, r.team_name, r.team_kind, r.role, r.knvb_id) for r in result.records] == [
        ("T9001", "JO13-1", "Veld", "Teamspeler", "XKQP81B"), ("T9001", "JO13-1", "Veld", "Trainer", "ABC12D3")]


def test_team_pages_that_all_answered_nothing_mean_the_page_changed():
    raw = {"UnionTeams": {"Team": [{"PublicTeamId": "T1", "TeamName": "1"}]}, "ClubTeams": {"Team": []},
           "members": {"T1": {"players": None, "staff": None}}}
    with pytest.raises(Exception, match="none of the 1 teams answered"):
        team_rows(raw)


def test_only_current_commissie_functions_are_rows():
    body = {"Committee": [
        {"CommitteeName": "Bestuur", "PublicCommitteeId": "C200", "CommitteeFunctionName": "Voorzitter",
         "RelationStart": "2018-09-01", "RelationEnd": None, "Status": "ACTIVE"},
        {"CommitteeName": "Jeugd", "CommitteeFunctionName": "Lid", "RelationStart": "2020-01-01",
         "RelationEnd": "2027-06-30", "Status": "Actief"},
        {"CommitteeName": "Kantine", "CommitteeFunctionName": "Lid", "RelationEnd": "2019-01-01", "Status": "INACTIVE"},
    ]}
    result = read_functions(convert.functions_table(convert.committee_rows("XKQP81B", body)))
    assert [(r.commissie_name, r.commissie_id, r.role, str(r.since), str(r.until)) for r in result.records] == [
        ("Bestuur", "C200", "Voorzitter", "2018-09-01", "None"), ("Jeugd", "", "Lid", "2020-01-01", "2027-06-30")]


@pytest.mark.parametrize("wrap", [lambda cases: cases, lambda cases: {"Cases": cases}, lambda cases: {"Data": cases}])
def test_discipline_cases_are_read_from_each_documented_shape(wrap):
    cases = [{"DossierId": "T-12345", "PublicPersonId": "XKQP81B", "MatchDate": "2026-03-12", "TeamName": "1",
              "ChargeDescription": "Natrappen", "SanctionDescription": "Schorsing", "AdministrativeFee": 1.25}]
    record = read_discipline(convert.discipline_table(wrap(cases))).records[0]
    # A JSON number is never read as a Dutch thousands separator.
    assert (record.dossier_id, record.description, record.fee) == ("T-12345", "Natrappen", Decimal("1.25"))


def test_an_unknown_discipline_shape_fails():
    with pytest.raises(convert.UnexpectedShape, match="unknown shape"):
        convert.discipline_table({"Zaken": []})


def test_nikki_rows_are_joined_with_the_report_on_the_nikki_id():
    rows = [["2026", "Sam", "Straat 1", "XKQP81B", "1", "N1", "€ 12,50", "Open"],
            ["2026", "Sam", "Straat 1", "XKQP81B", "1", "N2", "€ 0,00", "Betaald"],
            ["2025", "Lotte", "Straat 2", "ABC12D3", "1", "N3", "€ 1,00", "Open"]]
    report = '\ufeff"nikki_id";"hoofdsom"\r\n"N1";"€ 1.212,50"\r\n"N2";"€ 10,00"\r\n'.encode()
    result = read_nikki(convert.nikki_table(rows, report))
    by_key = {(r.knvb_id, r.year): r for r in result.records}
    sam = by_key[("XKQP81B", 2026)]
    assert (sam.total, sam.balance, sam.status, sam.nikki_id) == (Decimal("1222.50"), Decimal("12.50"), "Open",
                                                                  "N1,N2")
    assert by_key[("ABC12D3", 2025)].total == Decimal("1.00")  # not in the report: the balance


def test_a_report_without_the_documented_columns_fails():
    with pytest.raises(convert.UnexpectedShape, match="nikki_id and hoofdsom"):
        convert.nikki_amounts(b"id;bedrag\n1;2\n")


@time_machine.travel(datetime(1970, 1, 1, 0, 0, 59, tzinfo=UTC), tick=False)
def test_totp_codes_follow_rfc_6238():
    # RFC 6238 appendix B: SHA-1, key "12345678901234567890", T = 59 s -> 94287082 (8 digits).
    rfc_key = "12345678901234567890"
    assert totp_now(base64.b32encode(rfc_key.encode()).decode()) == "287082"
    # Nikki: a plain ASCII key is the HMAC key itself; an otpauth URL carries a base32 secret.
    assert nikki_totp_now(rfc_key) == "287082"
    secret = base64.b32encode(rfc_key.encode()).decode()
    assert nikki_totp_now(f"otpauth://totp/Nikki:me?secret={secret}&issuer=Nikki&digits=8") == "94287082"


@time_machine.travel(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), tick=False)
def test_a_short_issued_secret_still_gives_codes():
    # 16 base32 characters (80 bits): below pyotp's issuing minimum, but sites hand them out.
    key = base64.b32decode("JBSWY3DPEHPK3PXP")
    counter = int(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()) // 30
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0xF
    expected = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    assert totp_now("jbsw y3dp ehpk 3pxp") == f"{expected:06d}"


def test_a_malformed_otp_secret_is_named_without_its_value():
    with pytest.raises(LoginRefused) as caught:
        totp_now("not base32 !!")
    assert "SPORTLINK_OTP_SECRET is not a valid base32 secret" in str(caught.value)
    assert "!!" not in str(caught.value)


def test_a_counter_based_otpauth_url_is_refused_clearly():
    # otpauth://hotp/ is counter-based: no time-based code exists for it.
    with pytest.raises(LoginRefused, match="NIKKI_OTP_SECRET is neither an otpauth:// URL nor a plain key"):
        nikki_totp_now("otpauth://hotp/Nikki:me?secret=JBSWY3DPEHPK3PXP&counter=1")
