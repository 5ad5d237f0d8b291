"""The registry admins: searchable, filterable, read-only, escaped."""

import pytest
from django.urls import reverse

from pipelines.models import (
    Commissie,
    CommissieMembership,
    Contribution,
    DisciplineCase,
    LapostaSubscription,
    Member,
    Parent,
    Team,
    TeamMembership,
)
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def registry(export_dir):
    for name in ("people", "nikki", "teams", "functions", "discipline"):
        run_pipeline(name)


def changelist(client, model, **params):
    return client.get(reverse(f"admin:pipelines_{model}_changelist"), params)


def test_members_are_found_by_relatiecode_name_and_email(admin_client, registry):
    member = Member.objects.exclude(email="").order_by("knvb_id").first()
    for query in (member.knvb_id, member.last_name[:4], member.email[:6]):
        response = changelist(admin_client, "member", q=query)
        assert response.status_code == 200
        assert member.knvb_id in response.content.decode(), query


def test_members_are_filtered_by_team_commissie_and_former(admin_client, registry):
    team = Team.objects.order_by("name").first()
    player = team.memberships.select_related("member").first().member
    response = changelist(admin_client, "member", **{"team_memberships__team__id__exact": team.pk})
    assert response.status_code == 200 and player.knvb_id in response.content.decode()
    commissie = Commissie.objects.first()
    holder = commissie.memberships.first().member
    response = changelist(admin_client, "member", **{"commissie_memberships__commissie__id__exact": commissie.pk})
    assert holder.knvb_id in response.content.decode()
    Member.objects.filter(pk=player.pk).update(is_former=True)
    response = changelist(admin_client, "member", is_former__exact="1")
    assert player.knvb_id in response.content.decode()


def test_every_registry_page_lists_its_rows_and_nothing_can_be_edited(admin_client, registry):
    LapostaSubscription.objects.create(list_id="L1", email="lid@example.org", laposta_member_id="LP-1")
    models = (Member, Parent, Team, TeamMembership, Commissie, CommissieMembership, DisciplineCase, Contribution,
              LapostaSubscription)
    for model in models:
        name = model._meta.model_name
        response = changelist(admin_client, name)
        assert response.status_code == 200, name
        shown = list(response.context["cl"].result_list)
        # A page of the synced rows (50 at most), each linked to its read-only page.
        assert len(shown) == min(50, model.objects.count()) > 0, name
        html = response.content.decode()
        for obj in shown[:3]:
            assert reverse(f"admin:pipelines_{name}_change", args=[obj.pk]) in html, name
        assert admin_client.get(reverse(f"admin:pipelines_{name}_add")).status_code == 403
    member = Member.objects.exclude(photo="").first()
    page = admin_client.get(reverse("admin:pipelines_member_change", args=[member.pk])).content.decode()
    assert member.photo.url in page and 'name="first_name"' not in page  # shown, not editable
    assert 'name="email"' in page  # contact fields are correctable (tests/pipelines/test_corrections.py)
    parent = Parent.objects.first()
    assert admin_client.get(reverse("admin:pipelines_parent_change", args=[parent.pk])).status_code == 200


def test_export_text_is_escaped(admin_client, registry):
    Member.objects.filter(pk=Member.objects.first().pk).update(first_name="<script>alert(1)</script>")
    member = Member.objects.get(first_name__startswith="<script>")
    page = admin_client.get(reverse("admin:pipelines_member_change", args=[member.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
