"""The web source end to end: real Chromium (Playwright) against the local stand-in of Sportlink and Nikki.

Fails in CI when chromium or Playwright is missing (`make browser-deps`);
skips loudly elsewhere. Waits are bounded and scaled down
(WEB_SOURCE_TIMEOUT_SCALE), the human-like pauses are off.
"""

from __future__ import annotations

import gzip
import json

import pyotp
import pytest

from pipelines.models import Commissie, CommissieMembership, Contribution, DisciplineCase, Member, Team, TeamMembership
from runs.files import run_files_dir
from runs.models import Run, RunError, RunStatus, StepStatus
from runs.redact import clear_secret_cache
from runs.runner import run_pipeline
from tests.conftest import in_ci, require_binary
from tests.web_standin import PNG, NikkiStandIn, SportlinkStandIn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

USERNAME = "sync-bot@vv-example.nl"
PASSWORD = "Wachtwoord-Sportlink-42"
OTP_SECRET = pyotp.random_base32()
NIKKI_PASSWORD = "Wachtwoord-Nikki-42"
NIKKI_KEY = "nikki-ascii-key-123"
# A quarter of every wait: roomy for a busy CI machine (a 20 s wait is 5 s); the
# tests of a wait running out shorten it further.
SCALE = 0.25


def member(code: str, first: str, last: str, **extra) -> dict:
    record = {"PublicPersonId": code, "FirstName": first, "Infix": None, "LastName": last, "GenderCode": "Male",
              "DateOfBirth": "2013-05-04", "Email": f"{first.lower()}@example.org", "UnionTeams": "JO13-1",
              "TypeOfMemberDescription": "Bondslid", "AgeClassDescription": "Onder 13", "StreetName": "Dorpsstraat",
              "AddressNumber": 12, "AddressNumberAppendix": None, "ZipCode": "3820 DK", "City": "Hoogland",
              "MemberSince": "2020-08-01", "LastUpdate": "2026-01-10", "PersonImageDate": None}
    record.update(extra)
    return record


def club() -> dict:
    members = [
        member("XKQP81B", "Sam", "Berg", Infix="VAN", PersonImageDate="2025-09-01",
               NameParent1="Anna van Berg", EmailAddressParent1="anna@example.org",
               Committee=[{"CommitteeName": "Bestuur", "PublicCommitteeId": "C200", "CommitteeFunctionName":
                           "Voorzitter", "RelationStart": "2018-09-01", "RelationEnd": None, "Status": "ACTIVE"},
                          {"CommitteeName": "Kantine", "PublicCommitteeId": "C300", "CommitteeFunctionName": "Lid",
                           "RelationStart": "2015-01-01", "RelationEnd": "2019-01-01", "Status": "INACTIVE"}]),
        member("ABC12D3", "Lotte", "Visser", GenderCode="Female", PersonImageDate="2025-10-02"),
        member("DEF45G6", "Noah", "Bakker", UnionTeams=None, ClubTeams="Zaal 1", PersonImageDate="2025-10-03"),
        member("GHI78J9", "Emma", "Smit", DateOfBirth="2012-02-30"),  # a bad date: a row error, as in a CSV
        member("OLD11A1", "Oud", "Lid", Status="INACTIVE"),
    ]
    teams = [
        {"PublicTeamId": "T9001", "TeamName": "JO13-1", "TeamCode": "JO13-1", "GameActivityDescription": "Veld",
         "Gender": "Gemengd", "Players": [{"PublicPersonId": "XKQP81B", "RoleFunctionDescription": "Teamspeler"},
                                          {"PublicPersonId": "ABC12D3", "RoleFunctionDescription": "Teamspeler"}],
         "Staff": [{"PublicPersonId": "DEF45G6", "FunctionDescription": "Trainer"}]},
        {"PublicTeamId": "C77", "Name": "Zaal 1", "GameActivityDescription": "Zaal", "Kind": "Club",
         "Players": [{"PublicPersonId": "DEF45G6", "RoleFunctionDescription": "Teamspeler"}], "Staff": []},
    ]
    cases = [{"DossierId": "T-12345", "PublicPersonId": "XKQP81B", "MatchDate": "2026-03-12",
              "MatchDescription": "JO13-1 - Tegenstander JO13-1", "TeamName": "JO13-1", "ChargeCodes": ["R1"],
              "ChargeDescription": "Natrappen", "SanctionDescription": "Schorsing 2 wedstrijden",
              "AdministrativeFee": 12.5, "IsCharged": True}]
    photos = {"XKQP81B": PNG, "ABC12D3": None}  # Lotte's photo URL answers 404; Noah has no photo
    return {"members": members, "teams": teams, "cases": cases, "photos": photos}


@pytest.fixture
def browser_ready(monkeypatch):
    require_binary("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if in_ci():
            pytest.fail("playwright is not installed (it is in requirements.txt)")
        pytest.skip("playwright is not installed: run `make setup`")


@pytest.fixture
def sportlink(browser_ready, settings, tmp_path):
    data = club()
    with SportlinkStandIn(username=USERNAME, password=PASSWORD, otp_secret=OTP_SECRET, **data) as standin:
        settings.SPORTLINK_SOURCE = "web"
        settings.SPORTLINK_URL = standin.url
        settings.SPORTLINK_USERNAME = USERNAME
        settings.SPORTLINK_PASSWORD = PASSWORD
        settings.SPORTLINK_OTP_SECRET = OTP_SECRET
        settings.WEB_SOURCE_PAUSES = False
        settings.WEB_SOURCE_TIMEOUT_SCALE = SCALE
        settings.RUNS_FILES_DIR = tmp_path / "runs"
        settings.MEDIA_ROOT = str(tmp_path / "media")
        settings.LAPOSTA_API_KEY = ""
        settings.FREESCOUT_API_KEY = ""
        clear_secret_cache()
        yield standin
    clear_secret_cache()


@pytest.fixture
def nikki(browser_ready, settings, tmp_path):
    rows = [["2026", "Sam van Berg", "Dorpsstraat 12", "XKQP81B", "JO13-1", "N26001", "€ 12,50", "Open"],
            ["2026", "Lotte Visser", "Dorpsstraat 12", "ABC12D3", "JO13-1", "N26002", "€ 0,00", "Betaald"],
            ["Totaal", "", "", "", "", "", "€ 12,50"]]  # a footer row of 7 cells is not a member
    with NikkiStandIn(username="penningmeester", password=NIKKI_PASSWORD, otp_key=NIKKI_KEY, rows=rows,
                      report={"N26001": "€ 1.212,50", "N26002": "€ 250,00"}) as standin:
        settings.NIKKI_SOURCE = "web"
        settings.NIKKI_URL = standin.url
        settings.NIKKI_USERNAME = "penningmeester"
        settings.NIKKI_PASSWORD = NIKKI_PASSWORD
        settings.NIKKI_OTP_SECRET = NIKKI_KEY
        settings.WEB_SOURCE_PAUSES = False
        settings.WEB_SOURCE_TIMEOUT_SCALE = SCALE
        settings.RUNS_FILES_DIR = tmp_path / "runs"
        clear_secret_cache()
        yield standin
    clear_secret_cache()


def archived(run: Run, name: str):
    return json.loads(gzip.decompress((run_files_dir(run.pk) / f"{name}.gz").read_bytes()))


def errors(run: Run) -> list[str]:
    return list(RunError.objects.filter(run=run).order_by("pk").values_list("message", flat=True))


def test_people_logs_in_once_and_reads_members_and_photos_like_an_export(sportlink):
    run = run_pipeline("people")

    assert sportlink.logins == 1
    assert run.status == RunStatus.PARTIAL, errors(run)  # the bad birth date, nothing else
    assert errors(run) == ["Sportlink SearchMembers row 4: birth date '2012-02-30' is not a date (expected "
                           "YYYY-MM-DD)"]
    sam = Member.objects.get(knvb_id="XKQP81B")
    assert (sam.first_name, sam.infix, sam.last_name, sam.gender, str(sam.birth_date)) == \
        ("Sam", "van", "Berg", "M", "2013-05-04")
    assert (sam.house_number, sam.postcode, sam.local_teams) == ("12", "3820 DK", "JO13-1")
    assert Member.objects.get(knvb_id="DEF45G6").local_teams == "Zaal 1"  # ClubTeams when there are no UnionTeams
    assert not Member.objects.filter(knvb_id="OLD11A1").exists()  # the search asks for active members only
    assert sportlink.search_bodies == [{"Statuses": ["ACTIVE", "ELIGABLE_FOR_REMOVE"],
                                        "FetchUnionTeams": True}]
    assert Member.objects.get(knvb_id="XKQP81B").parents.get().email == "anna@example.org"

    # Photos: Sam's is stored; Lotte's signed URL answers 404 (no photo, not an error); Noah has none.
    sam.refresh_from_db()
    assert sam.photo.name.endswith(".png") and sam.photo.read() == PNG
    assert not Member.objects.get(knvb_id="ABC12D3").photo
    photo_step = run.steps.get(name="photo-download")
    assert photo_step.status == StepStatus.SUCCESS and photo_step.skipped == 2

    # The raw answer is kept, gzipped, in the run's own folder.
    assert [m["PublicPersonId"] for m in archived(run, "sportlink-members.json")["Members"]] == \
        ["XKQP81B", "ABC12D3", "DEF45G6", "GHI78J9"]
    assert "Sportlink Club (http://127.0.0.1:" in run.steps.get(name="sportlink-download").detail["source"]
    # Personal data: for syncsite's own user only.
    assert (run_files_dir(run.pk) / "sportlink-members.json.gz").stat().st_mode & 0o077 == 0
    assert run_files_dir(run.pk).stat().st_mode & 0o077 == 0


def test_all_shares_one_browser_and_one_login_per_site(sportlink, nikki):
    run = run_pipeline("all")

    assert sportlink.logins == 1 and nikki.logins == 1
    children = {child.pipeline: child for child in Run.objects.filter(parent=run)}
    for name in ("people", "teams", "functions", "discipline", "nikki"):
        assert children[name].status in (RunStatus.SUCCESS, RunStatus.PARTIAL), (name, errors(children[name]))
    # people and functions share one member search
    assert sportlink.hits["SearchMembers"] == 1

    assert dict(Team.objects.values_list("sportlink_id", "name")) == {"T9001": "JO13-1", "C77": "Zaal 1"}
    assert sorted(TeamMembership.objects.values_list("member__knvb_id", "team__sportlink_id", "role")) == [
        ("ABC12D3", "T9001", "Teamspeler"), ("DEF45G6", "C77", "Teamspeler"), ("DEF45G6", "T9001", "Trainer"),
        ("XKQP81B", "T9001", "Teamspeler")]
    assert list(Commissie.objects.values_list("sportlink_id", "name")) == [("C200", "Bestuur")]
    assert list(CommissieMembership.objects.values_list("member__knvb_id", "role", "is_current")) == [
        ("XKQP81B", "Voorzitter", True)]
    case = DisciplineCase.objects.get()
    assert (case.dossier_id, case.member.knvb_id, str(case.fee)) == ("T-12345", "XKQP81B", "12.50")

    contributions = {c.member.knvb_id: c for c in Contribution.objects.select_related("member")}
    assert (str(contributions["XKQP81B"].total), str(contributions["XKQP81B"].balance)) == ("1212.50", "12.50")
    assert contributions["ABC12D3"].status == "Betaald"
    assert ("GET", "/js/main.js") not in nikki.requests  # blocked, as the original does
    assert archived(children["nikki"], "nikki-leden.json")[0][3] == "XKQP81B"


def test_a_wrong_password_fails_the_run_and_retires_nobody(sportlink, settings):
    Member.objects.create(knvb_id="KEEP001", last_name="Blijft", source_hash="x")
    settings.SPORTLINK_PASSWORD = "not-the-password"

    run = run_pipeline("people")

    assert run.status == RunStatus.FAILED
    step = run.steps.get(name="sportlink-download")
    assert step.status == StepStatus.FAILED
    assert step.reason.startswith("Sportlink refused the login: check SPORTLINK_USERNAME and SPORTLINK_PASSWORD")
    assert not Member.objects.get(knvb_id="KEEP001").is_former
    assert sportlink.logins == 0


def test_a_refused_login_is_not_tried_again_by_the_other_children_of_all(sportlink, settings):
    settings.SPORTLINK_PASSWORD = "not-the-password"
    run = run_pipeline("all")
    children = {child.pipeline: child for child in Run.objects.filter(parent=run)}
    assert children["people"].steps.get(name="sportlink-download").reason.startswith(
        "Sportlink refused the login: check SPORTLINK_USERNAME and SPORTLINK_PASSWORD")
    assert children["teams"].steps.get(name="team-download").reason.endswith("(not tried again in this run)")
    assert [path for method, path in sportlink.requests if method == "POST"].count(
        "/auth/realms/club/login-actions/authenticate") == 1
    assert run.status == RunStatus.FAILED


def test_a_wrong_code_names_the_secret_and_the_clock(sportlink, settings):
    settings.SPORTLINK_OTP_SECRET = pyotp.random_base32()
    run = run_pipeline("discipline")
    assert run.status == RunStatus.FAILED
    assert run.steps.get(name="discipline-download").reason.startswith(
        "the two-factor code was rejected: check SPORTLINK_OTP_SECRET and the server clock")


def test_a_renamed_element_names_the_page_and_the_selector(sportlink, settings):
    settings.WEB_SOURCE_TIMEOUT_SCALE = 0.1
    sportlink.switches.renamed.add("btnSearch")
    run = run_pipeline("people")
    assert run.status == RunStatus.FAILED
    assert run.steps.get(name="sportlink-download").reason.startswith(
        "Sportlink's member search page changed: #btnSearch not found after 2 s")


def test_an_endpoint_answering_500_is_quoted(sportlink):
    Member.objects.create(knvb_id="KEEP001", last_name="Blijft", source_hash="x")
    sportlink.switches.fail["SearchMembers"] = 500
    run = run_pipeline("people")
    assert run.status == RunStatus.FAILED
    reason = run.steps.get(name="sportlink-download").reason
    assert reason.startswith("SearchMembers answered 500: <html><body><h1>500 Internal Server Error</h1>")
    assert len(reason.split(": ", 1)[1]) == 300
    assert not Member.objects.get(knvb_id="KEEP001").is_former


def test_a_slow_answer_runs_into_the_bounded_wait(sportlink, settings):
    settings.WEB_SOURCE_TIMEOUT_SCALE = 0.1
    sportlink.switches.slow["DisciplineClubCasesPlayer"] = 8
    run = run_pipeline("discipline")
    assert run.status == RunStatus.FAILED
    assert run.steps.get(name="discipline-download").reason.startswith(
        "Sportlink's discipline cases page changed: no DisciplineClubCasesPlayer answer within 6 s")


def test_an_empty_member_search_retires_nobody(sportlink):
    Member.objects.create(knvb_id="KEEP001", last_name="Blijft", source_hash="x")
    sportlink.switches.empty.add("SearchMembers")
    run = run_pipeline("people")
    assert run.status == RunStatus.FAILED
    assert "SearchMembers answered with no members at all" in run.steps.get(name="sportlink-download").reason
    assert not Member.objects.get(knvb_id="KEEP001").is_former


def test_no_discipline_cases_is_a_successful_empty_download(sportlink):
    sportlink.switches.empty.add("DisciplineClubCasesPlayer")
    run = run_pipeline("discipline")
    assert run.status == RunStatus.SUCCESS
    assert run.steps.get(name="discipline-download").read == 0


def test_an_expired_session_says_so(sportlink):
    sportlink.switches.expire_on = "/teams/club-teams"
    run = run_pipeline("teams")
    assert run.status == RunStatus.FAILED
    assert "the session expired" in run.steps.get(name="team-download").reason
    assert not TeamMembership.objects.exists()


def test_a_cancel_request_stops_the_member_by_member_functions_download(sportlink):
    # The functions tab is visited for every member (minutes in a real club): a cancel
    # request from the dashboard is honoured between two members.
    from django.utils import timezone

    from tests.conftest import closing_connection

    sportlink.switches.on_hit["MemberCommittees"] = closing_connection(
        lambda: Run.objects.filter(pipeline="functions", status=RunStatus.RUNNING).update(
            cancel_requested_at=timezone.now()))
    sportlink.switches.slow["MemberCommittees"] = 1.0  # the tracker's writer notices meanwhile

    run = run_pipeline("functions")

    assert run.status == RunStatus.CANCELLED
    assert run.steps.get(name="functions-download").status == StepStatus.CANCELLED
    assert sportlink.hits["MemberCommittees"] < 4  # not every member was visited
    assert not CommissieMembership.objects.exists()


def test_a_wrong_nikki_login_fails_without_showing_the_password(nikki, settings):
    settings.NIKKI_PASSWORD = "Verkeerd-Wachtwoord-1"
    clear_secret_cache()
    run = run_pipeline("nikki")
    assert run.status == RunStatus.FAILED
    reason = run.steps.get(name="nikki-download").reason
    assert reason.startswith("Nikki refused the login: check NIKKI_USERNAME, NIKKI_PASSWORD and NIKKI_OTP_SECRET")
    stored = " ".join(RunError.objects.values_list("message", flat=True)) + " ".join(
        RunError.objects.values_list("traceback", flat=True))
    assert "Verkeerd-Wachtwoord-1" not in stored and NIKKI_KEY not in stored
