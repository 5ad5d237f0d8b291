"""POST /api/pipelines/{name}/run/: permission, conflicts, CSRF, and the scope body."""


import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string

from tests.runs.api.helpers import assert_matches_spec, grant, make_run

pytestmark = pytest.mark.django_db


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
