"""Fixtures of the API tests: a staff member with read permissions, its token and client."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from runs.models import ApiToken
from tests.runs.api.helpers import grant


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


@pytest.fixture
def bare_api():
    """A token whose user is staff but has no permissions at all."""
    user = User.objects.create_user("bare", is_staff=True)
    raw = ApiToken.generate()
    token = ApiToken(user=user, name="bare")
    token.set_token(raw)
    token.save()
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}"), user
