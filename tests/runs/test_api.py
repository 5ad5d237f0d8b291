import re
from datetime import UTC, datetime, timedelta
from functools import cache
from urllib.parse import urlsplit

import pytest
import yaml
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django.utils.crypto import get_random_string
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from runs.api import OPENAPI_FILE
from runs.models import ApiToken, Run, RunError, RunStep

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


# --- the OpenAPI file as a response validator ---------------------------------------


@cache
def spec() -> dict:
    return yaml.safe_load(OPENAPI_FILE.read_text())


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = spec()["components"][section][name]
    return node


def _operation(path: str, method: str) -> tuple[str, dict]:
    """The spec's path template matching a concrete request path."""
    for template, item in spec()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in runs/openapi.yaml")


def assert_matches_spec(response, method="GET"):
    path = urlsplit(response.wsgi_request.get_full_path()).path
    template, operation = _operation(path, method)
    responses = operation["responses"]
    assert str(response.status_code) in responses, f"{response.status_code} undocumented for {method} {template}"
    content = _resolve(responses[str(response.status_code)])["content"]
    assert response["Content-Type"].startswith("application/json") and "application/json" in content
    schema = content["application/json"]["schema"]
    registry = Registry().with_resource("urn:syncsite:openapi", Resource.from_contents(spec(), DRAFT202012))
    if "$ref" in schema:
        schema = {"$ref": "urn:syncsite:openapi" + schema["$ref"]}
    else:
        schema = {**schema, "$id": "urn:syncsite:inline"}
        schema = _absolutize(schema)
    Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        response.json()
    )
    return response.json()


def _absolutize(node):
    if isinstance(node, dict):
        return {k: ("urn:syncsite:openapi" + v if k == "$ref" and v.startswith("#") else _absolutize(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_absolutize(v) for v in node]
    return node


# --- fixtures ----------------------------------------------------------------------------


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))


@pytest.fixture
def staff():
    """A staff member with the read permissions a volunteer gets (no trigger)."""
    user = User.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    grant(user, "view_run", "view_runerror")
    return user


@pytest.fixture
def token(staff):
    raw = ApiToken.generate()
    obj = ApiToken(user=staff, name="monitor")
    obj.set_token(raw)
    obj.save()
    return raw


@pytest.fixture
def api(token):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def make_run(pipeline="clean", status="success", *, started_at=T0, **fields):
    return Run.objects.create(pipeline=pipeline, status=status, started_at=started_at,
                              finished_at=None if status == "running" else started_at + timedelta(seconds=5),
                              duration_ms=None if status == "running" else 5000, **fields)


# --- authentication ----------------------------------------------------------------------

ENDPOINTS = ["/api/pipelines/", "/api/runs/", "/api/runs/1/", "/api/runs/1/errors/"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_without_credentials_every_endpoint_is_401(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_matches_spec(response)


@pytest.mark.parametrize("header", ["Bearer sst_not-a-real-token", "Bearer ", "Basic dXNlcjpwdw==", "sst_abc"])
def test_a_bad_or_malformed_token_is_401(client, header):
    response = client.get("/api/runs/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert_matches_spec(response)


def test_a_revoked_token_is_401(client, token):
    ApiToken.objects.update(revoked_at=timezone.now())
    response = client.get("/api/runs/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401 and "revoked" in response.json()["error"]


def test_a_token_of_a_user_who_is_no_longer_staff_is_401(client, token, staff):
    staff.is_staff = False
    staff.save()
    assert client.get("/api/runs/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_a_valid_token_works_and_is_stored_only_hashed(api, token):
    response = api.get("/api/runs/")
    assert response.status_code == 200
    stored = ApiToken.objects.get()
    assert stored.last_used_at is not None
    assert token not in (stored.token_hash, stored.prefix) and stored.token_hash == ApiToken.hash(token)


def test_a_staff_session_works_but_a_non_staff_session_does_not(client, staff):
    User.objects.create_user("member", password="pw-member-123")
    client.login(username="member", password="pw-member-123")
    assert client.get("/api/runs/").status_code == 401
    client.login(username="staff", password="pw-staff-123")
    assert client.get("/api/runs/").status_code == 200


def test_the_api_is_read_only(api):
    response = api.post("/api/runs/")
    assert response.status_code == 405 and response["Allow"] == "GET"


# --- starting a run ----------------------------------------------------------------------


def test_starting_a_run_needs_the_trigger_permission(api, staff):
    response = api.post("/api/pipelines/clean/run/")
    assert response.status_code == 403
    assert_matches_spec(response, "POST")
    staff.user_permissions.add(Permission.objects.get(codename="trigger_run"))
    response = api.post("/api/pipelines/clean/run/")
    assert response.status_code == 202
    body = assert_matches_spec(response, "POST")
    assert body["queued"] is True


def test_starting_a_running_pipeline_is_409_and_names_the_run(api, staff):
    staff.user_permissions.add(Permission.objects.get(codename="trigger_run"))
    running = make_run(status="running", started_at=timezone.now())
    response = api.post("/api/pipelines/clean/run/")
    assert response.status_code == 409
    assert assert_matches_spec(response, "POST")["running_run_id"] == running.pk


def test_starting_an_unknown_pipeline_is_404(api, staff):
    staff.user_permissions.add(Permission.objects.get(codename="trigger_run"))
    response = api.post("/api/pipelines/nope/run/")
    assert response.status_code == 404
    assert_matches_spec(response, "POST")


def test_a_session_post_needs_the_csrf_token_but_a_token_post_does_not(staff, token):
    staff.user_permissions.add(Permission.objects.get(codename="trigger_run"))
    session = Client(enforce_csrf_checks=True)
    session.login(username="staff", password="pw-staff-123")
    response = session.post("/api/pipelines/clean/run/")
    assert response.status_code == 403 and "CSRF" in response.json()["error"]
    csrf = get_random_string(32)  # what the csrftoken cookie of a dashboard page holds
    session.cookies["csrftoken"] = csrf
    assert session.post("/api/pipelines/clean/run/", HTTP_X_CSRFTOKEN=csrf).status_code == 202
    with_token = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert with_token.post("/api/pipelines/clean/run/").status_code == 202


# --- shapes and pagination ---------------------------------------------------------------


def test_pipelines_list_matches_the_spec(api):
    make_run("clean", "success")
    body = assert_matches_spec(api.get("/api/pipelines/"))
    by_name = {p["name"]: p for p in body["results"]}
    assert by_name["clean"]["last_run"]["status"] == "success"
    assert by_name["sample"]["schedule"] == "0 8 * * *" and by_name["sample"]["next_run"]
    assert by_name["boom"]["last_run"] is None and by_name["boom"]["state"] == "never_run"


def test_runs_are_cursor_paginated_newest_first_without_gaps_or_repeats(api):
    runs = [make_run(started_at=T0 + timedelta(minutes=i // 2)) for i in range(7)]  # equal timestamps in pairs
    seen, url, pages = [], "/api/runs/?limit=3", 0
    while url:
        body = assert_matches_spec(api.get(url))
        seen += [r["id"] for r in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3
    expected = [r.pk for r in sorted(runs, key=lambda r: (r.started_at, r.pk), reverse=True)]
    assert seen == expected


def test_runs_filter_by_pipeline_status_and_since(api):
    make_run("clean", "success", started_at=T0)
    hit = make_run("boom", "failed", started_at=T0 + timedelta(days=2))
    make_run("boom", "failed", started_at=T0 - timedelta(days=2))
    make_run("boom", "success", started_at=T0 + timedelta(days=3))
    body = assert_matches_spec(api.get("/api/runs/", {"pipeline": "boom", "status": "failed", "since": "2025-03-11"}))
    assert [r["id"] for r in body["results"]] == [hit.pk]
    since = (T0 + timedelta(days=2)).isoformat()
    body = api.get("/api/runs/", {"pipeline": "boom", "since": since}).json()
    assert len(body["results"]) == 2


@pytest.mark.parametrize("query", ["status=bogus", "since=yesterday", "cursor=%%%", "cursor=WzFd", "limit=0",
                                   "limit=x"])
def test_bad_parameters_are_400(api, query):
    response = api.get(f"/api/runs/?{query}")
    assert response.status_code == 400
    assert_matches_spec(response)


def test_run_detail_has_its_steps_and_matches_the_spec(api):
    run = make_run("sample", "partial", created=2, failed=1, error_count=1, summary={"note": "x"})
    RunStep.objects.create(run=run, position=0, name="sample-download", status="success", read=3)
    RunStep.objects.create(run=run, position=1, name="sample-sync", status="partial", created=2, failed=1, total=3)
    body = assert_matches_spec(api.get(f"/api/runs/{run.pk}/"))
    assert [s["name"] for s in body["steps"]] == ["sample-download", "sample-sync"]
    assert body["url"].endswith(f"/runs/{run.pk}/") and body["summary"] == {"note": "x"}
    assert assert_matches_spec(api.get("/api/runs/999999/")) == {"error": "No run #999999."}


def test_run_errors_are_paginated_and_match_the_spec(api):
    run = make_run("sample", "partial", error_count=5)
    step = RunStep.objects.create(run=run, position=0, name="sample-sync", status="partial")
    RunError.objects.bulk_create(
        RunError(run=run, step=step, step_name="sample-sync", identifier=f"AB{i:05d}", identifier_kind="knvb_id",
                 message=f"bad {i}") for i in range(5)
    )
    first = assert_matches_spec(api.get(f"/api/runs/{run.pk}/errors/?limit=3"))
    second = assert_matches_spec(api.get(first["next"]))
    assert [e["identifier"] for e in first["results"] + second["results"]] == [f"AB{i:05d}" for i in range(5)]
    assert second["next"] is None and first["error_count"] == 5
    assert assert_matches_spec(api.get(f"/api/runs/{run.pk}/errors/?step={step.pk + 1}"))["results"] == []


def test_health_responses_match_the_spec(client):
    assert_matches_spec(client.get("/health/"))
    assert_matches_spec(client.get("/health/pipelines/"))


def test_every_api_route_is_described_in_the_spec():
    def routes(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from routes(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and p.name != "not-found":  # the JSON 404 for other paths
                yield prefix + str(p.pattern)

    def shape(path):
        return re.sub(r"<(?:\w+:)?\w+>|\{\w+\}", "{}", path)

    ours = {shape("/" + r) for r in routes(get_resolver().url_patterns) if r.startswith(("api/", "health/"))}
    ours.discard("/api/openapi.yaml")
    assert ours == {shape(p) for p in spec()["paths"]}


def test_the_spec_is_served_without_login(client):
    response = client.get("/api/openapi.yaml")
    assert response.status_code == 200
    assert yaml.safe_load(b"".join(response.streaming_content))["openapi"].startswith("3.1")


def test_the_admin_creates_a_token_shows_it_once_and_revokes_it(client, staff):
    User.objects.create_superuser("root", password="pw-root-123")
    client.login(username="root", password="pw-root-123")
    response = client.post("/admin/runs/apitoken/add/", {"name": "uptime monitor", "user": staff.pk})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    raw = re.search(r'value="(sst_[^"]+)"', response.content.decode()).group(1)
    token = ApiToken.objects.get()
    assert token.token_hash == ApiToken.hash(raw) and raw.startswith(token.prefix)
    assert raw not in client.get(f"/admin/runs/apitoken/{token.pk}/change/").content.decode()
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/runs/").status_code == 200

    client.post("/admin/runs/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/runs/").status_code == 401
