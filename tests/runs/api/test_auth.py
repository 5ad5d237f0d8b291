"""The API's gate: sessions and tokens, model permissions, expiry, the token admin."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from runs.models import ApiToken
from tests.runs.api.helpers import ENDPOINTS, T0, assert_matches_spec, grant, make_run

pytestmark = pytest.mark.django_db


# --- authentication ----------------------------------------------------------------------


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
