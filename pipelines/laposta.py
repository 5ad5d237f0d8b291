"""Laposta (email lists): members and parents on their lists, only what changed.

`laposta_steps(run, members=..., parents=...)` records two steps:

* `laposta-prepare` builds the payload of every email on every configured
  list (members on LAPOSTA_MEMBERS_LIST_ID, parents on
  LAPOSTA_PARENTS_LIST_ID), hashes it and compares it with the hash last sent
  (LapostaSubscription, loaded in one query): new -> created, changed ->
  updated, unchanged -> skipped; emails no longer present are to be deleted.
* `laposta-submit` sends only the new and changed ones (POST /member with
  options[upsert]=true), deletes the removed ones, and stores the Laposta
  member id and the payload hash back in short batched transactions (never
  one held across an HTTP call). Its `read` counts the requests it made.

Not configured -> both steps are `skipped` with the reason. Dry run -> the
prepare step counts, the submit step is skipped: nothing is sent or stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone

from pipelines.emails import email_problem, normalise_email
from pipelines.http import ApiError
from pipelines.laposta_client import LapostaClient
from pipelines.models import LapostaSubscription, Member, Parent
from pipelines.sync import guard_removals, plural
from runs.isotime import iso

if TYPE_CHECKING:
    from pipelines.records import MemberRecord, ParentRecord
    from runs.pipeline import PipelineRun, Step

PREPARE = "laposta-prepare"
SUBMIT = "laposta-submit"
#: Rows written back per transaction: short, so the tracker and the dashboard get their turn.
WRITE_BATCH = 200

# The custom fields the Laposta lists must have (their "tag" without braces); whoever
# sets up the lists in Laposta creates these.
MEMBER_FIELDS = ("relatiecode", "voornaam", "tussenvoegsel", "achternaam", "geslacht", "geboortedatum",
                 "lidsoort", "leeftijdscategorie", "teams", "telefoon", "mobiel", "woonplaats")
PARENT_FIELDS = ("naam", "telefoon", "kinderen", "teams")


# -- payloads -----------------------------------------------------------------------


def member_fields(record: MemberRecord) -> dict[str, str]:
    return {
        "relatiecode": record.knvb_id,
        "voornaam": record.first_name,
        "tussenvoegsel": record.infix,
        "achternaam": record.last_name,
        "geslacht": record.gender,
        "geboortedatum": iso(record.birth_date) or "",
        "lidsoort": record.member_type,
        "leeftijdscategorie": record.age_category,
        "teams": ", ".join(record.teams),
        "telefoon": record.phone,
        "mobiel": record.mobile,
        "woonplaats": record.city,
    }


def parent_fields(record: ParentRecord, children: list[MemberRecord]) -> dict[str, str]:
    teams = sorted({team for child in children for team in child.teams})
    return {
        "naam": record.name,
        "telefoon": record.phone,
        "kinderen": ", ".join(child.full_name for child in children),
        "teams": ", ".join(teams),
    }


def payload_hash(email: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps({"email": email, "custom_fields": fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Send:
    list_id: str
    email: str
    fields: dict[str, Any]
    hash: str
    identifier: str
    identifier_kind: str
    knvb_id: str = ""
    parent_email: str = ""


@dataclass
class Delete:
    list_id: str
    email: str
    laposta_member_id: str
    subscription_pk: int


@dataclass
class Plan:
    sends: list[Send] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)


# -- the steps ----------------------------------------------------------------------


def not_configured_reason() -> str:
    """Why Laposta cannot run at all, or "" when at least one list can be synced."""
    if not settings.LAPOSTA_API_KEY:
        return "LAPOSTA_API_KEY is not set"
    if not settings.LAPOSTA_BASE_URL:
        return "LAPOSTA_BASE_URL is not set"
    if not settings.LAPOSTA_MEMBERS_LIST_ID and not settings.LAPOSTA_PARENTS_LIST_ID:
        return "LAPOSTA_MEMBERS_LIST_ID and LAPOSTA_PARENTS_LIST_ID are not set"
    return ""


def laposta_steps(run: PipelineRun, *, members: list[MemberRecord], parents: list[ParentRecord],
                  client: LapostaClient | None = None) -> None:
    """Record `laposta-prepare` and `laposta-submit` (see the module docstring).

    `client` is for tests (a client with an injected sleep); by default one is
    built from the settings.
    """
    reason = not_configured_reason()
    if reason:
        run.skip_step(PREPARE, reason)
        # Skipped or run, laposta-submit is not critical (see below).
        run.skip_step(SUBMIT, reason, critical=False)
        return
    with run.step(PREPARE) as step:
        plan = prepare(step, members=members, parents=parents, scoped=run.only is not None)
    if run.dry_run:
        run.skip_step(SUBMIT, f"Dry run: {len(plan.sends)} to send and {len(plan.deletes)} to delete, "
                              "nothing sent", critical=False)
        return
    if not plan.sends and not plan.deletes:
        with run.step(SUBMIT, total=0, critical=False) as step:
            step.detail.update(sent=0, deleted=0)
        return
    owns_client = client is None
    client = client or LapostaClient.from_settings()
    try:
        # Not critical: wrong Laposta credentials or Laposta being down must not
        # keep the members out of the registry (rondo-club-sync comes next).
        # The step fails with the reason and the run ends partial, which alerts.
        with run.step(SUBMIT, total=len(plan.sends) + len(plan.deletes), critical=False) as step:
            submit(step, plan, client)
    finally:
        if owns_client:
            client.close()


def prepare(step: Step, *, members: list[MemberRecord], parents: list[ParentRecord], scoped: bool = False) -> Plan:
    """Build, hash and compare every payload; count new/changed/unchanged; list what to delete.

    `scoped`: the run syncs some records only (runsync --only): nothing is deleted.
    """
    lists: dict[str, list[tuple[str, Send]]] = {}
    detail = step.detail
    members_list = settings.LAPOSTA_MEMBERS_LIST_ID
    parents_list = settings.LAPOSTA_PARENTS_LIST_ID
    if not members_list:
        detail["members_list"] = "LAPOSTA_MEMBERS_LIST_ID is not set: members not synced"
    if not parents_list:
        detail["parents_list"] = "LAPOSTA_PARENTS_LIST_ID is not set: parents not synced"

    without_email = shared_email = 0
    if members_list:
        # Siblings often share a parent's address: one Laposta member per email,
        # the oldest member's data (stable across runs whatever the export order).
        ordered = sorted(members, key=lambda r: (r.birth_date or date.max, r.knvb_id))
        seen: set[str] = set()
        entries: list[tuple[str, Send]] = []
        for record in ordered:
            email = normalise_email(record.email)
            if not email:
                without_email += 1
                continue
            step.read()
            problem = email_problem(email)
            if problem:
                step.fail_item(f"Invalid email address {record.email.strip()!r} ({problem}): not sent to Laposta",
                               identifier=record.knvb_id, identifier_kind="knvb_id")
                continue
            if email in seen:
                shared_email += 1
                continue
            seen.add(email)
            fields = member_fields(record)
            entries.append((email, Send(members_list, email, fields, payload_hash(email, fields),
                                        identifier=record.knvb_id, identifier_kind="knvb_id",
                                        knvb_id=record.knvb_id)))
        lists[members_list] = entries

    if parents_list:
        by_knvb = {member.knvb_id: member for member in members}
        merged: dict[str, tuple[ParentRecord, list[str]]] = {}
        for parent in parents:
            email = normalise_email(parent.email)
            if not email:
                without_email += 1
                continue
            if email in merged:  # the same parent listed with two children: one entry
                merged[email][1].extend(parent.children)
                continue
            merged[email] = (parent, list(parent.children))
        entries = []
        for email in sorted(merged):
            parent, child_ids = merged[email]
            step.read()
            problem = email_problem(email)
            if problem:
                step.fail_item(f"Invalid email address {parent.email.strip()!r} ({problem}): not sent to Laposta",
                               identifier=parent.email.strip(), identifier_kind="email")
                continue
            children = [by_knvb[k] for k in dict.fromkeys(child_ids) if k in by_knvb]
            fields = parent_fields(parent, children)
            entries.append((email, Send(parents_list, email, fields, payload_hash(email, fields),
                                        identifier=email, identifier_kind="email", parent_email=email)))
        if members_list == parents_list:
            # One list for both: a member's own entry wins over the parent entry.
            taken = {email for email, _ in lists.get(members_list, [])}
            lists[parents_list] = lists.get(members_list, []) + [e for e in entries if e[0] not in taken]
        else:
            lists[parents_list] = entries

    # What was last sent, for every configured list: one query.
    known: dict[tuple[str, str], tuple[int, str, str]] = {
        (list_id, email): (pk, digest, member_id)
        for pk, list_id, email, digest, member_id in LapostaSubscription.objects.filter(
            list_id__in=list(lists)).values_list("pk", "list_id", "email", "payload_hash", "laposta_member_id")
    }
    plan = Plan()
    for list_id, entries in lists.items():
        current = set()
        for email, send in entries:
            current.add(email)
            last = known.get((list_id, email))
            if last is None:
                step.created()
                plan.sends.append(send)
            elif last[1] != send.hash:
                step.updated()
                plan.sends.append(send)
            else:
                step.skipped()
                step.processed((send.identifier,))
        if scoped:
            continue
        gone = [(email, value) for (lid, email), value in known.items() if lid == list_id and email not in current]
        if gone and not entries:
            # An export without any entry for this list (e.g. no parent columns)
            # must not empty the list in Laposta.
            detail.setdefault("withheld", {})[list_id] = (
                f"{len(gone)} deletions withheld: the export has no entries for this list")
            continue
        on_list = sum(1 for lid, _email in known if lid == list_id)
        label = _list_label(list_id)
        if gone and not guard_removals(
                step, kind=f"addresses removed from the Laposta {label}", active=on_list, removing=len(gone),
                situation=f"The export has {plural(len(entries), 'address', 'addresses')} for the Laposta {label}, "
                          f"which holds {plural(on_list, 'address', 'addresses')} syncsite sent.",
                effect=f"{plural(len(gone), 'address', 'addresses')} would be removed from it."):
            continue
        for email, (pk, _digest, member_id) in sorted(gone):
            plan.deletes.append(Delete(list_id, email, member_id, pk))

    step.total = step.state.read
    detail.update(to_send=len(plan.sends), to_delete=len(plan.deletes))
    if without_email:
        detail["without_email"] = without_email
    if shared_email:
        detail["shared_email"] = shared_email
    return plan


def _list_label(list_id: str) -> str:
    if list_id == settings.LAPOSTA_MEMBERS_LIST_ID == settings.LAPOSTA_PARENTS_LIST_ID:
        return "list"
    return "members list" if list_id == settings.LAPOSTA_MEMBERS_LIST_ID else "parents list"


def link_subscriptions() -> int:
    """Link stored subscriptions to the member or parent they were sent for.

    In `people`, laposta-submit runs before rondo-club-sync, so on a club's
    first run the rows it stores have no member or parent yet (and an
    unchanged payload is never sent, so nothing would link them later).
    `people` calls this after the registry sync. Matched by email in lower
    case; siblings sharing one email go to the oldest, as in the payload.
    Returns how many subscriptions were linked.
    """
    unlinked = list(LapostaSubscription.objects.filter(member__isnull=True, parent__isnull=True)
                    .values_list("pk", "list_id", "email"))
    if not unlinked:
        return 0
    emails = {email for _pk, _list, email in unlinked}
    members: dict[str, int] = {}
    for pk, email in (Member.objects.annotate(lowered=Lower("email")).filter(lowered__in=emails, is_former=False)
                      .order_by(F("birth_date").asc(nulls_last=True), "knvb_id").values_list("pk", "lowered")):
        members.setdefault(email, pk)
    parents = dict(Parent.objects.annotate(lowered=Lower("email")).filter(lowered__in=emails)
                   .values_list("lowered", "pk"))
    linked = []
    for pk, list_id, email in unlinked:
        if list_id == settings.LAPOSTA_MEMBERS_LIST_ID and email in members:
            linked.append(LapostaSubscription(pk=pk, member_id=members[email]))
        elif list_id == settings.LAPOSTA_PARENTS_LIST_ID and email in parents:
            linked.append(LapostaSubscription(pk=pk, parent_id=parents[email]))
    for start in range(0, len(linked), WRITE_BATCH):
        with transaction.atomic():
            LapostaSubscription.objects.bulk_update(linked[start:start + WRITE_BATCH], ["member", "parent"])
    return len(linked)


def submit(step: Step, plan: Plan, client: LapostaClient) -> None:
    """Send the plan; store what Laposta accepted. CredentialsError and ServiceDownError fail the step."""
    member_pks: dict[str, int] = {}
    parent_pks: dict[str, int] = {}
    if any(s.knvb_id for s in plan.sends):
        member_pks = dict(Member.objects.values_list("knvb_id", "pk"))
    if any(s.parent_email for s in plan.sends):
        parent_pks = {email.lower(): pk for email, pk in Parent.objects.values_list("email", "pk")}

    sent: list[LapostaSubscription] = []
    deleted: list[int] = []
    counts = {"sent": 0, "deleted": 0}
    done = {"sends": 0, "deletes": 0}
    try:
        for send in plan.sends:
            step.check_cancelled()
            step.read()
            done["sends"] += 1
            try:
                member = client.upsert_member(send.list_id, send.email, send.fields)
            except ApiError as exc:
                step.fail_item(exc.message, identifier=send.identifier, identifier_kind=send.identifier_kind)
                if exc.fatal:
                    _account_for_the_rest(step, plan, done, exc)
                continue
            counts["sent"] += 1
            step.processed((send.identifier,))
            sent.append(LapostaSubscription(
                list_id=send.list_id, email=send.email, member_id=member_pks.get(send.knvb_id),
                parent_id=parent_pks.get(send.parent_email), laposta_member_id=str(member.get("member_id") or ""),
                payload_hash=send.hash, synced_at=timezone.now(),
            ))
            if len(sent) >= WRITE_BATCH:
                _store(sent)
        for delete in plan.deletes:
            step.check_cancelled()
            step.read()
            done["deletes"] += 1
            try:
                client.delete_member(delete.list_id, delete.laposta_member_id or delete.email)
            except ApiError as exc:
                step.fail_item(exc.message, identifier=delete.email, identifier_kind="email")
                if exc.fatal:
                    _account_for_the_rest(step, plan, done, exc)
                continue
            counts["deleted"] += 1
            deleted.append(delete.subscription_pk)
            if len(deleted) >= WRITE_BATCH:
                _forget(deleted)
    finally:
        # Whatever Laposta accepted is remembered, even when the step stops halfway.
        _store(sent)
        _forget(deleted)
        step.detail.update(counts)


def _account_for_the_rest(step: Step, plan: Plan, done: dict[str, int], exc: ApiError) -> None:
    """Laposta cannot be used any more (down, unreachable, wrong key): stop the step.

    What was not tried yet is read and failed in one error (the step's
    reason), so failed + sent equals what the step read.
    """
    sends, deletes = len(plan.sends) - done["sends"], len(plan.deletes) - done["deletes"]
    step.read(sends + deletes)
    step.failed(sends + deletes)
    parts = [plural(sends, "more member")] if sends else []
    if deletes:
        parts.append(f"{plural(deletes, 'deletion')}")
    if not parts:
        raise exc
    raise type(exc)(f"{' and '.join(parts)} not sent: {exc.message}", status=exc.status) from None


def _store(batch: list[LapostaSubscription]) -> None:
    if not batch:
        return
    with transaction.atomic():
        LapostaSubscription.objects.bulk_create(
            batch, update_conflicts=True, unique_fields=["list_id", "email"],
            update_fields=["member", "parent", "laposta_member_id", "payload_hash", "synced_at"],
        )
    batch.clear()


def _forget(pks: list[int]) -> None:
    if not pks:
        return
    with transaction.atomic():
        LapostaSubscription.objects.filter(pk__in=pks).delete()
    pks.clear()
