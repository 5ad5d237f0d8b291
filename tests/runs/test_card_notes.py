"""The overview's card-note hook (runs.pipeline.add_card_note): an app's line on a pipeline's card."""

import logging

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from runs import pipeline as registry
from runs.permissions import ensure_volunteers_group
from runs.pipeline import CardNote, add_card_note

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("volunteer", password="pw-123-secret", is_staff=True)
    user.groups.add(ensure_volunteers_group())  # the dashboard's view permissions
    client.force_login(user)
    return client


@pytest.fixture
def notes(monkeypatch):
    """The sample pipeline's notes, emptied for the test and put back afterwards."""
    monkeypatch.setitem(registry._card_notes, "sample", [])
    return registry._card_notes["sample"]


def test_a_registered_note_shows_on_its_pipelines_card_with_its_link(staff_client, notes):
    def waiting(user):
        return CardNote(text=f"3 <things> for {user.get_username()}", url="/somewhere/")

    add_card_note("sample", waiting)
    add_card_note("sample", waiting)  # registering twice shows it once
    html = staff_client.get(reverse("runs:overview")).content.decode()
    assert html.count("3 &lt;things&gt; for volunteer") == 1
    assert '<a href="/somewhere/">3 &lt;things&gt; for volunteer</a>' in html


def test_a_note_with_nothing_to_say_shows_nothing(staff_client, notes):
    add_card_note("sample", lambda user: None)
    html = staff_client.get(reverse("runs:overview")).content.decode()
    assert 'class="card-note"' not in html


def test_a_failing_note_is_logged_and_the_overview_still_renders(staff_client, notes, caplog):
    def broken(user):
        raise RuntimeError("note exploded")

    add_card_note("sample", broken)
    add_card_note("sample", lambda user: CardNote(text="still here"))
    with caplog.at_level(logging.ERROR, logger="runs.pipeline"):
        response = staff_client.get(reverse("runs:overview"))
    assert response.status_code == 200
    assert "still here" in response.content.decode()
    assert any("card note" in r.getMessage() and r.exc_info for r in caplog.records)
