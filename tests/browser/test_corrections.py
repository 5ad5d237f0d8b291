"""A volunteer corrects a member's email in the admin and finds it on the corrections worklist."""

import re

import pytest
from django.contrib.auth.models import Permission, User

from pipelines.models import Correction, CorrectionState, Member, Parent
from pipelines.views import member_url
from runs.runner import run_pipeline
from tests.browser.test_dashboard import PASSWORD, browser_page  # noqa: F401 (the fixture)
from tests.pipelines.conftest import export_dir  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW = "nieuw.adres@example.org"


def test_an_email_edited_in_the_admin_is_on_the_worklist(live_server, browser_page, export_dir):  # noqa: F811
    page = browser_page
    run_pipeline("people")
    member = Member.objects.filter(is_former=False).exclude(email="").order_by("knvb_id").first()
    old = member.email
    user = User.objects.create_user("volunteer", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="pipelines", codename__in=["view_member", "change_member", "view_correction"]))
    user.user_permissions.add(*Permission.objects.filter(  # the dashboard and record pages
        content_type__app_label="runs", codename__in=["view_run", "view_runerror"]))

    page.goto(f"{live_server.url}/admin/pipelines/member/{member.pk}/change/")
    page.fill("#id_username", "volunteer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(rf".*/admin/pipelines/member/{member.pk}/change/$"))
    assert page.locator("#id_first_name").count() == 0  # not editable
    page.fill("#id_email", NEW)
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r".*/admin/pipelines/member/$"))

    page.goto(f"{live_server.url}/")
    card = page.locator('section[data-pipeline="people"]')
    assert "1 correction to enter in Sportlink" in card.inner_text()
    card.locator("text=1 correction to enter in Sportlink").click()
    page.wait_for_url(re.compile(r".*/corrections/$"))
    section = page.locator(f'section[data-member="{member.knvb_id}"]')
    item = section.locator('li[data-field="email"]')
    assert f"in Sportlink: {old} — enter: {NEW}" in item.inner_text()
    assert "by volunteer" in item.inner_text()
    link = section.locator("h2 a")
    assert link.get_attribute("href") == member_url(member)
    link.click()
    page.wait_for_url(f"{live_server.url}{member_url(member)}")
    page.goto(f"{live_server.url}/admin/pipelines/member/{member.pk}/change/")
    assert page.locator("#id_email").input_value() == NEW

    correction = Correction.objects.get()
    assert (correction.state, correction.detected_by, correction.our_value) == (CorrectionState.PENDING, user, NEW)
    assert page.problems == []


def test_a_parents_email_is_on_the_worklist_with_the_children(live_server, browser_page, export_dir):  # noqa: F811
    page = browser_page
    run_pipeline("people")
    parent = Parent.objects.order_by("sportlink_email").first()
    old = parent.email
    codes = list(parent.children.order_by("knvb_id").values_list("knvb_id", flat=True))
    assert codes
    user = User.objects.create_user("volunteer", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="pipelines", codename__in=["view_parent", "change_parent", "view_correction"]))
    user.user_permissions.add(*Permission.objects.filter(  # the dashboard and record pages
        content_type__app_label="runs", codename__in=["view_run", "view_runerror"]))

    page.goto(f"{live_server.url}/admin/pipelines/parent/{parent.pk}/change/")
    page.fill("#id_username", "volunteer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(rf".*/admin/pipelines/parent/{parent.pk}/change/$"))
    assert page.locator("#id_name").count() == 0  # not editable
    page.fill("#id_email", NEW)
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r".*/admin/pipelines/parent/$"))

    page.goto(f"{live_server.url}/corrections/")
    section = page.locator(f'section[data-parent="{old}"]')
    assert f"in Sportlink: {old} — enter: {NEW}" in section.locator('li[data-field="email"]').inner_text()
    children = section.locator("p.children").inner_text()
    assert all(code in children for code in codes)
    correction = Correction.objects.get()
    assert (correction.parent, correction.member, correction.detected_by) == (parent, None, user)
    assert page.problems == []
