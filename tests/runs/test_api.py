import re
from datetime import UTC, datetime, timedelta
from functools import cache
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import time_machine
import yaml
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django.utils.crypto import get_random_string
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from runs.api import OPENAPI_FILE, ApiError, _parse_since
from runs.models import ApiToken, RecordProblem, Run, RunError, RunStep

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SINCE_VALIDATOR = jsonschema_rs.validator_for(
    [p for p in yaml.safe_load(OPENAPI_FILE.read_text())["paths"]["/api/runs/"]["get"]["parameters"]
     if p.get("name") == "since"][0]["schema"], validate_formats=True)


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

ENDPOINTS = ["/api/pipelines/", "/api/runs/", "/api/runs/1/", "/api/runs/1/errors/", "/api/problems/"]


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


# --- least privilege: model permissions, token expiry ------------------------------------


@pytest.fixture
def bare_api():
    """A token whose user is staff but has no permissions at all."""
    user = User.objects.create_user("bare", is_staff=True)
    raw = ApiToken.generate()
    token = ApiToken(user=user, name="bare")
    token.set_token(raw)
    token.save()
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}"), user


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_staff_token_without_view_permissions_gets_403_json(bare_api, path):
    client, _ = bare_api
    make_run()
    response = client.get(path)
    assert response.status_code == 403
    assert "runs.view_run" in assert_matches_spec(response)["error"]


def test_errors_need_view_runerror_on_top_of_view_run(bare_api):
    client, user = bare_api
    run = make_run()
    grant(user, "view_run")
    assert client.get(f"/api/runs/{run.pk}/").status_code == 200
    response = client.get(f"/api/runs/{run.pk}/errors/")
    assert response.status_code == 403
    assert assert_matches_spec(response)["error"].startswith("Permission runs.view_runerror required")
    grant(user, "view_runerror")
    user = User.objects.get(pk=user.pk)  # has_perm caches per user object; the API loads it per request
    assert client.get(f"/api/runs/{run.pk}/errors/").status_code == 200


def test_a_group_grants_the_permissions_like_in_the_admin(bare_api):
    from django.contrib.auth.models import Group

    client, user = bare_api
    volunteers = Group.objects.create(name="Volunteers")
    volunteers.permissions.add(*Permission.objects.filter(codename__in=["view_run", "view_runerror"]))
    user.groups.add(volunteers)
    assert client.get("/api/runs/").status_code == 200
    assert client.post("/api/pipelines/clean/run/").status_code == 403


def test_an_expired_token_is_401_and_a_token_expiring_later_works(client, token):
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        ApiToken.objects.update(expires_at=now + timedelta(hours=1))
        assert client.get("/api/runs/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
        assert ApiToken.objects.get().is_active
    with time_machine.travel(now + timedelta(hours=1), tick=False):
        response = client.get("/api/runs/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert not ApiToken.objects.get().is_active
    assert response.status_code == 401 and "expired" in assert_matches_spec(response)["error"]


def test_last_used_at_is_written_at_most_once_a_minute(api):
    with time_machine.travel(T0, tick=False):
        api.get("/api/runs/")
        assert ApiToken.objects.get().last_used_at == T0
    with time_machine.travel(T0 + timedelta(seconds=30), tick=False):
        api.get("/api/runs/")
        assert ApiToken.objects.get().last_used_at == T0
    with time_machine.travel(T0 + timedelta(minutes=2), tick=False):
        api.get("/api/runs/")
        assert ApiToken.objects.get().last_used_at == T0 + timedelta(minutes=2)


def test_the_admin_sets_and_shows_the_expiry_and_last_use(client, staff, token):
    User.objects.create_superuser("root", password="pw-root-123")
    client.login(username="root", password="pw-root-123")
    response = client.post("/admin/runs/apitoken/add/", {"name": "script", "user": staff.pk,
                                                         "expires_at_0": "2031-01-31", "expires_at_1": "08:00:00"})
    assert response.status_code == 200
    created = ApiToken.objects.get(name="script")
    assert created.expires_at == datetime(2031, 1, 31, 7, 0, tzinfo=UTC)  # entered in Europe/Amsterdam
    ApiToken.objects.filter(name="monitor").update(last_used_at=T0)
    monitor = ApiToken.objects.get(name="monitor")
    page = client.get(f"/admin/runs/apitoken/{monitor.pk}/change/").content.decode()
    assert 'name="expires_at_0"' in page and "Last used at" in page and "2025" in page
    response = client.post(f"/admin/runs/apitoken/{monitor.pk}/change/", {
        "name": "monitor", "expires_at_0": "2020-01-01", "expires_at_1": "00:00:00"})
    assert response.status_code == 302
    assert Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/runs/").status_code == 401
    listing = client.get("/admin/runs/apitoken/").content.decode()
    assert "Expires at" in listing and "Last used at" in listing


# --- every answer under /api/ is JSON ------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/", "/api/nope/", "/api/runs/abc/", "/api/runs/-1/", "/api/pipelines//run/",
                                  "/api/runs/1/errors/x/"])
def test_an_unknown_api_path_is_a_json_404_for_every_method(api, path):
    for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
        response = api.generic(method, path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", method
        assert "No API endpoint" in response.json()["error"]


def test_a_missing_trailing_slash_is_a_json_404_with_a_hint(api):
    response = api.get("/api/runs")
    assert response.status_code == 404
    assert "Did you mean /api/runs/ ?" in response.json()["error"]


@pytest.mark.parametrize("suffix", ["", "errors/"])
def test_an_unknown_run_id_is_a_json_404(api, suffix):
    for pk in ("999999", "0", "9223372036854775807", "9223372036854775808", "363006319259878096896" * 3):
        response = api.get(f"/api/runs/{pk}/{suffix}")
        assert response.status_code == 404
        assert assert_matches_spec(response)["error"].startswith("No run #")


@pytest.mark.parametrize(("path", "allowed"), [("/api/pipelines/", "GET"), ("/api/runs/", "GET"),
                                               ("/api/runs/1/", "GET"), ("/api/runs/1/errors/", "GET"),
                                               ("/api/problems/", "GET"),
                                               ("/api/pipelines/clean/run/", "POST")])
def test_an_undeclared_method_is_405_json_with_allow(api, path, allowed):
    for method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "QUERY"} - {allowed}:
        response = api.generic(method, path)
        assert response.status_code == 405 and response["Allow"] == allowed, method
        assert response["Content-Type"] == "application/json"
        if method != "HEAD":
            assert allowed in response.json()["error"]


@pytest.mark.parametrize("path", ["/health/", "/health/pipelines/"])
def test_the_health_endpoints_answer_405_to_undeclared_methods(path):
    for method in ("POST", "PUT", "DELETE", "QUERY"):
        response = Client(enforce_csrf_checks=True).generic(method, path)
        assert response.status_code == 405 and response["Allow"] == "GET", method


def test_an_unexpected_failure_is_a_json_500_that_tells_nothing_about_the_internals(api, caplog):
    from django.db import connection

    run = make_run()
    with connection.cursor() as cursor:  # the errors table is gone: the query fails (rolled back after the test)
        cursor.execute("ALTER TABLE runs_runerror RENAME TO runs_runerror_gone")
    response = api.get(f"/api/runs/{run.pk}/errors/")
    assert response.status_code == 500
    body = assert_matches_spec(response)
    assert body == {"error": "Internal error; it was logged for the administrator."}
    assert any(r.name == "runs.api" and r.exc_info for r in caplog.records)


# --- parameters: the server enforces exactly what the spec declares -------------------------

HOSTILE = ["", "99999999999999999999", "9" * 5000, "-1", "0", "NaN", "nan", "Infinity", "-Infinity", "1e999",
           "1.5", "0x10", "1_0", " 1", "1\x00", "\x00", "%00", "٣", "null", "true", "[]", "{}", "1;DROP TABLE x",
           "2025-02-30", "2025-13-01", "2025-01-01 08:00:00", "2025-01-01T25:00:00Z", "2025-01-01T08:00:00",
           "2025-01-01T08:00:00+24:00", "2025-01-01T12:59:60Z", "yesterday",
           "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")]


@pytest.mark.parametrize("name", ["limit", "status", "since", "cursor", "pipeline"])
def test_hostile_runs_parameters_get_400_with_a_message_never_500(api, name):
    make_run()
    for value in HOSTILE:
        response = api.get("/api/runs/", {name: value})
        # 200 only for a value of the declared shape (e.g. a pipeline named "nan").
        assert response.status_code in (200, 400), (value, response.content)
        body = assert_matches_spec(response)
        assert response.status_code == 200 or name in body["error"]


@pytest.mark.parametrize("name", ["limit", "step", "cursor"])
def test_hostile_error_list_parameters_get_400_never_500(api, name):
    run = make_run()
    for value in HOSTILE:
        response = api.get(f"/api/runs/{run.pk}/errors/", {name: value})
        # 200 only for a value of the declared shape (e.g. a pipeline named "nan").
        assert response.status_code in (200, 400), (value, response.content)
        body = assert_matches_spec(response)
        assert response.status_code == 200 or name in body["error"]


@pytest.mark.parametrize("query", ["status=", "pipeline=", "since=", "cursor=", "limit=", "step=0",
                                   "step=9223372036854775808", "step=363006319259878096896", "limit=201",
                                   "limit=1&limit=2", "status=success&status=failed"])
def test_empty_out_of_range_and_repeated_values_are_400(api, query):
    run = make_run()
    path = f"/api/runs/{run.pk}/errors/" if "step" in query else "/api/runs/"
    response = api.get(f"{path}?{query}")
    assert response.status_code == 400, response.content
    assert assert_matches_spec(response)["error"]


@pytest.mark.parametrize(("since", "expected"), [
    ("2025-03-10", 2),                      # midnight in Amsterdam: 2025-03-09T23:00Z
    ("2025-03-10T12:00:00Z", 2),
    ("2025-03-10t12:00:00.000001z", 1),     # RFC 3339 allows lower case t and z
    ("2025-03-10T13:00:00+01:00", 2),
    ("2025-03-09T23:59:60Z", 2),            # a leap second: only the last second of a UTC day
    ("2025-03-10T00:59:60+01:00", 2),
    ("0000-01-01", 3),                      # before anything Python can hold: everything
    ("0001-01-01T00:00:00+23:59", 3),
    ("9999-12-31T23:59:59-23:59", 0),       # after anything Python can hold: nothing
    ("9999-12-31", 0),
])
def test_since_takes_every_rfc3339_date_and_date_time(api, since, expected):
    make_run(started_at=T0 - timedelta(days=30))
    make_run(started_at=T0)
    make_run(started_at=T0 + timedelta(microseconds=1))
    body = assert_matches_spec(api.get("/api/runs/", {"since": since}))
    assert len(body["results"]) == expected


_TWO = st.integers(0, 99).map("{:02d}".format)
_DATE_TIMES = st.builds(
    "{:04d}-{}-{}{}{}:{}:{}{}{}".format,
    st.integers(0, 9999), _TWO, _TWO, st.sampled_from("Tt "), st.sampled_from(["23", "00"]) | _TWO,
    st.sampled_from(["59", "00"]) | _TWO, st.sampled_from(["00", "59", "60", "61"]) | _TWO,
    st.sampled_from(["", ".5", ".1234567", "."]),
    st.sampled_from(["Z", "z", "", "+00:00"]) | st.builds("{}{}:{}".format, st.sampled_from("+-"), _TWO, _TWO),
)


@settings(max_examples=3000, derandomize=True, deadline=None)
@given(st.one_of(_DATE_TIMES, _DATE_TIMES.map(lambda s: s[:10]), st.text(max_size=30)))
def test_since_accepts_exactly_what_the_spec_declares(value):
    """Server and spec agree on every string: the spec's `anyOf: [date, date-time]`
    as schemathesis's validator reads it, and the server's parser."""
    spec_says = SINCE_VALIDATOR.is_valid(value)
    try:
        _parse_since(value)
        server_says = True
    except ApiError:
        server_says = False
    assert server_says == spec_says, value


@pytest.mark.parametrize("cursor", ["0_0", "-0_0", "9999999999999999999_9999999999999999999",
                                    "-9999999999999999999_1", "1741608000000000_1"])
def test_every_cursor_of_the_declared_shape_is_a_position(api, cursor):
    make_run()
    body = assert_matches_spec(api.get("/api/runs/", {"cursor": cursor}))
    assert isinstance(body["results"], list)


@pytest.mark.parametrize("started", [
    datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),  # before 1970: a negative cursor
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 0, 0, 999999, tzinfo=UTC),
    T0 + timedelta(microseconds=1),
])
def test_cursors_handed_out_are_always_accepted_back(api, started):
    runs = [make_run(started_at=started) for _ in range(3)] + [make_run(started_at=T0) for _ in range(2)]
    seen, url = [], "/api/runs/?limit=2"
    while url:
        body = assert_matches_spec(api.get(url))
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(r.pk for r in runs) and len(seen) == len(set(seen))


# --- queries: no N+1 ------------------------------------------------------------------------


def test_lists_cost_the_same_queries_for_one_row_or_fifty(api, django_assert_max_num_queries):
    run = make_run()
    step = RunStep.objects.create(run=run, position=0, name="sync", status="partial")
    for n in (1, 50):
        Run.objects.bulk_create(Run(pipeline="clean", status="success", started_at=T0) for _ in range(n))
        RunError.objects.bulk_create(RunError(run=run, step=step, message="bad") for _ in range(n))
        # token lookup, last-use touch, 2 permission reads, the page (+ the run for the errors).
        with django_assert_max_num_queries(5):
            assert len(api.get("/api/runs/").json()["results"]) >= n
        with django_assert_max_num_queries(6):
            assert len(api.get(f"/api/runs/{run.pk}/errors/").json()["results"]) >= n


# --- record history: problems and the trigger's scope, under the same contract ------------------


def make_problem(identifier="AB0001", *, at=T0, pipeline="clean", resolved=False, **fields):
    return RecordProblem.objects.create(
        pipeline=pipeline, identifier=identifier, identifier_kind="knvb_id", message="bad date",
        first_seen_at=at, last_seen_at=at, resolved_at=at if resolved else None,
        resolution="fixed" if resolved else "", **fields)


def test_problems_need_view_runerror_on_top_of_view_run(bare_api):
    client, user = bare_api
    make_problem()
    grant(user, "view_run")
    response = client.get("/api/problems/")
    assert response.status_code == 403
    assert assert_matches_spec(response)["error"].startswith("Permission runs.view_runerror required")
    grant(user, "view_runerror")
    assert len(assert_matches_spec(client.get("/api/problems/"))["results"]) == 1


def test_problems_link_to_their_record_page_and_runs(api):
    run = make_run()
    make_problem(first_run=run, last_run=run)
    make_problem("two\nlines")  # a quoted CSV cell: no URL can carry it, and it is no 500
    body = assert_matches_spec(api.get("/api/problems/"))
    urls = {p["identifier"]: p["record_url"] for p in body["results"]}
    assert urls["AB0001"].endswith("/records/AB0001/") and urls["two\nlines"] is None
    assert {p["identifier"]: p["last_run_id"] for p in body["results"]} == {"AB0001": run.pk, "two\nlines": None}


@pytest.mark.parametrize("query", ["state=", "state=maybe", "state=open&state=open", "pipeline=", "pipeline=a b",
                                   "identifier=", "identifier=%20", "identifier=a%00", "identifier=" + "x" * 256,
                                   "identifier=AB&identifier=AB", "match=", "match=fuzzy", "cursor=",
                                   "cursor=2025-03-10T12:00:00_1", "cursor=WzFd", "limit=0", "limit=201"])
def test_problems_parameters_are_checked_as_the_spec_declares(api, query):
    make_problem()
    response = api.get(f"/api/problems/?{query}")
    assert response.status_code == 400, response.content
    assert query.partition("=")[0] in assert_matches_spec(response)["error"]


@pytest.mark.parametrize("name", ["state", "pipeline", "identifier", "match", "cursor", "limit"])
def test_hostile_problems_parameters_get_400_with_a_message_never_500(api, name):
    make_problem()
    for value in HOSTILE:
        response = api.get("/api/problems/", {name: value})
        assert response.status_code in (200, 400), (value, response.content)
        body = assert_matches_spec(response)
        assert response.status_code == 200 or name in body["error"]


def test_problems_filter_by_state_pipeline_and_identifier(api):
    make_problem("AB0001")
    make_problem("AB0002", pipeline="sample")
    make_problem("CD0003", resolved=True)

    def ids(query):
        return sorted(p["identifier"] for p in assert_matches_spec(api.get("/api/problems/", query))["results"])

    assert ids({}) == ids({"state": "open"}) == ["AB0001", "AB0002"]
    assert ids({"state": "resolved"}) == ["CD0003"]
    assert ids({"pipeline": "sample"}) == ["AB0002"]
    assert ids({"identifier": "AB0001"}) == ["AB0001"]
    assert ids({"identifier": "AB", "match": "prefix"}) == ["AB0001", "AB0002"]
    assert ids({"identifier": "AB", "match": "exact"}) == []
    assert ids({"identifier": "A", "match": "prefix"}) == []  # shorter than 2: matched exactly, as documented
    assert ids({"match": "prefix"}) == ["AB0001", "AB0002"]


@pytest.mark.parametrize("cursor", ["0_0", "-0_0", "9999999999999999999_9999999999999999999",
                                    "-9999999999999999999_1", "1741608000000000_1"])
@pytest.mark.parametrize("state", ["open", "resolved"])
def test_every_problems_cursor_of_the_declared_shape_is_a_position(api, cursor, state):
    make_problem()
    make_problem("CD0003", resolved=True)
    body = assert_matches_spec(api.get("/api/problems/", {"cursor": cursor, "state": state}))
    assert isinstance(body["results"], list)


@pytest.mark.parametrize("at", [datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
                                datetime(9999, 12, 31, 23, 0, 0, 999999, tzinfo=UTC), T0])
@pytest.mark.parametrize("state", ["open", "resolved"])
def test_problems_cursors_handed_out_are_always_accepted_back(api, at, state):
    resolved = state == "resolved"
    problems = [make_problem(f"AB{i:04d}", at=at if i < 3 else T0, resolved=resolved) for i in range(5)]
    seen, url = [], f"/api/problems/?limit=2&state={state}"
    while url:
        body = assert_matches_spec(api.get(url))
        seen += [p["id"] for p in body["results"]]
        url = body["next"]
        if url:
            assert re.search(r"cursor=-?[0-9]+_[0-9]+(&|$)", url)
    assert sorted(seen) == sorted(p.pk for p in problems) and len(seen) == len(set(seen))


def test_runs_show_their_scope(api):
    make_run(only=["AB0001"])
    make_run(started_at=T0 - timedelta(hours=1))
    body = assert_matches_spec(api.get("/api/runs/"))
    assert [r["only"] for r in body["results"]] == [["AB0001"], None]


@pytest.mark.parametrize(("body", "content_type"), [
    ('{"only": null}', "application/json"), ('{"only": []}', "application/json"),
    ('{"only": ["  "]}', "application/json"), ('{"only": ["a\\u0000"]}', "application/json"),
    ('{"only": ["' + "x" * 256 + '"]}', "application/json"), ('{"only": [1]}', "application/json"),
    ('{"only": ' + str(["A"] * 501).replace("'", '"') + '}', "application/json"),
    ("[]", "application/json"), ("null", "application/json"), ("NaN", "application/json"),
    ('{"only": ["A"], "x": 1}', "application/json"), ("\xff", "application/json"),
    ('{"only": ["A"]}', "text/plain"), ("only=", "application/x-www-form-urlencoded"),
    ("only=%20", "application/x-www-form-urlencoded"), ("only=A", "multipart/form-data"),  # no boundary
])
def test_a_bad_trigger_body_is_400_and_queues_nothing(staff, token, body, content_type):
    from django_q.models import OrmQ

    grant(staff, "trigger_run")
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").post("/api/pipelines/clean/run/", body,
                                                                 content_type=content_type)
    assert response.status_code == 400, response.content
    assert assert_matches_spec(response, "POST")["error"]
    assert not OrmQ.objects.exists()


@pytest.mark.parametrize(("body", "content_type", "only"), [
    ("", "application/json", None), ("{}", "application/json", None),
    ('{"only": [" AB0001 ", "AB0001", "AB0002"]}', "application/json", ["AB0001", "AB0002"]),
    ("only=AB0001&only=AB0002&csrfmiddlewaretoken=x", "application/x-www-form-urlencoded", ["AB0001", "AB0002"]),
    ("next=%2F", "application/x-www-form-urlencoded", None),
    ({"only": ["AB0001", "AB0002"]}, None, ["AB0001", "AB0002"]),  # multipart, like Client.post's default
    ({}, None, None),
])
def test_the_trigger_takes_a_scope_as_json_or_form_fields(staff, token, settings, body, content_type, only,
                                                          django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    grant(staff, "trigger_run")
    with django_capture_on_commit_callbacks(execute=True):
        response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").post(
            "/api/pipelines/clean/run/", body, **({"content_type": content_type} if content_type else {}))
    assert response.status_code == 202, response.content
    assert_matches_spec(response, "POST")
    assert OrmQ.objects.get().task["kwargs"].get("only") == only
