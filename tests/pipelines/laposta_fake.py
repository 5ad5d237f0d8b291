"""A local stand-in for Laposta API v2 and the fixtures the Laposta tests share."""


import json
import re
from datetime import date
from urllib.parse import unquote

import pytest
from werkzeug import Response

from pipelines.laposta import LapostaClient, laposta_steps
from pipelines.records import MemberRecord
from runs.models import RunStep
from runs.pipeline import register, unregister
from runs.redact import clear_secret_cache
from runs.runner import run_pipeline

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
