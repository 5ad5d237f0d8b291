"""Corrections (pipelines.corrections): every state and transition, through real `people` runs on a
demo export, plus the admin, the worklist, its CSV, the overview card and Laposta getting our value."""

import csv
import io
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from pipelines import corrections
from pipelines.demodata import write_demo
from pipelines.models import Correction, CorrectionState, Member
from pipelines.views import member_url
from runs.models import RunError, RunStatus, StepStatus
from runs.redact import clear_secret_cache
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file
from tests.pipelines.laposta_fake import MEMBERS_LIST, fake  # noqa: F401 (the fixture)
from tests.pipelines.test_freescout import KEY as FREESCOUT_KEY
from tests.pipelines.test_freescout import FakeFreeScout

pytestmark = pytest.mark.django_db(transaction=True)

OLD, OURS, THIRD = "oud.adres@example.org", "nieuw.adres@example.org", "derde.adres@example.org"


def set_cell(export_dir, code, column, value):
    """Change one cell of member `code` in the Sportlink members export."""
    path = export_file(export_dir, "Leden")
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig")), delimiter=";"))
    header = rows[0]
    for row in rows[1:]:
        if row and row[header.index("Rel. code")] == code:
            row[header.index(column)] = value
            break
    else:
        raise AssertionError(f"{code} not in the export")
    out = io.StringIO()
    csv.writer(out, delimiter=";", quoting=csv.QUOTE_ALL).writerows(rows)
    path.write_bytes(out.getvalue().encode("utf-8-sig"))


def drop_row(export_dir, code):
    path = export_file(export_dir, "Leden")
    lines = path.read_bytes().decode("utf-8-sig").splitlines(keepends=True)
    kept = [line for line in lines if f'"{code}"' not in line]
    assert len(kept) == len(lines) - 1
    path.write_bytes("".join(kept).encode("utf-8-sig"))


def step(run):
    return run.steps.get(name="reverse-sync")


@pytest.fixture
def export_dir(tmp_path, settings):
    """A 9-member demo export: too small for the demo's bad rows, so a clean run is `success`."""
    out = tmp_path / "export"
    write_demo(out, members=9, seed=7, photos=0)
    settings.SPORTLINK_EXPORT_DIR = str(out)
    settings.LAPOSTA_API_KEY = ""
    settings.FREESCOUT_API_KEY = ""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return out


@pytest.fixture
def member(export_dir):
    """A current member whose export email is OLD, imported once."""
    run_pipeline("people")
    code = Member.objects.exclude(email="").filter(is_former=False).order_by("knvb_id").values_list(
        "knvb_id", flat=True).first()
    set_cell(export_dir, code, "E-mailadres", OLD)
    run_pipeline("people")
    found = Member.objects.get(knvb_id=code)
    assert found.email == found.sportlink_email == OLD
    return found


@pytest.fixture
def pending(member):
    """OURS corrected with a queryset update() (no admin), detected by one run."""
    Member.objects.filter(pk=member.pk).update(email=OURS)
    run = run_pipeline("people")
    assert (step(run).created, step(run).updated, step(run).skipped, step(run).failed) == (1, 0, 0, 0)
    return Correction.objects.get(member=member)


def staff(*codenames, username="volunteer"):
    user = User.objects.create_user(username, password="pw-for-tests-123", is_staff=True)
    # Every volunteer may see the dashboard (runs.view_run); the rest is what the test gives.
    user.user_permissions.add(*Permission.objects.filter(codename__in=(*codenames, "view_run")))
    client = Client()
    client.force_login(user)
    return user, client


# --- states and transitions ----------------------------------------------------


def test_an_update_becomes_a_pending_correction_and_the_import_keeps_our_value(export_dir, member, pending):
    assert pending.state == CorrectionState.PENDING
    assert (pending.field, pending.sportlink_value, pending.original_value, pending.our_value) == (
        "email", OLD, OLD, OURS)
    assert pending.detected_by is None
    # Another change in the member's row makes the import rewrite it: our email stays.
    set_cell(export_dir, member.knvb_id, "Roepnaam", "Anders")
    run = run_pipeline("people")
    assert run.steps.get(name="rondo-club-sync").updated == 1
    member.refresh_from_db()
    assert (member.email, member.sportlink_email, member.first_name) == (OURS, OLD, "Anders")
    assert (step(run).created, step(run).skipped, step(run).failed) == (0, 1, 0)
    assert run.status == RunStatus.SUCCESS
    assert Correction.objects.get().state == CorrectionState.PENDING


def test_values_written_by_the_import_never_become_corrections(export_dir, member):
    set_cell(export_dir, member.knvb_id, "E-mailadres", THIRD)
    set_cell(export_dir, member.knvb_id, "Toevoeging", "bis")
    run = run_pipeline("people")
    member.refresh_from_db()
    assert (member.email, member.house_number_addition) == (THIRD, "bis")
    assert not Correction.objects.exists()
    assert (step(run).created, step(run).updated, step(run).skipped, step(run).failed) == (0, 0, 0, 0)
    assert run_pipeline("people").status == RunStatus.SUCCESS and not Correction.objects.exists()


def test_the_export_carrying_our_value_confirms_it(export_dir, member, pending):
    set_cell(export_dir, member.knvb_id, "E-mailadres", OURS)
    run = run_pipeline("people")
    assert step(run).updated == 1 and run.status == RunStatus.SUCCESS
    pending.refresh_from_db()
    assert pending.state == CorrectionState.CONFIRMED and pending.resolved_at is not None
    member.refresh_from_db()
    assert member.email == member.sportlink_email == OURS
    assert (step(run_pipeline("people")).created, Correction.objects.count()) == (0, 1)


def test_a_third_value_in_the_export_is_a_conflict_with_one_error_and_a_partial_run(export_dir, member, pending):
    set_cell(export_dir, member.knvb_id, "E-mailadres", THIRD)
    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL
    assert step(run).status == StepStatus.PARTIAL and step(run).failed == 1
    error = RunError.objects.get(run=run, step_name="reverse-sync")
    assert (error.identifier, error.identifier_kind) == (member.knvb_id, "knvb_id")
    assert "email" in error.message and OURS in error.message and THIRD in error.message and OLD in error.message
    pending.refresh_from_db()
    assert (pending.state, pending.sportlink_value, pending.our_value) == (CorrectionState.CONFLICT, THIRD, OURS)
    member.refresh_from_db()
    assert (member.email, member.sportlink_email) == (OURS, THIRD)
    # Undecided, it stays a conflict: the next run reports it again.
    again = run_pipeline("people")
    assert again.status == RunStatus.PARTIAL
    assert RunError.objects.filter(run=again, step_name="reverse-sync").count() == 1


def test_a_correction_and_a_sportlink_change_between_two_runs_is_a_conflict_at_once(export_dir, member):
    Member.objects.filter(pk=member.pk).update(email=OURS)
    set_cell(export_dir, member.knvb_id, "E-mailadres", THIRD)
    run = run_pipeline("people")
    correction = Correction.objects.get()
    assert (correction.state, correction.original_value, correction.sportlink_value, correction.our_value) == (
        CorrectionState.CONFLICT, OLD, THIRD, OURS)
    assert run.status == RunStatus.PARTIAL and (step(run).created, step(run).failed) == (0, 1)


def test_keep_ours_on_the_worklist_makes_a_conflict_pending_against_the_new_value(export_dir, member, pending):
    set_cell(export_dir, member.knvb_id, "E-mailadres", THIRD)
    run_pipeline("people")
    user, client = staff("view_correction", "change_correction")
    page = client.get(reverse("pipelines:corrections")).content.decode()
    assert 'data-state="conflict"' in page and "Keep ours" in page and "Take Sportlink's" in page
    assert f"Sportlink changed it from <q>{OLD}</q>" in page
    response = client.post(reverse("pipelines:corrections-decide", args=[pending.pk]), {"decision": "keep"})
    assert response.status_code == 302
    pending.refresh_from_db()
    assert (pending.state, pending.sportlink_value, pending.resolved_by) == (CorrectionState.PENDING, THIRD, user)
    run = run_pipeline("people")
    assert run.status == RunStatus.SUCCESS and step(run).skipped == 1
    page = client.get(reverse("pipelines:corrections")).content.decode()
    assert f"in Sportlink: <q>{THIRD}</q> — enter: <q>{OURS}</q>" in page


def test_take_sportlinks_value_on_the_worklist_puts_it_in_the_registry(export_dir, member, pending):
    set_cell(export_dir, member.knvb_id, "E-mailadres", THIRD)
    run_pipeline("people")
    user, client = staff("view_correction", "change_correction")
    client.post(reverse("pipelines:corrections-decide", args=[pending.pk]), {"decision": "take"})
    pending.refresh_from_db()
    member.refresh_from_db()
    assert (pending.state, pending.resolved_by, member.email) == (CorrectionState.DISCARDED, user, THIRD)
    run = run_pipeline("people")
    assert run.status == RunStatus.SUCCESS and not Correction.objects.filter(state__in=["pending", "conflict"])


def test_setting_our_value_back_withdraws_the_correction(member, pending):
    Member.objects.filter(pk=member.pk).update(email=OLD)
    run_pipeline("people")
    pending.refresh_from_db()
    assert pending.state == CorrectionState.WITHDRAWN


def test_corrected_again_outside_the_admin_updates_our_value(member, pending):
    Member.objects.filter(pk=member.pk).update(email=THIRD)
    run = run_pipeline("people")
    pending.refresh_from_db()
    assert (pending.state, pending.our_value, step(run).skipped) == (CorrectionState.PENDING, THIRD, 1)


def test_an_admin_correction_the_import_overwrote_during_the_run_is_put_back(member):
    # The admin saves while a run imports: after the run read the corrections
    # (its start), before the import rewrote the member with Sportlink's value.
    with time_machine.travel(timezone.now() + timedelta(minutes=1), tick=False):
        member.email = OURS
        member.save(update_fields=["email"])
        corrections.record_edit(member, ["email"], user=None)
    Member.objects.filter(pk=member.pk).update(email=OLD)  # what the import wrote
    run = run_pipeline("people")
    member.refresh_from_db()
    correction = Correction.objects.get()
    assert (member.email, correction.state) == (OURS, CorrectionState.PENDING)
    assert step(run).detail["restored"] == 1 and step(run).skipped == 1


def test_a_retired_member_has_their_open_corrections_closed(export_dir, member, pending):
    drop_row(export_dir, member.knvb_id)
    run = run_pipeline("people")
    member.refresh_from_db()
    pending.refresh_from_db()
    assert member.is_former and pending.state == CorrectionState.CLOSED
    assert step(run).detail["closed"] == 1


def test_a_dry_run_lists_what_it_would_detect_and_changes_nothing(member):
    Member.objects.filter(pk=member.pk).update(email=OURS, city="Elders")
    run = run_pipeline("people", dry_run=True)
    assert step(run).created == 2
    assert f"{member.knvb_id} email: new: in Sportlink {OLD!r}, enter {OURS!r}" in step(run).detail["would"]
    assert not Correction.objects.exists()
    member.refresh_from_db()
    assert (member.email, member.sportlink_email) == (OURS, OLD)


def test_a_dry_run_sees_the_confirmation_the_export_would_bring(export_dir, member, pending):
    set_cell(export_dir, member.knvb_id, "E-mailadres", OURS)
    run = run_pipeline("people", dry_run=True)
    assert step(run).updated == 1
    pending.refresh_from_db()
    assert pending.state == CorrectionState.PENDING


# --- destinations ----------------------------------------------------------------


def test_laposta_gets_our_value_while_the_correction_is_pending(export_dir, fake, member):  # noqa: F811
    Member.objects.filter(pk=member.pk).update(email=OURS)
    run = run_pipeline("people")
    sent = {form.get("email") for method, path, form in fake.requests if method == "POST" and path == "/member"}
    assert OURS in sent  # laposta-prepare runs before the import: it took our value from the correction
    assert OURS in fake.lists[MEMBERS_LIST] and OLD not in fake.lists[MEMBERS_LIST]
    assert step(run).created == 1
    # While pending, the next runs keep sending ours (nothing changed: nothing sent).
    before = len(fake.requests)
    run_pipeline("people")
    assert len(fake.requests) == before and OURS in fake.lists[MEMBERS_LIST]


@pytest.fixture
def freescout(httpserver, settings):
    server = FakeFreeScout()
    httpserver.expect_request(re.compile(r"^/api/.*")).respond_with_handler(server)
    settings.FREESCOUT_API_KEY = FREESCOUT_KEY
    settings.FREESCOUT_BASE_URL = httpserver.url_for("")
    clear_secret_cache()
    yield server
    clear_secret_cache()


def test_freescout_gets_our_value_while_the_correction_is_pending(member, pending, freescout):
    Member.objects.filter(pk=member.pk).update(house_number="12", house_number_addition="bis", street="Laan")
    run = run_pipeline("freescout")
    assert run.status == RunStatus.SUCCESS
    member.refresh_from_db()
    customer = freescout.customers[member.freescout_id]
    assert customer["emails"] == [{"value": OURS, "type": "home"}]
    assert customer["address"]["address"] == "Laan 12 bis"


# --- the admin -------------------------------------------------------------------


def test_the_admin_edits_contact_fields_only_and_records_who(member):
    user, client = staff("view_member", "change_member", "view_correction")
    url = reverse("admin:pipelines_member_change", args=[member.pk])
    page = client.get(url).content.decode()
    assert 'name="email"' in page and 'name="house_number_addition"' in page and 'name="first_name"' not in page
    response = client.post(url, {"email": OURS, "phone": member.phone, "mobile": member.mobile, "street": member.street,
                                 "house_number": member.house_number, "house_number_addition": "A",
                                 "postcode": member.postcode.lower(), "city": member.city, "first_name": "Hacked",
                                 **inline_management()})
    assert response.status_code == 302, response.content.decode()[:3000]
    member.refresh_from_db()
    assert (member.email, member.house_number_addition, member.first_name) == (OURS, "A", member.first_name)
    assert member.first_name != "Hacked"
    rows = {c.field: c for c in Correction.objects.all()}
    assert set(rows) == {"email", "house_number_addition"}  # the postcode's case was normalised back: no change
    assert rows["email"].detected_by == user and rows["email"].sportlink_value == OLD
    # The next run finds them open and keeps them.
    run = run_pipeline("people")
    assert (step(run).created, step(run).skipped) == (0, 2)


def test_a_bad_email_in_the_admin_says_what_to_fix_and_saves_nothing(member):
    _user, client = staff("view_member", "change_member")
    url = reverse("admin:pipelines_member_change", args=[member.pk])
    response = client.post(url, {"email": "not an address", "phone": "call me", "mobile": "", "street": "",
                                 "house_number": "", "house_number_addition": "", "postcode": "", "city": "",
                                 **inline_management()})
    page = response.content.decode()
    assert response.status_code == 200
    assert "is not an email address (it contains a space). Write it like name@example.org" in page
    assert "Use digits, spaces and + - ( ) only" in page
    member.refresh_from_db()
    assert member.email == OLD and not Correction.objects.exists()


def test_without_change_member_the_admin_stays_read_only(member):
    _user, client = staff("view_member")
    url = reverse("admin:pipelines_member_change", args=[member.pk])
    assert 'name="email"' not in client.get(url).content.decode()
    assert client.post(url, {"email": OURS, **inline_management()}).status_code == 403
    member.refresh_from_db()
    assert member.email == OLD


def test_admin_actions_decide_conflicts(export_dir, member, pending):
    set_cell(export_dir, member.knvb_id, "E-mailadres", THIRD)
    run_pipeline("people")
    user, client = staff("view_correction", "change_correction")
    url = reverse("admin:pipelines_correction_changelist")
    assert member.knvb_id in client.get(url).content.decode()
    detail = client.get(reverse("admin:pipelines_correction_change", args=[pending.pk])).content.decode()
    assert THIRD in detail and 'name="our_value"' not in detail  # shown, never edited by hand
    client.post(url, {"action": "keep_ours", "_selected_action": [pending.pk]})
    pending.refresh_from_db()
    assert pending.state == CorrectionState.PENDING
    client.post(url, {"action": "take_sportlink", "_selected_action": [pending.pk]})
    pending.refresh_from_db()
    member.refresh_from_db()
    assert (pending.state, member.email) == (CorrectionState.DISCARDED, THIRD)


def test_admin_actions_need_change_correction(member, pending):
    _user, client = staff("view_correction")
    url = reverse("admin:pipelines_correction_changelist")
    client.post(url, {"action": "take_sportlink", "_selected_action": [pending.pk]})
    pending.refresh_from_db()
    member.refresh_from_db()
    assert pending.state == CorrectionState.PENDING and member.email == OURS


def inline_management():
    """The empty inline formsets the member change form posts (they are read-only)."""
    data = {}
    for prefix in ("Member_parents", "team_memberships", "commissie_memberships", "contributions",
                   "discipline_cases"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
                     f"{prefix}-MAX_NUM_FORMS": "1000"})
    return data


# --- the worklist, its CSV, the overview --------------------------------------------


def test_the_worklist_groups_by_member_and_links_to_the_member(member, pending):
    Member.objects.filter(pk=member.pk).update(city="<b>Elders</b>")
    run_pipeline("people")
    _user, client = staff("view_correction")
    page = client.get(reverse("pipelines:corrections")).content.decode()
    assert page.count(f'data-member="{member.knvb_id}"') == 1
    assert f"in Sportlink: <q>{OLD}</q> — enter: <q>{OURS}</q>" in page
    assert "enter: <q>&lt;b&gt;Elders&lt;/b&gt;</q>" in page and "<b>Elders</b>" not in page
    assert f'href="{member_url(member)}"' in page
    assert "Keep ours" not in page  # no conflict, and no change_correction


def test_the_member_link_is_the_record_page_or_else_the_members_admin_page(member):
    try:
        expected = reverse("runs:record", kwargs={"identifier": member.knvb_id})
    except NoReverseMatch:  # the record page is not there (yet)
        expected = reverse("admin:pipelines_member_change", args=[member.pk])
    assert member_url(member) == expected


def test_the_worklist_needs_staff_and_view_correction(member, pending):
    response = Client().get(reverse("pipelines:corrections"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    _user, client = staff("view_member")
    assert client.get(reverse("pipelines:corrections")).status_code == 403
    assert client.get(reverse("pipelines:corrections-export")).status_code == 403


def test_deciding_needs_a_post_with_csrf_and_change_correction(member, pending):
    url = reverse("pipelines:corrections-decide", args=[pending.pk])
    _user, viewer = staff("view_correction")
    assert viewer.post(url, {"decision": "take"}).status_code == 403
    user, _client = staff("view_correction", "change_correction", username="decider")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.get(url).status_code == 405
    assert strict.post(url, {"decision": "take"}).status_code == 403
    pending.refresh_from_db()
    assert pending.state == CorrectionState.PENDING


def test_the_worklist_costs_the_same_queries_for_many_members(member, pending, django_assert_num_queries):
    _user, client = staff("view_correction")
    # session, user, user and group permissions, the corrections with their members
    with django_assert_num_queries(5):
        client.get(reverse("pipelines:corrections"))
    others = Member.objects.exclude(pk=member.pk).exclude(city="Elders").filter(is_former=False)
    assert others.update(city="Elders") >= 5
    run_pipeline("people")
    members = Correction.objects.filter(state="pending").values("member").distinct().count()
    assert members >= 6
    with django_assert_num_queries(5):
        page = client.get(reverse("pipelines:corrections")).content.decode()
    assert page.count('class="correction-member"') == members


def test_the_csv_lists_every_open_correction_formula_safe(member, pending):
    Member.objects.filter(pk=member.pk).update(city="=HYPERLINK(\"http://x\")")
    run_pipeline("people")
    _user, client = staff("view_correction")
    response = client.get(reverse("pipelines:corrections-export"))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["relatiecode", "name", "field", "in_sportlink", "enter", "state", "detected_at", "detected_by"]
    by_field = {row[2]: row for row in rows[1:]}
    assert by_field["email"][:6] == [member.knvb_id, member.full_name, "email", OLD, OURS, "pending"]
    assert by_field["city"][4] == "'=HYPERLINK(\"http://x\")"


def test_the_people_card_shows_how_many_corrections_wait(member):
    _user, client = staff("view_correction")
    assert "to enter in Sportlink" not in client.get(reverse("runs:overview")).content.decode()
    Member.objects.filter(pk=member.pk).update(email=OURS, city="Elders")
    run_pipeline("people")
    page = client.get(reverse("runs:overview")).content.decode()
    assert "2 corrections to enter in Sportlink" in page and reverse("pipelines:corrections") in page
    _other, plain = staff(username="plain")
    assert "to enter in Sportlink" not in plain.get(reverse("runs:overview")).content.decode()
