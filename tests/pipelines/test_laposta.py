"""Laposta steps against a local server that speaks Laposta API v2 (see shared FORMATS.md)."""

import base64
import json
import re
import threading
from datetime import date
from urllib.parse import quote, unquote

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from pipelines.laposta import LapostaClient, laposta_steps, payload_hash
from pipelines.models import LapostaSubscription
from pipelines.records import MemberRecord, ParentRecord
from runs.models import RunError, RunStep
from runs.pipeline import register, unregister
from runs.redact import clear_secret_cache
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "laposta-test-key-0123456789"
MEMBERS_LIST = "mbrs7kq2"
PARENTS_LIST = "prnt9xz4"


def _error(status, message, code, parameter=None, **extra):
    error = {"type": "invalid_input" if status == 400 else "invalid_request", "message": message, "code": code}
    if parameter:
        error["parameter"] = parameter
    error.update(extra)
    return Response(json.dumps({"error": error}), status=status, content_type="application/json")


class FakeLaposta:
    """The part of Laposta API v2 syncsite uses: basic auth, form bodies, upsert, delete."""

    def __init__(self):
        self.lists: dict[str, dict[str, dict]] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.faults: list[dict] = []
        self.next_id = 1

    def fail(self, *, status, email=None, times=1, headers=None, body=None):
        """Answer `times` matching requests (None: forever) with this status instead."""
        self.faults.append({"status": status, "email": email, "times": times, "headers": headers or {},
                            "body": body})

    def _fault(self, email):
        for fault in self.faults:
            if fault["email"] not in (None, email) or fault["times"] == 0:
                continue
            if fault["times"] is not None:
                fault["times"] -= 1
            body = fault["body"] or json.dumps(
                {"error": {"type": "internal", "message": f"Simulated HTTP {fault['status']}", "code": 999}})
            return Response(body, status=fault["status"], headers=fault["headers"], content_type="application/json")
        return None

    def __call__(self, request):
        auth = request.authorization
        if auth is None or auth.username != KEY or auth.password:
            return _error(401, "Invalid API key", 999)
        path = request.path.removeprefix("/v2")
        form = request.form.to_dict(flat=True)
        self.requests.append((request.method, path, form))
        if request.method == "POST" and path == "/member":
            email = form.get("email", "")
            fault = self._fault(email)
            if fault:
                return fault
            return self._post(form)
        match = re.fullmatch(r"/member/(.+)", path)
        if request.method == "DELETE" and match:
            key = unquote(match.group(1))
            fault = self._fault(key)
            if fault:
                return fault
            return self._delete(request.args.get("list_id", ""), key)
        if request.method == "GET" and path == "/member":
            members = self.lists.get(request.args.get("list_id", ""), {}).values()
            return Response(json.dumps({"data": [{"member": m} for m in members]}), content_type="application/json")
        return _error(404, "Unknown path", 999)

    def _post(self, form):
        list_id, email = form.get("list_id"), form.get("email", "")
        if not list_id or not form.get("ip"):
            return _error(400, "Field is required", 201, "list_id" if not list_id else "ip")
        if "@" not in email or email.startswith("@") or email.endswith("@"):
            return _error(400, "Email address is invalid", 208, "email")
        members = self.lists.setdefault(list_id, {})
        fields = {key[len("custom_fields["):-1]: value for key, value in form.items()
                  if key.startswith("custom_fields[")}
        existing = members.get(email)
        if existing is not None:
            if form.get("options[upsert]") != "true":
                return _error(400, "Email address exists", 204, "email", member_id=existing["member_id"])
            existing["custom_fields"] = fields
            return Response(json.dumps({"member": existing}), status=200, content_type="application/json")
        member = {"member_id": f"m{self.next_id:05d}", "list_id": list_id, "email": email, "state": "active",
                  "signup_date": "2026-01-01 10:00:00", "modified": None, "ip": form["ip"], "source_url": "",
                  "custom_fields": fields}
        self.next_id += 1
        members[email] = member
        return Response(json.dumps({"member": member}), status=201, content_type="application/json")

    def _delete(self, list_id, key):
        members = self.lists.get(list_id, {})
        for email, member in list(members.items()):
            if key in (email, member["member_id"]):
                del members[email]
                return Response(json.dumps({"member": {**member, "state": "deleted"}}),
                                content_type="application/json")
        return _error(400, "Unknown member", 203, "member_id")

    def sent(self, method=None):
        return [r for r in self.requests if method is None or r[0] == method]




@pytest.fixture
def fake(httpserver, settings):
    server = FakeLaposta()
    httpserver.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(server)
    settings.LAPOSTA_API_KEY = KEY
    settings.LAPOSTA_BASE_URL = httpserver.url_for("/v2")
    settings.LAPOSTA_MEMBERS_LIST_ID = MEMBERS_LIST
    settings.LAPOSTA_PARENTS_LIST_ID = PARENTS_LIST
    clear_secret_cache()
    yield server
    clear_secret_cache()


@pytest.fixture
def pipeline(sleeps, settings):
    """A pipeline that runs just the Laposta steps on the given records."""
    state = {}

    @register("laposta-test")
    def laposta_test(run):
        client = None
        if state.get("inject", True) and settings.LAPOSTA_API_KEY:
            client = LapostaClient.from_settings(sleep=sleeps, max_retries=state.get("retries", 2))
        laposta_steps(run, members=state["members"], parents=state["parents"], client=client)

    def run(members, parents=(), *, dry_run=False, **options):
        state.update(members=list(members), parents=list(parents), **options)
        return run_pipeline("laposta-test", dry_run=dry_run)

    yield run
    unregister("laposta-test")


def member(knvb_id, email, **kwargs):
    kwargs.setdefault("first_name", "Jan")
    kwargs.setdefault("last_name", "Jansen")
    return MemberRecord(knvb_id=knvb_id, email=email, **kwargs)


def three():
    return [
        member("AAA1111", "anna@example.nl", first_name="Anna", infix="van der", last_name="Berg",
               birth_date=date(2012, 5, 1), teams=["JO13-1"], gender="V"),
        member("BBB2222", "Bram@Example.nl ", first_name="Bram", birth_date=date(1990, 1, 1)),
        member("CCC3333", "cees@example.nl", first_name="Cees", birth_date=date(1985, 2, 2)),
    ]


def step(run, name):
    return RunStep.objects.get(run=run, name=name)


def counts(s):
    return (s.created, s.updated, s.skipped, s.failed)


def test_new_members_and_parents_are_created_with_their_custom_fields(fake, pipeline):
    parents = [ParentRecord(email="ouder.berg@example.nl", name="Petra van der Berg", phone="0612345678",
                            children=["AAA1111"])]
    run = pipeline(three(), parents)
    assert run.status == "success"
    prepare, submit = step(run, "laposta-prepare"), step(run, "laposta-submit")
    assert counts(prepare) == (4, 0, 0, 0)
    assert (submit.status, submit.read, submit.failed) == ("success", 4, 0)
    assert submit.detail == {"sent": 4, "deleted": 0}
    anna = fake.lists[MEMBERS_LIST]["anna@example.nl"]
    assert anna["custom_fields"]["voornaam"] == "Anna"
    assert anna["custom_fields"]["tussenvoegsel"] == "van der"
    assert anna["custom_fields"]["geboortedatum"] == "2012-05-01"
    assert anna["custom_fields"]["teams"] == "JO13-1"
    assert "bram@example.nl" in fake.lists[MEMBERS_LIST]  # normalised
    parent = fake.lists[PARENTS_LIST]["ouder.berg@example.nl"]
    assert parent["custom_fields"] == {"naam": "Petra van der Berg", "telefoon": "0612345678",
                                       "kinderen": "Anna van der Berg", "teams": "JO13-1"}
    # Every POST is an upsert with the list id and an ip, form-encoded.
    for _, path, form in fake.sent("POST"):
        assert path == "/member" and form["options[upsert]"] == "true" and form["ip"]
    sub = LapostaSubscription.objects.get(list_id=MEMBERS_LIST, email="anna@example.nl")
    assert sub.laposta_member_id == anna["member_id"]
    assert sub.payload_hash and sub.synced_at is not None


def test_a_second_run_sends_nothing_for_unchanged_members(fake, pipeline):
    pipeline(three())
    before = len(fake.requests)
    run = pipeline(three())
    assert run.status == "success"
    assert counts(step(run, "laposta-prepare")) == (0, 0, 3, 0)
    assert len(fake.requests) == before
    assert step(run, "laposta-submit").read == 0


def test_a_changed_member_is_updated_with_an_upsert(fake, pipeline):
    pipeline(three())
    old_hash = LapostaSubscription.objects.get(email="cees@example.nl").payload_hash
    changed = three()
    changed[2].teams = ["Veteranen"]
    run = pipeline(changed)
    assert counts(step(run, "laposta-prepare")) == (0, 1, 2, 0)
    (post,) = fake.sent("POST")[3:]
    assert post[2]["email"] == "cees@example.nl" and post[2]["custom_fields[teams]"] == "Veteranen"
    assert fake.lists[MEMBERS_LIST]["cees@example.nl"]["custom_fields"]["teams"] == "Veteranen"
    sub = LapostaSubscription.objects.get(list_id=MEMBERS_LIST, email="cees@example.nl")
    sent_fields = {k[len("custom_fields["):-1]: v for k, v in post[2].items() if k.startswith("custom_fields[")}
    assert sub.payload_hash == payload_hash("cees@example.nl", sent_fields) != old_hash
    assert LapostaSubscription.objects.count() == 3


def test_a_member_who_left_is_deleted_from_the_list(fake, pipeline):
    pipeline(three())
    run = pipeline(three()[:2])
    prepare, submit = step(run, "laposta-prepare"), step(run, "laposta-submit")
    assert prepare.detail["to_delete"] == 1
    assert submit.detail == {"sent": 0, "deleted": 1}
    (delete,) = fake.sent("DELETE")
    assert delete[1].startswith("/member/m")  # by the stored Laposta member id
    assert "cees@example.nl" not in fake.lists[MEMBERS_LIST]
    assert not LapostaSubscription.objects.filter(email="cees@example.nl").exists()


def test_a_member_already_gone_from_laposta_is_forgotten_without_an_error(fake, pipeline):
    pipeline(three())
    del fake.lists[MEMBERS_LIST]["cees@example.nl"]  # removed by hand in Laposta
    run = pipeline(three()[:2])
    assert run.status == "success"
    assert not LapostaSubscription.objects.filter(email="cees@example.nl").exists()


def test_an_invalid_email_is_an_error_for_that_member_and_the_rest_go_on(fake, pipeline):
    members = [*three(), member("DDD4444", "not-an-email")]
    run = pipeline(members)
    assert run.status == "partial"
    assert counts(step(run, "laposta-prepare")) == (3, 0, 0, 1)
    (error,) = RunError.objects.filter(run=run)
    assert (error.identifier, error.identifier_kind, error.step_name) == ("DDD4444", "knvb_id", "laposta-prepare")
    assert "not-an-email" in error.message
    assert len(fake.lists[MEMBERS_LIST]) == 3


def test_laposta_refusing_a_member_is_an_error_with_its_message(fake, pipeline):
    fake.fail(status=400, email="cees@example.nl", body=json.dumps(
        {"error": {"type": "invalid_input", "message": "Email address is on the suppression list", "code": 999,
                   "parameter": "email"}}))
    run = pipeline(three())
    assert run.status == "partial"
    submit = step(run, "laposta-submit")
    assert (submit.status, submit.failed) == ("partial", 1)
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "CCC3333"
    assert "Email address is on the suppression list" in error.message
    assert "HTTP 400" in error.message
    # The refused one is not remembered, so the next run tries it again.
    assert not LapostaSubscription.objects.filter(email="cees@example.nl").exists()
    run = pipeline(three())
    assert counts(step(run, "laposta-prepare")) == (1, 0, 2, 0)
    assert run.status == "success"


def test_a_429_is_retried_after_retry_after(fake, pipeline, sleeps):
    fake.fail(status=429, times=1, headers={"Retry-After": "13"})
    run = pipeline(three())
    assert run.status == "success"
    assert sleeps == [13.0]
    assert len(fake.lists[MEMBERS_LIST]) == 3


def test_a_500_then_success_is_retried(fake, pipeline, sleeps):
    fake.fail(status=500, email="anna@example.nl", times=2)
    run = pipeline(three())
    assert run.status == "success"
    assert sleeps == [1.0, 2.0]
    assert len(fake.lists[MEMBERS_LIST]) == 3


def test_a_500_forever_fails_that_member_and_the_rest_go_on(fake, pipeline, sleeps):
    fake.fail(status=500, email="bram@example.nl", times=None)
    run = pipeline(three())
    assert run.status == "partial"
    submit = step(run, "laposta-submit")
    assert (submit.status, submit.read, submit.failed) == ("partial", 3, 1)
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "BBB2222"
    assert "HTTP 500" in error.message and "Simulated HTTP 500" in error.message
    assert sorted(fake.lists[MEMBERS_LIST]) == ["anna@example.nl", "cees@example.nl"]
    assert sleeps == [1.0, 2.0]


def test_a_401_fails_the_step_with_a_credentials_message_without_the_key(fake, pipeline, settings):
    settings.LAPOSTA_API_KEY = "wrong-key-9876543210"
    clear_secret_cache()
    run = pipeline(three())
    # laposta-submit is not critical: the registry sync after it still runs,
    # and the run ends partial (which alerts) instead of failed.
    assert run.status == "partial"
    submit = step(run, "laposta-submit")
    assert submit.status == "failed"
    assert "credentials are wrong" in submit.reason
    assert "LAPOSTA_API_KEY" in submit.reason
    assert "wrong-key-9876543210" not in submit.reason
    errors = list(RunError.objects.filter(run=run))
    assert any("credentials are wrong" in error.message for error in errors)
    for error in errors:
        assert "wrong-key-9876543210" not in error.message + error.traceback
    assert len(fake.requests) == 0
    assert not LapostaSubscription.objects.exists()


def test_what_was_sent_before_a_401_is_remembered(fake, pipeline, sleeps):
    fake.fail(status=401, email="cees@example.nl")
    # Members are sent oldest first: Cees (1985), Bram (1990), Anna (2012).
    members = three()
    run = pipeline(members)
    assert step(run, "laposta-submit").status == "failed"
    assert LapostaSubscription.objects.count() == 0  # Cees came first and failed: nothing after
    fake.faults.clear()
    fake.fail(status=401, email="anna@example.nl")
    run = pipeline(members)
    assert step(run, "laposta-submit").status == "failed"
    assert sorted(LapostaSubscription.objects.values_list("email", flat=True)) == [
        "bram@example.nl", "cees@example.nl"]


def test_a_timeout_is_retried_then_fails_that_member(fake, pipeline, sleeps, settings):
    settings.HTTP_TIMEOUT_S = 0.05

    release = threading.Event()
    original = fake.__call__

    class Slow:
        def __call__(self, request):
            if request.form.get("email") == "bram@example.nl":
                release.wait(0.3)  # bounded: longer than the client's timeout
            return original(request)

    fake_handler = Slow()
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(fake_handler)
    server.start()
    try:
        settings.LAPOSTA_BASE_URL = server.url_for("/v2")
        run = pipeline(three(), retries=1)
    finally:
        release.set()
        server.clear()
        server.stop()
    assert run.status == "partial"
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "BBB2222"
    assert "no answer within 0.05 s" in error.message
    assert sleeps == [1.0]
    assert LapostaSubscription.objects.filter(email="anna@example.nl").exists()


def test_dry_run_counts_and_sends_nothing(fake, pipeline):
    run = pipeline(three(), dry_run=True)
    assert run.status == "success"
    assert counts(step(run, "laposta-prepare")) == (3, 0, 0, 0)
    submit = step(run, "laposta-submit")
    assert submit.status == "skipped"
    assert "Dry run" in submit.reason
    assert fake.requests == []
    assert not LapostaSubscription.objects.exists()


def test_not_configured_both_steps_are_skipped_with_the_reason(fake, pipeline, settings):
    settings.LAPOSTA_API_KEY = ""
    run = pipeline(three())
    assert (run.status, run.message) == ("skipped", "Not configured: LAPOSTA_API_KEY is not set.")
    for name in ("laposta-prepare", "laposta-submit"):
        s = step(run, name)
        assert (s.status, s.reason) == ("skipped", "LAPOSTA_API_KEY is not set")
    assert fake.requests == []


def test_without_list_ids_the_reason_names_the_variables(fake, pipeline, settings):
    settings.LAPOSTA_MEMBERS_LIST_ID = ""
    settings.LAPOSTA_PARENTS_LIST_ID = ""
    run = pipeline(three())
    s = step(run, "laposta-prepare")
    assert s.status == "skipped"
    assert "LAPOSTA_MEMBERS_LIST_ID" in s.reason and "LAPOSTA_PARENTS_LIST_ID" in s.reason


def test_only_the_configured_list_is_synced(fake, pipeline, settings):
    settings.LAPOSTA_PARENTS_LIST_ID = ""
    run = pipeline(three(), [ParentRecord(email="ouder@example.nl", children=["AAA1111"])])
    prepare = step(run, "laposta-prepare")
    assert counts(prepare) == (3, 0, 0, 0)
    assert "LAPOSTA_PARENTS_LIST_ID is not set" in prepare.detail["parents_list"]
    assert PARENTS_LIST not in fake.lists


def test_siblings_sharing_an_email_are_one_laposta_member(fake, pipeline):
    members = [
        member("KID0001", "gezin@example.nl", first_name="Kim", birth_date=date(2014, 1, 1)),
        member("KID0002", "gezin@example.nl", first_name="Lars", birth_date=date(2011, 1, 1)),
    ]
    run = pipeline(members)
    assert run.status == "success"
    assert fake.lists[MEMBERS_LIST]["gezin@example.nl"]["custom_fields"]["voornaam"] == "Lars"
    assert step(run, "laposta-prepare").detail["shared_email"] == 1
    run = pipeline(list(reversed(members)))  # export order does not flip the payload
    assert counts(step(run, "laposta-prepare")) == (0, 0, 1, 0)


def test_an_export_without_parents_does_not_empty_the_parents_list(fake, pipeline):
    pipeline(three(), [ParentRecord(email="ouder@example.nl", name="Ouder", children=["AAA1111"])])
    run = pipeline(three(), [])
    assert fake.sent("DELETE") == []
    assert "withheld" in step(run, "laposta-prepare").detail
    assert "ouder@example.nl" in fake.lists[PARENTS_LIST]


def test_the_registry_links_are_stored_when_the_member_exists(fake, pipeline):
    from pipelines.models import Member, Parent

    anna = Member.objects.create(knvb_id="AAA1111", first_name="Anna", email="anna@example.nl")
    parent = Parent.objects.create(email="ouder@example.nl", name="Ouder")
    pipeline(three(), [ParentRecord(email="ouder@example.nl", name="Ouder", children=["AAA1111"])])
    assert LapostaSubscription.objects.get(email="anna@example.nl").member_id == anna.pk
    assert LapostaSubscription.objects.get(list_id=PARENTS_LIST).parent_id == parent.pk


def test_a_base_url_that_is_not_the_api_fails_the_step(fake, pipeline, httpserver, settings):
    httpserver.expect_request("/not-laposta/member").respond_with_data("<html>Welkom</html>",
                                                                       content_type="text/html")
    settings.LAPOSTA_BASE_URL = httpserver.url_for("/not-laposta")
    run = pipeline(three())
    submit = step(run, "laposta-submit")
    assert submit.status == "failed"
    assert "LAPOSTA_BASE_URL" in submit.reason
    assert not LapostaSubscription.objects.exists()


def test_people_links_the_subscriptions_of_its_first_run_to_the_registry(export_dir, fake):
    # laposta-submit comes before rondo-club-sync: on the first run the members
    # are not in the registry yet when their subscriptions are stored.
    run = run_pipeline("people")
    assert step(run, "laposta-submit").status in ("success", "partial")
    subscriptions = LapostaSubscription.objects.all()
    assert subscriptions.exists()
    members = subscriptions.filter(list_id=MEMBERS_LIST)
    parents = subscriptions.filter(list_id=PARENTS_LIST)
    assert members.exists() and not members.filter(member__isnull=True).exists()
    assert parents.exists() and not parents.filter(parent__isnull=True).exists()
    sample = members.select_related("member").first()
    assert sample.member.email.lower() == sample.email
    assert step(run, "rondo-club-sync").detail["laposta_links"] == subscriptions.count()


def test_a_server_that_echoes_the_key_encoded_stores_no_form_of_it(httpserver, pipeline, settings):
    """The HTTP stand-in echoes the Basic-auth header value (base64 of "key:") and
    the URL-encoded key back in its error, without any keyword near them."""
    key = "echo+key/0123456789=="

    def echo(request):
        basic = request.headers.get("Authorization", "").removeprefix("Basic ")
        body = {"error": {"type": "invalid_input", "code": 999, "parameter": "email",
                          "message": f"Rejected {basic} for {request.form.get('email')} via "
                                     f"/v2/member?account={quote(key, safe='')}"}}
        return Response(json.dumps(body), status=400, content_type="application/json")

    httpserver.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(echo)
    settings.LAPOSTA_API_KEY = key
    settings.LAPOSTA_BASE_URL = httpserver.url_for("/v2")
    settings.LAPOSTA_MEMBERS_LIST_ID = MEMBERS_LIST
    settings.LAPOSTA_PARENTS_LIST_ID = PARENTS_LIST
    clear_secret_cache()
    try:
        run = pipeline(three()[:1])
    finally:
        clear_secret_cache()
    (error,) = RunError.objects.filter(run=run)
    stored = error.message + error.traceback
    assert "Rejected ***" in stored and "anna@example.nl" in stored  # the echo arrived, masked
    basic = base64.b64encode(f"{key}:".encode()).decode()
    for form in (key, quote(key, safe=""), basic, basic.rstrip("=")):
        assert form not in stored
