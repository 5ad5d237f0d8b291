"""Corrections of parents (email, phone): every state and transition through real `people` runs on a demo
export where one parent is on two children's rows, plus the admin, the worklist, its CSV, the overview card
and Laposta's parents list getting our value."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from pipelines import corrections
from pipelines.demodata import write_demo
from pipelines.models import Correction, CorrectionState, Member, Parent
from runs.models import RunError, RunStatus, StepStatus
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file
from tests.pipelines.laposta_fake import PARENTS_LIST, fake  # noqa: F401 (the fixture)
from tests.pipelines.test_corrections import set_cell, staff

pytestmark = pytest.mark.django_db(transaction=True)

OLD, OURS, THIRD = "ouder.oud@example.org", "ouder.nieuw@example.org", "ouder.derde@example.org"
PHONE, OUR_PHONE = "06-11111111", "06-22222222"


def step(run):
    return run.steps.get(name="reverse-sync")


def children_codes(export_dir):
    """The first two members (by relatiecode) with a first parent in the export."""
    path = export_file(export_dir, "Leden")
    rows = list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig")), delimiter=";"))
    return sorted(row["Rel. code"] for row in rows if row["E-mailadres ouder 1"])[:2]


def set_parent(export_dir, codes, *, email=None, phone=None, name=None):
    """Change parent 1 on the rows of the children `codes`."""
    for code in codes:
        if email is not None:
            set_cell(export_dir, code, "E-mailadres ouder 1", email)
        if phone is not None:
            set_cell(export_dir, code, "Telefoon ouder 1", phone)
        if name is not None:
            set_cell(export_dir, code, "Naam ouder 1", name)


@pytest.fixture
def export_dir(tmp_path, settings):
    """The 9-member demo export of test_corrections (a clean run is `success`)."""
    out = tmp_path / "export"
    write_demo(out, members=9, seed=7, photos=0)
    settings.SPORTLINK_EXPORT_DIR = str(out)
    settings.LAPOSTA_API_KEY = ""
    settings.FREESCOUT_API_KEY = ""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return out


@pytest.fixture
def kids(export_dir):
    return children_codes(export_dir)


@pytest.fixture
def parent(export_dir, kids):
    """Parent OLD (phone PHONE) on the rows of two children, imported."""
    set_parent(export_dir, kids, email=OLD, phone=PHONE, name="Ouder Oud")
    assert run_pipeline("people").status == RunStatus.SUCCESS
    found = Parent.objects.get(email=OLD)
    assert (found.sportlink_email, found.sportlink_phone, found.phone) == (OLD, PHONE, PHONE)
    assert sorted(found.children.values_list("knvb_id", flat=True)) == kids
    return found


@pytest.fixture
def pending(parent):
    """OURS corrected with a queryset update() (no admin), detected by one run."""
    Parent.objects.filter(pk=parent.pk).update(email=OURS)
    run = run_pipeline("people")
    assert (step(run).created, step(run).updated, step(run).skipped, step(run).failed) == (1, 0, 0, 0)
    return Correction.objects.get(parent=parent)


def parents_now():
    return Parent.objects.filter(is_former=False)


# --- states and transitions ----------------------------------------------------


def test_an_update_becomes_a_pending_parent_correction_and_the_import_keeps_the_row(export_dir, kids, parent,
                                                                                    pending):
    assert (pending.state, pending.member, pending.field) == (CorrectionState.PENDING, None, "email")
    assert (pending.sportlink_value, pending.original_value, pending.our_value) == (OLD, OLD, OURS)
    count = Parent.objects.count()
    # The children's rows change (the parent's name): the import rewrites the parent, keeps our email.
    set_parent(export_dir, kids, name="Ouder Anders")
    run = run_pipeline("people")
    parent.refresh_from_db()
    assert (parent.email, parent.sportlink_email, parent.name, parent.is_former) == (OURS, OLD, "Ouder Anders", False)
    assert Parent.objects.count() == count and not Parent.objects.filter(email=OLD).exists()
    assert sorted(parent.children.values_list("knvb_id", flat=True)) == kids
    assert (step(run).created, step(run).skipped, step(run).failed) == (0, 1, 0)
    assert run.status == RunStatus.SUCCESS
    assert Correction.objects.get().state == CorrectionState.PENDING


def test_a_parents_phone_update_is_pending_too(parent):
    Parent.objects.filter(pk=parent.pk).update(phone=OUR_PHONE)
    run = run_pipeline("people")
    correction = Correction.objects.get(parent=parent)
    assert (correction.field, correction.sportlink_value, correction.our_value) == ("phone", PHONE, OUR_PHONE)
    assert step(run).created == 1
    parent.refresh_from_db()
    assert (parent.phone, parent.sportlink_phone) == (OUR_PHONE, PHONE)


def test_values_written_by_the_import_never_become_parent_corrections(export_dir, kids, parent):
    set_parent(export_dir, kids, phone=OUR_PHONE)
    run = run_pipeline("people")
    parent.refresh_from_db()
    assert (parent.phone, parent.sportlink_phone) == (OUR_PHONE, OUR_PHONE)
    # Sportlink changing an uncorrected parent's email: as before, that is another parent.
    set_parent(export_dir, kids, email=THIRD)
    run = run_pipeline("people")
    parent.refresh_from_db()
    assert parent.is_former and Parent.objects.get(email=THIRD).sportlink_email == THIRD
    assert not Correction.objects.exists()
    assert (step(run).created, step(run).failed) == (0, 0) and run.status == RunStatus.SUCCESS


def test_the_childrens_rows_carrying_our_email_confirm_it_on_the_same_parent(export_dir, kids, parent, pending):
    count = Parent.objects.count()
    # One child's row is entered, the other not yet: Sportlink still shows the old email there.
    set_parent(export_dir, kids[:1], email=OURS)
    run = run_pipeline("people")
    parent.refresh_from_db()
    pending.refresh_from_db()
    assert pending.state == CorrectionState.PENDING and step(run).skipped == 1
    assert (parent.email, parent.sportlink_email, Parent.objects.count()) == (OURS, OLD, count)
    assert sorted(parent.children.values_list("knvb_id", flat=True)) == kids
    # Both rows entered: confirmed, on the same row.
    set_parent(export_dir, kids[1:], email=OURS)
    run = run_pipeline("people")
    pending.refresh_from_db()
    parent.refresh_from_db()
    assert pending.state == CorrectionState.CONFIRMED and step(run).updated == 1
    assert (parent.email, parent.sportlink_email, parent.is_former) == (OURS, OURS, False)
    assert Parent.objects.count() == count and run.status == RunStatus.SUCCESS
    assert sorted(parent.children.values_list("knvb_id", flat=True)) == kids
    again = run_pipeline("people")
    assert (step(again).created, step(again).updated, Correction.objects.count()) == (0, 0, 1)


def test_a_third_email_on_the_childrens_rows_is_a_conflict_on_the_same_parent(export_dir, kids, parent, pending):
    count = Parent.objects.count()
    set_parent(export_dir, kids, email=THIRD)
    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL
    assert step(run).status == StepStatus.PARTIAL and step(run).failed == 1
    error = RunError.objects.get(run=run, step_name="reverse-sync")
    assert (error.identifier, error.identifier_kind) == (THIRD, "email")
    assert "parent's email" in error.message and OURS in error.message and THIRD in error.message
    pending.refresh_from_db()
    parent.refresh_from_db()
    assert (pending.state, pending.sportlink_value, pending.our_value) == (CorrectionState.CONFLICT, THIRD, OURS)
    assert (parent.email, parent.sportlink_email, parent.is_former, Parent.objects.count()) == (
        OURS, THIRD, False, count)
    again = run_pipeline("people")
    assert again.status == RunStatus.PARTIAL
    assert RunError.objects.filter(run=again, step_name="reverse-sync").count() == 1


def test_a_phone_corrected_and_changed_in_sportlink_between_two_runs_is_a_conflict_at_once(export_dir, kids, parent):
    Parent.objects.filter(pk=parent.pk).update(phone=OUR_PHONE)
    set_parent(export_dir, kids, phone="06-33333333")
    run = run_pipeline("people")
    correction = Correction.objects.get()
    assert (correction.state, correction.original_value, correction.sportlink_value, correction.our_value) == (
        CorrectionState.CONFLICT, PHONE, "06-33333333", OUR_PHONE)
    assert run.status == RunStatus.PARTIAL and (step(run).created, step(run).failed) == (0, 1)


def test_keep_ours_then_the_export_confirms_it(export_dir, kids, parent, pending):
    set_parent(export_dir, kids, email=THIRD)
    run_pipeline("people")
    user, client = staff("view_correction", "change_correction")
    client.post(reverse("pipelines:corrections-decide", args=[pending.pk]), {"decision": "keep"})
    pending.refresh_from_db()
    assert (pending.state, pending.sportlink_value, pending.resolved_by) == (CorrectionState.PENDING, THIRD, user)
    run = run_pipeline("people")
    assert run.status == RunStatus.SUCCESS and step(run).skipped == 1
    set_parent(export_dir, kids, email=OURS)
    run = run_pipeline("people")
    pending.refresh_from_db()
    parent.refresh_from_db()
    assert pending.state == CorrectionState.CONFIRMED and (parent.email, parent.sportlink_email) == (OURS, OURS)


def test_take_sportlinks_value_puts_it_in_the_parent(export_dir, kids, parent, pending):
    set_parent(export_dir, kids, email=THIRD)
    run_pipeline("people")
    user, client = staff("view_correction", "change_correction")
    client.post(reverse("pipelines:corrections-decide", args=[pending.pk]), {"decision": "take"})
    pending.refresh_from_db()
    parent.refresh_from_db()
    assert (pending.state, pending.resolved_by, parent.email) == (CorrectionState.DISCARDED, user, THIRD)
    run = run_pipeline("people")
    assert run.status == RunStatus.SUCCESS and not Correction.objects.filter(state__in=["pending", "conflict"])


def test_setting_a_parents_value_back_withdraws_the_correction(parent, pending):
    Parent.objects.filter(pk=parent.pk).update(email=OLD)
    run_pipeline("people")
    pending.refresh_from_db()
    assert pending.state == CorrectionState.WITHDRAWN


def test_a_parent_corrected_again_outside_the_admin_updates_our_value(parent, pending):
    Parent.objects.filter(pk=parent.pk).update(email=THIRD)
    run = run_pipeline("people")
    pending.refresh_from_db()
    assert (pending.state, pending.our_value, step(run).skipped) == (CorrectionState.PENDING, THIRD, 1)


def test_an_admin_parent_correction_the_import_overwrote_during_the_run_is_put_back(parent):
    with time_machine.travel(timezone.now() + timedelta(minutes=1), tick=False):
        parent.phone = OUR_PHONE
        parent.save(update_fields=["phone"])
        corrections.record_edit(parent, ["phone"], user=None)
    Parent.objects.filter(pk=parent.pk).update(phone=PHONE)  # what the import wrote
    run = run_pipeline("people")
    parent.refresh_from_db()
    assert (parent.phone, Correction.objects.get().state) == (OUR_PHONE, CorrectionState.PENDING)
    assert step(run).detail["restored"] == 1


def test_a_parent_who_leaves_the_export_has_open_corrections_closed(export_dir, kids, parent, pending):
    set_parent(export_dir, kids, email="", phone="", name="")
    run = run_pipeline("people")
    parent.refresh_from_db()
    pending.refresh_from_db()
    assert parent.is_former and pending.state == CorrectionState.CLOSED
    assert step(run).detail["closed"] == 1
    assert run.steps.get(name="rondo-club-sync").detail["former_parents"] >= 1
    # Back on the children's rows: no longer former; our email still differs, so it is pending again.
    set_parent(export_dir, kids, email=OLD, phone=PHONE, name="Ouder Oud")
    run = run_pipeline("people")
    parent.refresh_from_db()
    assert not parent.is_former and parent.email == OURS and step(run).created == 1


def test_a_dry_run_lists_parent_corrections_and_changes_nothing(parent):
    Parent.objects.filter(pk=parent.pk).update(email=OURS, phone=OUR_PHONE)
    run = run_pipeline("people", dry_run=True)
    assert step(run).created == 2
    assert f"{OLD} email: new: in Sportlink {OLD!r}, enter {OURS!r}" in step(run).detail["would"]
    assert not Correction.objects.exists()
    parent.refresh_from_db()
    assert (parent.email, parent.sportlink_email, parent.phone) == (OURS, OLD, OUR_PHONE)


def test_a_dry_run_sees_a_parents_confirmation_and_leaving(export_dir, kids, parent, pending):
    set_parent(export_dir, kids, email=OURS)
    run = run_pipeline("people", dry_run=True)
    assert step(run).updated == 1
    pending.refresh_from_db()
    assert pending.state == CorrectionState.PENDING
    set_parent(export_dir, kids, email="", phone="", name="")
    run = run_pipeline("people", dry_run=True)
    assert step(run).detail["closed"] == 1
    pending.refresh_from_db()
    parent.refresh_from_db()
    assert pending.state == CorrectionState.PENDING and not parent.is_former


def test_a_correction_has_a_member_or_a_parent_never_both_or_neither(parent, pending):
    member = Member.objects.first()
    for owner in ({"member": member, "parent": parent}, {}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Correction.objects.create(**owner, field="phone", our_value="1")


# --- Laposta ---------------------------------------------------------------------


def test_laposta_parents_list_gets_our_email_while_pending(export_dir, fake, parent):  # noqa: F811
    assert OLD in fake.lists[PARENTS_LIST]
    Parent.objects.filter(pk=parent.pk).update(email=OURS, phone=OUR_PHONE)
    run = run_pipeline("people")
    assert step(run).created == 2
    assert OURS in fake.lists[PARENTS_LIST] and OLD not in fake.lists[PARENTS_LIST]
    assert fake.lists[PARENTS_LIST][OURS]["custom_fields"]["telefoon"] == OUR_PHONE
    before = len(fake.requests)
    run_pipeline("people")
    assert len(fake.requests) == before and OURS in fake.lists[PARENTS_LIST]


# --- the admin -------------------------------------------------------------------


def test_the_parent_admin_edits_email_and_phone_only_and_records_who(parent):
    user, client = staff("view_parent", "change_parent", "view_correction")
    url = reverse("admin:pipelines_parent_change", args=[parent.pk])
    page = client.get(url).content.decode()
    assert 'name="email"' in page and 'name="phone"' in page and 'name="name"' not in page
    assert 'name="sportlink_email"' not in page
    response = client.post(url, {"email": " Ouder.Nieuw@Example.org ", "phone": OUR_PHONE, "name": "Hacked",
                                 "sportlink_email": "x@example.org"})
    assert response.status_code == 302, response.content.decode()[:3000]
    parent.refresh_from_db()
    assert (parent.email, parent.phone, parent.name, parent.sportlink_email) == (OURS, OUR_PHONE, "Ouder Oud", OLD)
    rows = {c.field: c for c in Correction.objects.all()}
    assert set(rows) == {"email", "phone"} and rows["email"].detected_by == user
    assert rows["email"].parent == parent and rows["email"].sportlink_value == OLD
    page = client.get(url).content.decode()
    assert f"in Sportlink “{OLD}” — enter “{OURS}”" in page
    run = run_pipeline("people")
    assert (step(run).created, step(run).skipped) == (0, 2)
    parent.refresh_from_db()
    assert parent.email == OURS


def test_the_parent_admin_refuses_a_bad_or_taken_email(parent):
    other = Parent.objects.exclude(pk=parent.pk).first()
    _user, client = staff("view_parent", "change_parent")
    url = reverse("admin:pipelines_parent_change", args=[parent.pk])
    response = client.post(url, {"email": "not an address", "phone": "call me"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "is not an email address" in page and "Use digits, spaces and + - ( ) only" in page
    page = client.post(url, {"email": other.email, "phone": PHONE}).content.decode()
    assert "is already another parent&#x27;s email address" in page
    page = client.post(url, {"email": "", "phone": PHONE}).content.decode()
    assert "This field is required" in page or "A parent needs an email address" in page
    parent.refresh_from_db()
    assert parent.email == OLD and not Correction.objects.exists()


def test_without_change_parent_the_parent_admin_stays_read_only(parent):
    _user, client = staff("view_parent", "change_member")
    url = reverse("admin:pipelines_parent_change", args=[parent.pk])
    assert 'name="email"' not in client.get(url).content.decode()
    assert client.post(url, {"email": OURS, "phone": PHONE}).status_code == 403
    parent.refresh_from_db()
    assert parent.email == OLD


def test_admin_actions_decide_parent_conflicts(export_dir, kids, parent, pending):
    set_parent(export_dir, kids, email=THIRD)
    run_pipeline("people")
    _user, client = staff("view_correction", "change_correction")
    url = reverse("admin:pipelines_correction_changelist")
    assert f"parent Ouder Oud &lt;{OURS}&gt;" in client.get(url).content.decode()
    client.post(url, {"action": "take_sportlink", "_selected_action": [pending.pk]})
    pending.refresh_from_db()
    parent.refresh_from_db()
    assert (pending.state, parent.email) == (CorrectionState.DISCARDED, THIRD)


# --- the worklist, its CSV, the overview --------------------------------------------


def test_the_worklist_names_the_childrens_relatiecodes(kids, parent, pending):
    _user, client = staff("view_correction")
    page = client.get(reverse("pipelines:corrections")).content.decode()
    assert page.count(f'data-parent="{OLD}"') == 1
    assert f"in Sportlink: <q>{OLD}</q> — enter: <q>{OURS}</q>" in page
    assert "Enter on the row of each child in Sportlink" in page
    for code in kids:
        assert f"<code>{code}</code>" in page
    assert f'href="{reverse("admin:pipelines_parent_change", args=[parent.pk])}"' in page


def test_the_worklist_costs_the_same_queries_with_many_parents(parent, pending, django_assert_num_queries):
    Member.objects.filter(pk=Member.objects.filter(is_former=False).first().pk).update(city="Elders")
    run_pipeline("people")
    _user, client = staff("view_correction")
    # session, user, user and group permissions, the corrections, the parents' children
    with django_assert_num_queries(6):
        client.get(reverse("pipelines:corrections"))
    assert parents_now().exclude(pk=parent.pk).count() >= 3
    for other in parents_now().exclude(pk=parent.pk):
        Parent.objects.filter(pk=other.pk).update(phone=OUR_PHONE)
    run_pipeline("people")
    assert Correction.objects.filter(state="pending", parent__isnull=False).count() >= 4
    with django_assert_num_queries(6):
        page = client.get(reverse("pipelines:corrections")).content.decode()
    assert page.count('class="correction-member correction-parent"') == parents_now().count()
    # Members first, then parents.
    assert page.index('data-member="') < page.index('data-parent="')


def test_the_csv_gives_a_parents_line_the_childrens_relatiecodes(kids, parent, pending):
    Parent.objects.filter(pk=parent.pk).update(phone="=1+1")
    run_pipeline("people")
    _user, client = staff("view_correction")
    response = client.get(reverse("pipelines:corrections-export"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_field = {row[2]: row for row in rows[1:]}
    assert by_field["email"][:6] == [" ".join(kids), "parent Ouder Oud (on the children's rows)", "email", OLD, OURS,
                                     "pending"]
    assert by_field["phone"][4] == "'=1+1"


def test_the_people_card_counts_parent_corrections(parent):
    Parent.objects.filter(pk=parent.pk).update(email=OURS, phone=OUR_PHONE)
    run_pipeline("people")
    _user, client = staff("view_correction")
    assert "2 corrections to enter in Sportlink" in client.get(reverse("runs:overview")).content.decode()


def test_laposta_gets_our_email_during_a_conflict_too(export_dir, kids, fake, parent, pending):  # noqa: F811
    set_parent(export_dir, kids, email=THIRD)
    run = run_pipeline("people")
    assert step(run).failed == 1
    assert OURS in fake.lists[PARENTS_LIST] and THIRD not in fake.lists[PARENTS_LIST]
