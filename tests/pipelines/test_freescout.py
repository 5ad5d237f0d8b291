"""FreeScout sync against a local server that speaks the FreeScout API."""

import json
import re
import threading
from datetime import date

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from pipelines.freescout import FreeScoutClient, customer_payload, freescout_steps
from pipelines.models import Member
from runs.models import RunError, RunStep
from runs.pipeline import get_pipeline, register, unregister
from runs.redact import clear_secret_cache
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "freescout-test-key-0123456789"


def _json(body, status=200, headers=None):
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


class FakeFreeScout:
    """Customers endpoints of FreeScout's API & Webhooks module."""

    def __init__(self):
        self.customers: dict[int, dict] = {}
        self.requests: list[tuple[str, str, object]] = []
        self.faults: list[dict] = []
        self.next_id = 100
        self.miss_search_for: dict[str, int] = {}  # searches that miss an existing customer, per email

    def fail(self, *, status, method=None, times=1, headers=None, body=None, email=None):
        self.faults.append({"status": status, "method": method, "times": times, "headers": headers or {},
                            "body": body, "email": email})

    def _fault(self, method, email):
        for fault in self.faults:
            if fault["times"] == 0 or fault["method"] not in (None, method) or fault["email"] not in (None, email):
                continue
            if fault["times"] is not None:
                fault["times"] -= 1
            body = fault["body"] or {"message": f"Simulated HTTP {fault['status']}"}
            return _json(body, fault["status"], fault["headers"])
        return None

    def by_email(self, email):
        return [c for c in self.customers.values() if email in [e["value"] for e in c["emails"]]]

    def __call__(self, request):
        if request.headers.get("X-FreeScout-API-Key") != KEY:
            return _json({"message": "Not Authorized"}, 401)
        body = request.get_json(silent=True) if request.data else None
        self.requests.append((request.method, request.path, body or dict(request.args)))
        email = ((body or {}).get("emails") or [{}])[0].get("value") or request.args.get("email")
        if request.path == "/api/customers/" or request.path == "/api/customers":
            fault = self._fault(request.method, email)
            if fault:
                return fault
            if request.method == "GET":
                wanted = request.args.get("email", "")
                found = self.by_email(wanted)
                if self.miss_search_for.get(wanted):
                    self.miss_search_for[wanted] -= 1
                    found = []
                return _json({"_embedded": {"customers": found},
                              "page": {"size": 50, "totalElements": len(found), "totalPages": 1, "number": 1}})
            if request.method == "POST":
                return self._create(body)
        match = re.fullmatch(r"/api/customers/(\d+)", request.path)
        if match:
            fault = self._fault(request.method, email)
            if fault:
                return fault
            customer = self.customers.get(int(match.group(1)))
            if customer is None:
                return _json({"message": "Not found"}, 404)
            if request.method == "PUT":
                customer.update(body)
                return Response(status=204)
            if request.method == "GET":
                return _json(customer)
        return _json({"message": "Unknown path"}, 404)

    def _create(self, body):
        errors = []
        for name in ("firstName", "lastName"):
            if len(body.get(name) or "") > 40:
                errors.append({"path": name, "message": "The value may not be greater than 40 characters.",
                               "source": "body"})
        emails = [e["value"] for e in body.get("emails") or []]
        if any(self.by_email(e) for e in emails):
            errors.append({"path": "emails", "message": "Customers with such email(s) already exist",
                           "source": "body"})
        if errors:
            return _json({"message": "Invalid data", "_embedded": {"errors": errors}}, 400)
        customer_id = self.next_id
        self.next_id += 1
        self.customers[customer_id] = {"id": customer_id, **body}
        return _json(self.customers[customer_id], 201, {"Resource-ID": str(customer_id)})

    def sent(self, method):
        return [r for r in self.requests if r[0] == method]




@pytest.fixture
def fake(httpserver, settings):
    server = FakeFreeScout()
    httpserver.expect_request(re.compile(r"^/api/.*")).respond_with_handler(server)
    settings.FREESCOUT_API_KEY = KEY
    settings.FREESCOUT_BASE_URL = httpserver.url_for("")
    clear_secret_cache()
    yield server
    clear_secret_cache()


@pytest.fixture
def pipeline(sleeps):
    """Runs `freescout-sync` with a client whose sleep is recorded."""
    options = {}

    @register("freescout-test")
    def freescout_test(run):
        client = FreeScoutClient.from_settings(sleep=sleeps, max_retries=options.get("retries", 2))
        freescout_steps(run, client=client)

    def run(*, dry_run=False, **kwargs):
        options.update(kwargs)
        return run_pipeline("freescout-test", dry_run=dry_run)

    yield run
    unregister("freescout-test")


def members():
    return [
        Member.objects.create(knvb_id="AAA1111", first_name="Anna", infix="van der", last_name="Berg",
                              email="anna@example.nl", mobile="0612345678", city="Utrecht", postcode="3511AB",
                              street="Oudegracht", house_number="12", birth_date=date(1980, 1, 1)),
        Member.objects.create(knvb_id="BBB2222", first_name="Bram", last_name="Jansen", email="Bram@Example.nl",
                              birth_date=date(1990, 1, 1)),
        Member.objects.create(knvb_id="CCC3333", first_name="Cees", last_name="de Vries", email="cees@example.nl",
                              birth_date=date(2000, 1, 1)),
    ]


def sync_step(run):
    return RunStep.objects.get(run=run, name="freescout-sync")


def counts(step):
    return (step.created, step.updated, step.skipped, step.failed)


def test_the_freescout_pipeline_is_registered_with_its_schedule():
    assert get_pipeline("freescout").schedule == "0 8 * * *"


def test_the_registered_pipeline_creates_customers_and_stores_their_ids(fake):
    anna, bram, cees = members()
    Member.objects.create(knvb_id="FFF0000", first_name="Oud", email="oud@example.nl", is_former=True)
    Member.objects.create(knvb_id="NNN0000", first_name="Geen", email="")
    run = run_pipeline("freescout")
    assert run.status == "success"
    step = sync_step(run)
    assert (step.read, *counts(step)) == (3, 3, 0, 0, 0)
    assert len(fake.customers) == 3
    anna.refresh_from_db()
    customer = fake.customers[anna.freescout_id]
    assert customer["firstName"] == "Anna" and customer["lastName"] == "van der Berg"
    assert customer["emails"] == [{"value": "anna@example.nl", "type": "home"}]
    assert customer["phones"] == [{"value": "0612345678", "type": "mobile"}]
    assert customer["address"] == {"address": "Oudegracht 12", "zip": "3511AB", "city": "Utrecht", "country": "NL"}
    bram.refresh_from_db()
    assert fake.customers[bram.freescout_id]["emails"][0]["value"] == "bram@example.nl"
    assert anna.freescout_hash
    # Looked up by email before creating: no duplicates.
    assert [r[2] for r in fake.sent("GET")][0] == {"email": "anna@example.nl"}


def test_a_second_run_sends_nothing_for_unchanged_members(fake, pipeline):
    members()
    pipeline()
    before = len(fake.requests)
    run = pipeline()
    assert counts(sync_step(run)) == (0, 0, 3, 0)
    assert len(fake.requests) == before


def test_a_changed_member_is_updated_with_put_on_the_stored_id(fake, pipeline):
    anna, _, _ = members()
    pipeline()
    anna.refresh_from_db()
    Member.objects.filter(pk=anna.pk).update(city="Zeist")
    before = len(fake.requests)
    run = pipeline()
    assert counts(sync_step(run)) == (0, 1, 2, 0)
    (put,) = fake.requests[before:]
    assert put[0:2] == ("PUT", f"/api/customers/{anna.freescout_id}")
    assert fake.customers[anna.freescout_id]["address"]["city"] == "Zeist"


def test_an_existing_customer_found_by_email_is_updated_and_linked(fake, pipeline):
    fake.customers[7] = {"id": 7, "firstName": "A", "lastName": "B", "emails": [{"value": "anna@example.nl",
                                                                                   "type": "work"}]}
    anna, _, _ = members()
    run = pipeline()
    assert counts(sync_step(run)) == (2, 1, 0, 0)
    anna.refresh_from_db()
    assert anna.freescout_id == 7
    assert fake.customers[7]["firstName"] == "Anna"


def test_a_customer_deleted_in_freescout_is_found_again_or_recreated(fake, pipeline):
    anna, _, _ = members()
    pipeline()
    anna.refresh_from_db()
    del fake.customers[anna.freescout_id]
    Member.objects.filter(pk=anna.pk).update(city="Zeist")
    run = pipeline()
    assert counts(sync_step(run)) == (1, 0, 2, 0)
    old = anna.freescout_id
    anna.refresh_from_db()
    assert anna.freescout_id != old and anna.freescout_id in fake.customers


def test_already_exists_on_create_looks_up_by_email_and_updates(fake, pipeline):
    fake.customers[9] = {"id": 9, "firstName": "X", "emails": [{"value": "cees@example.nl", "type": "home"}]}
    fake.miss_search_for["cees@example.nl"] = 1  # the first lookup misses it, the POST says it exists
    _, _, cees = members()
    run = pipeline()
    assert run.status == "success"
    cees.refresh_from_db()
    assert cees.freescout_id == 9
    assert fake.customers[9]["firstName"] == "Cees"
    assert counts(sync_step(run)) == (2, 1, 0, 0)
    assert [r[0] for r in fake.requests[-4:]] == ["GET", "POST", "GET", "PUT"]


def test_a_refused_customer_is_an_error_with_the_apis_message_and_the_rest_go_on(fake, pipeline):
    Member.objects.create(knvb_id="LLL0000", first_name="L" * 45, last_name="Lang", email="lang@example.nl")
    members()
    # FreeScout's limit is 40 characters: syncsite cuts names, so break another field.
    fake.fail(status=400, method="POST", email="cees@example.nl", body={
        "message": "Invalid data", "_embedded": {"errors": [
            {"path": "emails", "message": "The email must be a valid email address.", "source": "body"}]}})
    run = pipeline()
    assert run.status == "partial"
    step = sync_step(run)
    assert counts(step) == (3, 0, 0, 1)
    (error,) = RunError.objects.filter(run=run)
    assert (error.identifier, error.identifier_kind) == ("CCC3333", "knvb_id")
    assert "The email must be a valid email address." in error.message
    assert Member.objects.get(knvb_id="CCC3333").freescout_id is None
    assert len(Member.objects.get(knvb_id="LLL0000").freescout_hash) == 64


def test_a_429_with_retry_after_is_honoured(fake, pipeline, sleeps):
    members()
    fake.fail(status=429, method="POST", headers={"Retry-After": "21"})
    run = pipeline()
    assert run.status == "success"
    assert sleeps == [21.0]
    assert len(fake.customers) == 3


def test_a_500_then_success_is_retried(fake, pipeline, sleeps):
    members()
    fake.fail(status=500, method="GET", times=2)
    run = pipeline()
    assert run.status == "success"
    assert sleeps == [1.0, 2.0]


def test_a_500_forever_fails_that_member_and_the_rest_go_on(fake, pipeline, sleeps):
    members()
    fake.fail(status=500, method="POST", email="bram@example.nl", times=None)
    run = pipeline(retries=1)
    assert run.status == "partial"
    assert counts(sync_step(run)) == (2, 0, 0, 1)
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "BBB2222"
    assert "HTTP 500: Simulated HTTP 500" in error.message
    assert sleeps == [1.0]


def test_when_freescout_stays_down_the_step_stops(fake, pipeline, sleeps):
    for i in range(12):
        Member.objects.create(knvb_id=f"ZZZ{i:04d}", email=f"z{i}@example.nl")
    fake.fail(status=503, times=None)
    run = pipeline(retries=0)
    assert run.status == "failed"
    step = sync_step(run)
    assert step.status == "failed"
    assert "keeps failing" in step.reason
    # The tenth failure in a row stops the step; every member read is accounted for:
    # ten tried (one error each), then one error for the two never tried.
    assert step.reason.startswith("2 more members not sent: FreeScout keeps failing")
    assert (step.read, step.failed, step.created + step.updated + step.skipped) == (12, 12, 0)
    errors = list(RunError.objects.filter(run=run).order_by("id"))
    assert len(errors) == 11
    assert [e.identifier for e in errors[:10]] == [f"ZZZ{i:04d}" for i in range(10)]
    assert errors[10].message == step.reason


def test_a_401_fails_the_step_with_a_credentials_message_without_the_key(fake, pipeline, settings):
    members()
    settings.FREESCOUT_API_KEY = "wrong-freescout-key-42"
    clear_secret_cache()
    run = pipeline()
    assert run.status == "failed"
    step = sync_step(run)
    assert step.status == "failed"
    assert "credentials are wrong" in step.reason and "FREESCOUT_API_KEY" in step.reason
    assert "Not Authorized" in step.reason
    assert "wrong-freescout-key-42" not in step.reason
    for error in RunError.objects.filter(run=run):
        assert "wrong-freescout-key-42" not in error.message + error.traceback
    assert not Member.objects.exclude(freescout_id=None).exists()


def test_a_timeout_is_retried_then_fails_that_member(fake, pipeline, sleeps, settings):
    members()
    settings.HTTP_TIMEOUT_S = 0.05
    release = threading.Event()

    def slow(request):
        if request.args.get("email") == "bram@example.nl":
            release.wait(0.3)  # bounded: longer than the client's timeout
        return fake(request)

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request(re.compile(r"^/api/.*")).respond_with_handler(slow)
    server.start()
    try:
        settings.FREESCOUT_BASE_URL = server.url_for("")
        run = pipeline(retries=1)
    finally:
        release.set()
        server.clear()
        server.stop()
    assert run.status == "partial"
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "BBB2222"
    assert "no answer within 0.05 s" in error.message
    assert sleeps == [1.0]


def test_dry_run_counts_and_sends_and_writes_nothing(fake, pipeline):
    members()
    run = pipeline(dry_run=True)
    assert run.status == "success"
    assert counts(sync_step(run)) == (3, 0, 0, 0)
    assert fake.requests == []
    assert not Member.objects.exclude(freescout_id=None).exists()
    assert not Member.objects.exclude(freescout_hash="").exists()


@pytest.mark.parametrize(("key", "url", "reason"), [
    ("", "http://127.0.0.1:9", "FREESCOUT_API_KEY is not set"),
    ("some-key-123456", "", "FREESCOUT_BASE_URL is not set"),
])
def test_not_configured_the_step_is_skipped_with_the_reason(settings, key, url, reason):
    settings.FREESCOUT_API_KEY = key
    settings.FREESCOUT_BASE_URL = url
    members()
    run = run_pipeline("freescout")
    # Nothing configured is not success: the run is skipped, with the reason.
    assert (run.status, run.message) == ("skipped", f"Not configured: {reason}.")
    step = sync_step(run)
    assert (step.status, step.reason) == ("skipped", reason)


def test_siblings_sharing_an_email_share_one_customer(fake, pipeline):
    kim = Member.objects.create(knvb_id="KID0001", first_name="Kim", email="gezin@example.nl",
                                birth_date=date(2014, 1, 1))
    lars = Member.objects.create(knvb_id="KID0002", first_name="Lars", email="Gezin@example.nl",
                                 birth_date=date(2011, 1, 1))
    run = pipeline()
    assert counts(sync_step(run)) == (1, 0, 1, 0)
    kim.refresh_from_db()
    lars.refresh_from_db()
    assert kim.freescout_id == lars.freescout_id
    assert fake.customers[lars.freescout_id]["firstName"] == "Lars"
    assert len(fake.customers) == 1
    run = pipeline()
    assert counts(sync_step(run)) == (0, 0, 2, 0)


def test_an_invalid_email_is_an_error_for_that_member(fake, pipeline):
    members()
    Member.objects.create(knvb_id="DDD4444", email="geen-email")
    run = pipeline()
    assert run.status == "partial"
    (error,) = RunError.objects.filter(run=run)
    assert (error.identifier, error.step_name) == ("DDD4444", "freescout-sync")
    assert len(fake.customers) == 3


def test_names_are_cut_to_freescouts_40_characters():
    member = Member(first_name="A" * 50, infix="van", last_name="B" * 50)
    payload = customer_payload(member, "x@example.nl")
    assert len(payload["firstName"]) == 40 and len(payload["lastName"]) == 40
    assert "phones" not in payload and "address" not in payload
