"""FreeScout (helpdesk): a customer per current member with an email.

The `freescout` pipeline has one step, `freescout-sync`: for each current
member with an email it finds the customer (the stored `freescout_id`, else
GET /api/customers?email=), creates it (POST, 201 + Resource-ID) or updates
it (PUT, 204), and stores the customer id back on the member in short
batched transactions (never one held across an HTTP call).

Members who share an email (siblings with a parent's address) are one
customer in FreeScout: the oldest member's data is sent, the others get the
same `freescout_id` and count as skipped.

Change detection: `Member.freescout_hash` keeps the hash of the customer
payload last sent; a member already linked to a customer whose payload is
unchanged is skipped without a request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from pipelines.emails import email_problem, normalise_email
from pipelines.http import ApiClient, ApiError, json_or_none
from pipelines.models import Member
from pipelines.sync import plural
from runs.pipeline import register

if TYPE_CHECKING:
    import httpx

    from runs.pipeline import PipelineRun, Step

STEP = "freescout-sync"
WRITE_BATCH = 200
#: FreeScout limits first and last names to 40 characters.
NAME_MAX = 40
_ALREADY_EXISTS = "already exist"


class FreeScoutClient(ApiClient):
    """FreeScout "API & Webhooks" module: JSON bodies, key in X-FreeScout-API-Key."""

    service = "FreeScout"
    credentials_setting = "FREESCOUT_API_KEY"
    base_url_setting = "FREESCOUT_BASE_URL"

    def __init__(self, *, api_key: str, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, headers={"X-FreeScout-API-Key": api_key}, secrets=(api_key,), **kwargs)

    @classmethod
    def from_settings(cls, **kwargs: Any) -> FreeScoutClient:
        return cls(api_key=settings.FREESCOUT_API_KEY, base_url=settings.FREESCOUT_BASE_URL, **kwargs)

    def find_customer(self, email: str) -> dict | None:
        """The customer with exactly this email, or None."""
        body = json_or_none(self.request("GET", "api/customers", params={"email": email})) or {}
        customers = (body.get("_embedded") or {}).get("customers") or []
        for customer in customers:
            if email in {normalise_email(e.get("value", "")) for e in customer.get("emails") or []}:
                return customer
        # A response without emails embedded: trust the documented exact-match search.
        if customers and not any(c.get("emails") for c in customers):
            return customers[0]
        return None

    def create_customer(self, payload: dict) -> int:
        """POST the customer; its id from the Resource-ID header (or the body)."""
        response = self.request("POST", "api/customers", json=payload)
        resource_id = response.headers.get("Resource-ID")
        if resource_id and resource_id.strip().isdigit():
            return int(resource_id)
        body = json_or_none(response)
        if isinstance(body, dict) and str(body.get("id", "")).isdigit():
            return int(body["id"])
        raise ApiError("FreeScout created the customer but returned no Resource-ID")

    def update_customer(self, customer_id: int, payload: dict) -> None:
        self.request("PUT", f"api/customers/{int(customer_id)}", json=payload)

    def api_message(self, response: httpx.Response) -> str:
        body = json_or_none(response)
        if isinstance(body, dict):
            errors = (body.get("_embedded") or {}).get("errors") or []
            messages = [
                (f"{e['path']}: " if e.get("path") else "") + str(e["message"])
                for e in errors if isinstance(e, dict) and e.get("message")
            ]
            if messages:
                return "; ".join(messages)
            if body.get("message"):
                return str(body["message"])
        return super().api_message(response)


def not_configured_reason() -> str:
    if not settings.FREESCOUT_API_KEY:
        return "FREESCOUT_API_KEY is not set"
    if not settings.FREESCOUT_BASE_URL:
        return "FREESCOUT_BASE_URL is not set"
    return ""


def customer_payload(member: Member, email: str) -> dict:
    payload: dict[str, Any] = {
        "firstName": (member.first_name or "")[:NAME_MAX],
        "lastName": " ".join(p for p in (member.infix, member.last_name) if p)[:NAME_MAX],
        "emails": [{"value": email, "type": "home"}],
    }
    phones = [{"value": v, "type": t} for v, t in ((member.mobile, "mobile"), (member.phone, "home")) if v]
    if phones:
        payload["phones"] = phones
    street = " ".join(p for p in (member.street, member.house_number, member.house_number_addition) if p)
    if street or member.postcode or member.city:
        payload["address"] = {"address": street, "zip": member.postcode, "city": member.city, "country": "NL"}
    return payload


def payload_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@register("freescout", schedule="0 8 * * *")
def freescout(run: PipelineRun) -> None:
    """Members into FreeScout customers."""
    freescout_steps(run)


def freescout_steps(run: PipelineRun, *, client: FreeScoutClient | None = None) -> None:
    """Record `freescout-sync`; `client` is for tests (an injected sleep)."""
    reason = not_configured_reason()
    if reason:
        run.skip_step(STEP, reason)
        return
    owns_client = client is None
    client = client or FreeScoutClient.from_settings()
    try:
        with run.step(STEP) as step:
            sync(step, client, dry_run=run.dry_run, in_scope=run.in_scope if run.only is not None else None)
    finally:
        if owns_client:
            client.close()


@dataclass
class _Write:
    pk: int
    freescout_id: int
    hash: str


def sync(step: Step, client: FreeScoutClient, *, dry_run: bool,
         in_scope: Callable[..., bool] | None = None) -> None:
    """`in_scope(knvb_id, email)`: for a run scoped with --only, which members to sync."""
    fields = ["pk", "knvb_id", "first_name", "infix", "last_name", "email", "phone", "mobile", "street",
              "house_number", "house_number_addition", "postcode", "city", "birth_date", "freescout_id",
              "freescout_hash"]
    members = list(Member.objects.filter(is_former=False).exclude(email="").only(*fields))
    if in_scope is not None:
        members = [m for m in members if in_scope(m.knvb_id, m.email)]
    # The oldest member owns a shared email (stable whatever the export order).
    members.sort(key=lambda m: (m.birth_date or date.max, m.knvb_id))
    step.total = len(members)
    step.read(len(members))

    owners: dict[str, Member | None] = {}
    followers: list[tuple[Member, str]] = []
    pending: list[_Write] = []
    try:
        for done, member in enumerate(members, start=1):
            step.check_cancelled()
            email = normalise_email(member.email)
            problem = email_problem(email)
            if problem:
                step.fail_item(f"Invalid email address {member.email.strip()!r} ({problem}): not sent to FreeScout",
                               identifier=member.knvb_id, identifier_kind="knvb_id")
                continue
            if email in owners:
                followers.append((member, email))
                continue
            owners[email] = member
            payload = customer_payload(member, email)
            digest = payload_hash(payload)
            if member.freescout_id and member.freescout_hash == digest:
                step.skipped()
                step.processed((member.knvb_id,))
                continue
            if dry_run:
                (step.updated if member.freescout_id else step.created)()
                continue
            try:
                customer_id, created = _sync_customer(client, member.freescout_id, email, payload)
            except ApiError as exc:
                step.fail_item(exc.message, identifier=member.knvb_id, identifier_kind="knvb_id")
                owners[email] = None  # followers of a failed owner are not linked
                if exc.fatal:
                    # FreeScout cannot be used any more: the members not tried yet
                    # are failed in one error, so the counts add up to what was read.
                    rest = len(members) - done + len(followers)  # followers wait for their owner
                    step.failed(rest)
                    if rest:
                        raise type(exc)(f"{plural(rest, 'more member')} not sent: {exc.message}",
                                        status=exc.status) from None
                    raise
                continue
            (step.created if created else step.updated)()
            step.processed((member.knvb_id,))
            member.freescout_id = customer_id
            pending.append(_Write(member.pk, customer_id, digest))
            if len(pending) >= WRITE_BATCH:
                _store(pending)
        for member, email in followers:
            owner = owners.get(email)
            step.skipped()
            if owner is not None and owner.freescout_id and member.freescout_id != owner.freescout_id \
                    and not dry_run:
                pending.append(_Write(member.pk, owner.freescout_id, ""))
        if followers:
            step.detail["shared_email"] = len(followers)
    finally:
        if not dry_run:
            _store(pending)


def _sync_customer(client: FreeScoutClient, customer_id: int | None, email: str,
                   payload: dict) -> tuple[int, bool]:
    """Update the known customer, else the one with this email, else create one: (id, created)."""
    if customer_id:
        try:
            client.update_customer(customer_id, payload)
            return customer_id, False
        except ApiError as exc:
            if exc.fatal or exc.status != 404:
                raise
            # Deleted or merged in FreeScout: find it again by email.
    found = client.find_customer(email)
    if found and found.get("id"):
        client.update_customer(int(found["id"]), payload)
        return int(found["id"]), False
    try:
        return client.create_customer(payload), True
    except ApiError as exc:
        if exc.fatal or exc.status != 400 or _ALREADY_EXISTS not in exc.said.lower():
            raise
    # Someone created it between our lookup and our POST (or the search missed it).
    found = client.find_customer(email)
    if not found or not found.get("id"):
        raise ApiError(f"FreeScout says a customer with {email} exists but does not find it by email")
    client.update_customer(int(found["id"]), payload)
    return int(found["id"]), False


def _store(pending: list[_Write]) -> None:
    if not pending:
        return
    # Followers share the owner's id but keep no hash: they are never sent themselves.
    objs = [Member(pk=w.pk, freescout_id=w.freescout_id, freescout_hash=w.hash) for w in pending]
    with transaction.atomic():
        Member.objects.bulk_update(objs, ["freescout_id", "freescout_hash"])
    pending.clear()
