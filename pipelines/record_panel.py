"""The club's panel on the record page (/records/<identifier>/): current registry
values and the state at the destinations, for members (relatiecode), parents
(email), teams, commissies and discipline cases (dossier id).

Registered with the engine in PipelinesConfig.ready(). A fixed number of
queries per kind of record (asserted by the tests): a member is one query
plus one per related list (teams, functions, contributions, Laposta).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Prefetch
from django.urls import reverse

from pipelines.models import (
    Commissie,
    CommissieMembership,
    DisciplineCase,
    LapostaSubscription,
    Member,
    Parent,
    Team,
    TeamMembership,
)
from runs.records import Panel, RecordInfo, register_record_panel


def _admin(model, pk: int) -> tuple[str, str]:
    meta = model._meta
    return "Open in admin", reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk])


def _laposta_panel(subscriptions: list[LapostaSubscription]) -> Panel:
    if not settings.LAPOSTA_API_KEY:
        empty = "Laposta is not configured (LAPOSTA_API_KEY is not set)."
    else:
        empty = "Not sent to any Laposta list yet."
    rows = [(f"list {s.list_id}", f"last sent {s.synced_at:%Y-%m-%d %H:%M}" if s.synced_at else "not sent",)
            for s in subscriptions]
    rows += [(f"Laposta id on {s.list_id}", s.laposta_member_id or "—") for s in subscriptions]
    return Panel("Laposta", rows=rows, empty=empty)


@register_record_panel
def club_record(identifier: str) -> RecordInfo | None:
    """Describe a member, parent, team, commissie or discipline case."""
    identifier = identifier.strip()
    if not identifier:
        return None
    member = (Member.objects.filter(knvb_id=identifier.upper())
              .prefetch_related(
                  Prefetch("team_memberships", TeamMembership.objects.filter(until__isnull=True)
                           .select_related("team").order_by("team__name"), to_attr="open_teams"),
                  Prefetch("commissie_memberships", CommissieMembership.objects.filter(is_current=True)
                           .select_related("commissie").order_by("commissie__name"), to_attr="functions"),
                  Prefetch("laposta_subscriptions", LapostaSubscription.objects.order_by("list_id"),
                           to_attr="laposta"),
                  Prefetch("contributions", to_attr="contribution_list"),
              ).first())
    if member is not None:
        return _member_info(member)
    if "@" in identifier:
        parent = (Parent.objects.filter(email__iexact=identifier)
                  .prefetch_related(Prefetch("children", Member.objects.order_by("knvb_id"), to_attr="kids"),
                                    Prefetch("laposta_subscriptions", LapostaSubscription.objects.order_by("list_id"),
                                             to_attr="laposta"))
                  .first())
        if parent is not None:
            return _parent_info(parent)
        return None
    case = DisciplineCase.objects.filter(dossier_id=identifier).select_related("member").first()
    if case is not None:
        return RecordInfo(title=f"Discipline case {case.dossier_id}", kind="discipline case",
                          pipelines=["discipline"], panels=[Panel("Registry", rows=[
                              ("Member", f"{case.member.full_name} ({case.member.knvb_id})"),
                              ("Match date", case.match_date), ("Match", case.match), ("Team", case.team_name),
                              ("Offence", case.description), ("Sanction", case.sanction), ("Fee", case.fee),
                              ("Status", case.status), ("Last synced", case.last_synced_at),
                          ], links=[_admin(DisciplineCase, case.pk),
                                    ("Member's record", reverse("runs:record", args=[case.member.knvb_id]))])])
    team = Team.objects.filter(name=identifier).first()
    if team is not None:
        return RecordInfo(title=f"Team {team.name}", kind="team", pipelines=["teams"], panels=[Panel(
            "Registry", rows=[("Name", team.name), ("Sportlink team id", team.sportlink_id), ("Kind", team.kind),
                              ("Last synced", team.last_synced_at)], links=[_admin(Team, team.pk)])])
    commissie = Commissie.objects.filter(name=identifier).first()
    if commissie is not None:
        return RecordInfo(title=f"Commissie {commissie.name}", kind="commissie", pipelines=["functions"],
                          panels=[Panel("Registry", rows=[("Name", commissie.name),
                                                          ("Code", commissie.sportlink_id or "—"),
                                                          ("Last synced", commissie.last_synced_at)],
                                        links=[_admin(Commissie, commissie.pk)])])
    return None


def _member_info(member: Any) -> RecordInfo:
    # A Member with the Prefetch(to_attr=...) lists open_teams, functions, contribution_list, laposta.
    registry = Panel("Registry", rows=[
        ("Name", member.full_name), ("Relatiecode", member.knvb_id), ("Email", member.email or "—"),
        ("Gender", member.get_gender_display()), ("Birth date", member.birth_date),
        ("Member type", member.member_type), ("Age category", member.age_category),
        ("Phone", member.phone or "—"), ("Mobile", member.mobile or "—"),
        ("Address", " ".join(p for p in (member.street, member.house_number, member.postcode, member.city) if p)),
        ("Member since", member.member_since), ("Left on", member.left_on),
        ("Former member", "yes" if member.is_former else "no"), ("Last synced", member.last_synced_at),
    ], links=[_admin(Member, member.pk)])
    teams = Panel("Teams", rows=[(m.team.name, m.role or "—") for m in member.open_teams],
                  empty="In no team.")
    functions = Panel("Commissies", rows=[(f.commissie.name, f.role or "—") for f in member.functions],
                      empty="No functions.")
    contributions = Panel("Contributions", rows=[
        (str(c.year), f"total {c.total}, balance {c.balance}{', ' + c.status if c.status else ''}")
        for c in sorted(member.contribution_list, key=lambda c: -c.year)], empty="No Nikki contributions.")
    freescout = Panel("FreeScout", rows=[("Customer id", member.freescout_id or "—")] if member.freescout_id else [],
                      empty="Not linked to a FreeScout customer yet." if settings.FREESCOUT_API_KEY
                      else "FreeScout is not configured (FREESCOUT_API_KEY is not set).")
    return RecordInfo(title=member.full_name or member.knvb_id, kind="member",
                      note="former member" if member.is_former else "",
                      pipelines=["people", "all"],
                      panels=[registry, teams, functions, contributions, _laposta_panel(member.laposta),
                              freescout])


def _parent_info(parent: Any) -> RecordInfo:
    # A Parent with the Prefetch(to_attr=...) lists kids and laposta.
    registry = Panel("Registry", rows=[("Name", parent.name or "—"), ("Email", parent.email),
                                       ("Phone", parent.phone or "—"), ("Last synced", parent.last_synced_at)],
                     links=[_admin(Parent, parent.pk)])
    children = Panel("Children", rows=[(child.full_name, child.knvb_id) for child in parent.kids],
                     links=[(f"{child.knvb_id}'s record", reverse("runs:record", args=[child.knvb_id]))
                            for child in parent.kids], empty="No children linked.")
    return RecordInfo(title=parent.name or parent.email, kind="parent", pipelines=["people"],
                      panels=[registry, children, _laposta_panel(parent.laposta)])
