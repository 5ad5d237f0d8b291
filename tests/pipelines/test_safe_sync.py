"""Safe sync: every retire/end/delete path goes through the removal guard
(pipelines.sync.guard_removals), held and approved, on the demo exports.

Runs on SQLite and PostgreSQL (DATABASE_URL); Laposta is the local stand-in
from laposta_fake speaking its API."""

import csv
import re

import pytest
import time_machine
from django.urls import reverse
from pytest_httpserver import HTTPServer

from pipelines.models import CommissieMembership, LapostaSubscription, Member, TeamMembership
from runs.models import Run, RunError, RunStatus, StepStatus
from runs.redact import clear_secret_cache
from runs.runner import run_pipeline
from tests.conftest import runsync
from tests.pipelines.conftest import export_file
from tests.pipelines.laposta_fake import KEY, MEMBERS_LIST, PARENTS_LIST, FakeLaposta
from tests.runs.test_action_views import CsrfClient, make_user, q_sync, texts  # noqa: F401 - q_sync is a fixture

pytestmark = pytest.mark.django_db(transaction=True)


def steps(run):
    return {s.name: s for s in run.steps.all()}


def keep_rows(path, count, *, with_email=False):
    """Keep the header and the first `count` data rows of an export (any encoding, any line ends).

    `with_email`: only rows whose member has an email address (the Laposta members list).
    """
    lines = path.read_bytes().split(b"\n")
    kept = [line for line in lines[1:] if line.strip()]
    if with_email:
        email = next(csv.reader([lines[0].decode("utf-8-sig")], delimiter=";")).index("E-mailadres")
        kept = [line for line in kept if "@" in next(csv.reader([line.decode("utf-8")], delimiter=";"))[email]]
    path.write_bytes(b"\n".join([lines[0], *kept[:count]]) + b"\n")


def drop_rows(path, *needles):
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(line for line in lines if not any(n.encode() in line for n in needles)))


def active_members():
    return Member.objects.filter(is_former=False).count()


# --- members ----------------------------------------------------------------------------


def test_the_wrong_filter_holds_every_former_but_creates_and_updates_go_ahead(export_dir):
    run_pipeline("people")
    active = active_members()
    assert active == 60
    path = export_file(export_dir, "Leden")
    keep_rows(path, 1)
    kept = Member.objects.get(knvb_id=re.search(rb'"([A-Z0-9-]+)";"(?:Man|Vrouw)', path.read_bytes())[1].decode())
    path.write_bytes(path.read_bytes().replace(f'"{kept.last_name}"'.encode(), b'"Nieuwenhuis"'))

    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL
    sync = steps(run)["rondo-club-sync"]
    assert sync.status == StepStatus.PARTIAL
    # The parents of the 59 members missing from the export are held too (the same guard).
    assert sync.held_removals == {"members marked former": 59, "parents marked former": 43}
    assert sync.detail["former"] == 0
    message = ("The export lists 1 of 60 active members. 59 members would be marked former. Nothing was removed. "
               "If this is right, approve the removals on the run page or run `runsync people --allow-removals`.")
    parents_message = ("The export names 1 of 44 current parents. 43 parents would be marked former. Nothing was "
                       "removed. If this is right, approve the removals on the run page or run "
                       "`runsync people --allow-removals`.")
    assert sync.reason == f"{message} {parents_message}"
    held, held_parents = RunError.objects.filter(run=run, identifier_kind="held_removals").order_by("pk")
    assert (held.message, held.step_name) == (message, "rondo-club-sync")
    assert held_parents.message == parents_message
    assert active_members() == 60  # nobody retired
    kept.refresh_from_db()
    assert kept.last_name == "Nieuwenhuis"  # the update went ahead
    assert not run.allow_removals


def test_approved_removals_go_through_and_are_recorded(export_dir):
    run_pipeline("people")
    keep_rows(export_file(export_dir, "Leden"), 1)
    run = run_pipeline("people", allow_removals=True)
    assert run.allow_removals
    sync = steps(run)["rondo-club-sync"]
    assert sync.status == StepStatus.SUCCESS and sync.held_removals == {}
    assert sync.detail["former"] == 59 and sync.detail["removals_allowed"] == {"members marked former": 59,
                                                                                "parents marked former": 43}
    assert active_members() == 1


@pytest.mark.parametrize(("leaving", "held"), [(5, False), (6, False), (7, True)])
def test_more_than_10_percent_and_more_than_5_leavers_are_held(export_dir, leaving, held):
    run_pipeline("people")
    codes = list(Member.objects.order_by("knvb_id").values_list("knvb_id", flat=True)[:leaving])
    drop_rows(export_file(export_dir, "Leden"), *(f'"{code}"' for code in codes))
    run = run_pipeline("people")
    sync = steps(run)["rondo-club-sync"]
    # 6 of 60 is exactly 10 %: not more than SYNC_MAX_REMOVALS_PERCENT, so it goes through.
    assert sync.held_removals == ({"members marked former": leaving} if held else {})
    assert active_members() == (60 if held else 60 - leaving)


def test_the_percentage_and_the_minimum_come_from_the_settings(export_dir, settings):
    run_pipeline("people")
    codes = list(Member.objects.order_by("knvb_id").values_list("knvb_id", flat=True)[:7])
    drop_rows(export_file(export_dir, "Leden"), *(f'"{code}"' for code in codes))
    settings.SYNC_MAX_REMOVALS_PERCENT = 10
    settings.SYNC_MAX_REMOVALS_MIN = 6
    run = run_pipeline("people")
    assert steps(run)["rondo-club-sync"].held_removals == {"members marked former": 7}
    assert active_members() == 60
    settings.SYNC_MAX_REMOVALS_MIN = 7
    run = run_pipeline("people")
    assert steps(run)["rondo-club-sync"].detail["former"] == 7 and active_members() == 53


def test_a_dry_run_reports_what_would_be_held(export_dir):
    run_pipeline("people")
    keep_rows(export_file(export_dir, "Leden"), 1)
    run = run_pipeline("people", dry_run=True)
    sync = steps(run)["rondo-club-sync"]
    assert sync.held_removals == {"members marked former": 59, "parents marked former": 43}
    assert sync.reason.startswith("Dry run: these removals would be held. The export lists 1 of 60 active members.")
    assert run.status == RunStatus.PARTIAL and active_members() == 60


def test_a_header_only_export_fails_the_download_and_retires_nobody(export_dir):
    run_pipeline("people")
    path = export_file(export_dir, "Leden")
    keep_rows(path, 0)
    run = run_pipeline("people")
    assert run.status == RunStatus.FAILED
    download = steps(run)["sportlink-download"]
    assert download.status == StepStatus.FAILED
    assert download.reason.startswith(f"{path.name}: the export has a header row but no member rows.")
    assert "rondo-club-sync" not in steps(run)
    assert active_members() == 60


def test_damaged_rows_never_retire_their_members(export_dir):
    run_pipeline("people")
    path = export_file(export_dir, "Leden")
    data = path.read_bytes()
    lines = data.split(b"\r\n")
    code = re.search(rb'"Bondslid";"([A-Z0-9-]+)"', lines[5])[1].decode()
    lines[5] = lines[5].replace(b'";"', b"", 3)  # three separators lost: wrong cell count
    path.write_bytes(b"\r\n".join(lines[:-1]))  # and the file cut off before its last line break
    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL
    assert not Member.objects.get(knvb_id=code).is_former
    messages = list(RunError.objects.filter(run=run, step_name="sportlink-download").values_list("message", flat=True))
    assert any(f"{path.name} row 6 has" in m for m in messages)
    assert any("does not end with a line break; the file may be cut off" in m for m in messages)
    assert active_members() == 60


# --- team and function memberships ------------------------------------------------------


def test_team_memberships_ended_by_a_partial_export_are_held_and_then_approved(export_dir):
    run_pipeline("people")
    with time_machine.travel("2026-09-01 12:00 +02:00"):
        run_pipeline("teams")
    open_before = TeamMembership.objects.filter(until__isnull=True).count()
    keep_rows(export_file(export_dir, "Teams"), 3)
    with time_machine.travel("2026-09-08 12:00 +02:00"):
        run = run_pipeline("teams")
    history = steps(run)["work-history-sync"]
    assert history.held_removals == {"team memberships ended": open_before - 3}
    assert history.reason.startswith(f"The export lists 3 of the {open_before} current team memberships. "
                                     f"{open_before - 3} team memberships would be ended. Nothing was removed.")
    assert "runsync teams --allow-removals" in history.reason
    assert TeamMembership.objects.filter(until__isnull=True).count() == open_before
    with time_machine.travel("2026-09-08 13:00 +02:00"):
        run = run_pipeline("teams", allow_removals=True)
    assert steps(run)["work-history-sync"].status == StepStatus.SUCCESS
    assert TeamMembership.objects.filter(until__isnull=True).count() == 3
    assert {str(d) for d in TeamMembership.objects.exclude(until=None).values_list("until", flat=True)} == {
        "2026-09-08"}


def test_functions_ended_by_a_partial_export_are_held_and_then_approved(export_dir):
    run_pipeline("people")
    run_pipeline("functions")
    current = CommissieMembership.objects.filter(is_current=True).count()
    keep_rows(export_file(export_dir, "Functies"), 2)
    run = run_pipeline("functions")
    history = steps(run)["commissie-work-history-sync"]
    assert history.held_removals == {"functions ended": current - 2}
    assert run.status == RunStatus.PARTIAL
    assert CommissieMembership.objects.filter(is_current=True).count() == current
    run_pipeline("functions", allow_removals=True)
    assert CommissieMembership.objects.filter(is_current=True).count() == 2


# --- Laposta --------------------------------------------------------------------------------


@pytest.fixture
def laposta(settings):
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    fake = FakeLaposta()
    server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(fake)
    server.start()
    settings.LAPOSTA_API_KEY = KEY
    settings.LAPOSTA_BASE_URL = server.url_for("/v2")
    settings.LAPOSTA_MEMBERS_LIST_ID = MEMBERS_LIST
    settings.LAPOSTA_PARENTS_LIST_ID = PARENTS_LIST
    clear_secret_cache()
    yield fake
    server.clear()
    server.stop()
    clear_secret_cache()


def test_laposta_deletions_of_a_wrong_filter_are_held_no_delete_is_sent_then_approved(export_dir, laposta):
    run_pipeline("people")
    on_list = len(laposta.lists[MEMBERS_LIST])
    assert on_list > 40
    keep_rows(export_file(export_dir, "Leden"), 1, with_email=True)

    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL
    assert laposta.sent("DELETE") == []
    prepare = steps(run)["laposta-prepare"]
    held = prepare.held_removals
    assert held["addresses removed from the Laposta members list"] == on_list - 1
    assert f"which holds {on_list} addresses syncsite sent. {on_list - 1} addresses would be removed from it. " \
           "Nothing was removed." in prepare.reason
    assert len(laposta.lists[MEMBERS_LIST]) == on_list
    assert LapostaSubscription.objects.filter(list_id=MEMBERS_LIST).count() == on_list

    run = run_pipeline("people", allow_removals=True)
    deletes = laposta.sent("DELETE")
    assert len(deletes) >= on_list - 1
    assert len(laposta.lists[MEMBERS_LIST]) == 1
    assert steps(run)["laposta-submit"].detail["deleted"] == len(deletes)


def test_an_unreachable_laposta_stops_after_three_refusals_and_accounts_for_every_member(export_dir, settings):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.LAPOSTA_API_KEY = KEY
    settings.LAPOSTA_BASE_URL = f"http://127.0.0.1:{port}/v2"
    settings.LAPOSTA_MEMBERS_LIST_ID = MEMBERS_LIST
    settings.LAPOSTA_PARENTS_LIST_ID = ""
    clear_secret_cache()
    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL  # laposta-submit is not critical: the registry is synced
    submit = steps(run)["laposta-submit"]
    assert submit.status == StepStatus.FAILED and not submit.critical
    to_send = steps(run)["laposta-prepare"].detail["to_send"]
    assert (submit.read, submit.failed) == (to_send, to_send)
    assert submit.reason == (f"{to_send - 3} more members not sent: Laposta is unreachable: the connection to "
                             "127.0.0.1 was refused (3 times in a row); stopped. Check LAPOSTA_BASE_URL and that "
                             "Laposta is up.")
    errors = list(RunError.objects.filter(run=run, step_name="laposta-submit").order_by("id"))
    assert len(errors) == 4 and errors[-1].message == submit.reason
    assert all(e.identifier_kind == "knvb_id" for e in errors[:3])
    assert active_members() == 60
    clear_secret_cache()


def test_a_skipped_laposta_submit_is_recorded_non_critical(export_dir):
    run = run_pipeline("people")
    submit = steps(run)["laposta-submit"]
    assert submit.status == StepStatus.SKIPPED and not submit.critical


# --- runsync ------------------------------------------------------------------------------


def test_the_wrong_filter_through_runsync_exits_3_with_the_reason_then_allow_removals(export_dir):
    assert runsync("people")[0] == 3  # the demo's bad rows
    keep_rows(export_file(export_dir, "Leden"), 1)
    code, out = runsync("people")
    assert code == 3
    assert ("rondo-club-sync held removals: The export lists 1 of 60 active members. 59 members would be marked "
            "former. Nothing was removed.") in out
    assert active_members() == 60
    code, out = runsync("people", "--allow-removals")
    assert code == 0
    assert active_members() == 1
    code, out = runsync("people")
    assert code == 0 and "held" not in out


def test_runsync_prints_the_reason_of_a_failed_non_critical_step(export_dir, settings):
    settings.LAPOSTA_API_KEY = KEY
    settings.LAPOSTA_BASE_URL = "ftp://127.0.0.1/v2"
    settings.LAPOSTA_MEMBERS_LIST_ID = MEMBERS_LIST
    clear_secret_cache()
    code, out = runsync("people")
    assert code == 3
    assert "laposta-submit failed: " in out and "base URL is not usable" in out
    clear_secret_cache()


def test_a_header_only_export_through_runsync_exits_1_naming_the_file(export_dir):
    runsync("people")
    path = export_file(export_dir, "Leden")
    keep_rows(path, 0)
    code, out = runsync("people")
    assert code == 1
    assert f"{path.name}: the export has a header row but no member rows" in out
    assert active_members() == 60


# --- the run page's approve button ---------------------------------------------------------


@pytest.mark.usefixtures("q_sync")
def test_the_wrong_filter_approved_on_the_run_page_retires_and_deletes_once(export_dir, laposta):
    run_pipeline("people")
    on_list = len(laposta.lists[MEMBERS_LIST])
    keep_rows(export_file(export_dir, "Leden"), 1, with_email=True)
    held = run_pipeline("people")
    assert laposta.sent("DELETE") == []
    user = make_user("secretaris", "view_run", "view_runerror", "trigger_run")
    client = CsrfClient(user)
    page = client.get(reverse("runs:detail", args=[held.pk])).content.decode()
    assert "59 members marked former" in page and "Approve removals and run again" in page

    response = client.post(reverse("runs:approve-removals", args=[held.pk]))
    assert texts(response)[0].startswith("Removals approved: people queued")
    approved = Run.objects.filter(pipeline="people").order_by("-id").first()
    assert approved.pk != held.pk and approved.allow_removals and approved.triggered_by == user
    assert active_members() == 1
    assert len(laposta.lists[MEMBERS_LIST]) == 1 and len(laposta.sent("DELETE")) >= on_list - 1
    held.refresh_from_db()
    assert held.removals_approved_by == user
    # Once: a second click does not queue another run.
    client.post(reverse("runs:approve-removals", args=[held.pk]))
    assert Run.objects.filter(pipeline="people").count() == 3
