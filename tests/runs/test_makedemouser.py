"""makedemouser: the demo's staff login, with the Volunteers group, its password printed once."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from runs.permissions import VOLUNTEERS_GROUP

pytestmark = pytest.mark.django_db

LOGIN = re.compile(r"^(Created|Reset the password of) the staff login  user: (\S+)  password: (\S+)$", re.M)


def make(*args):
    out = StringIO()
    call_command("makedemouser", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_staff_login_in_the_volunteers_group_and_prints_a_working_password():
    output = make()
    verb, username, password = LOGIN.search(output).groups()
    assert (verb, username) == ("Created", "admin")  # the default --username
    assert len(password) >= 16
    user = User.objects.get()
    assert (user.username, user.is_staff, user.is_superuser, user.is_active) == ("admin", True, True, True)
    assert authenticate(username="admin", password=password) == user
    assert list(user.groups.values_list("name", flat=True)) == [VOLUNTEERS_GROUP]
    assert {p.codename for p in user.user_permissions.all()} == {"trigger_run", "cancel_run"}
    assert "shown once" in output and f"Group {VOLUNTEERS_GROUP!r}" in output
    assert output.count(password) == 1  # printed once, nowhere else


def test_running_it_again_resets_the_password_and_changes_nothing_else():
    _, _, first = LOGIN.search(make("--username", "demo")).groups()
    groups = Group.objects.count()
    permissions = set(Group.objects.get(name=VOLUNTEERS_GROUP).permissions.values_list("pk", flat=True))
    verb, username, second = LOGIN.search(make("--username", "demo")).groups()
    assert (verb, username) == ("Reset the password of", "demo")
    assert second != first
    assert authenticate(username="demo", password=first) is None
    assert authenticate(username="demo", password=second) == User.objects.get(username="demo")
    assert User.objects.count() == 1 and Group.objects.count() == groups
    assert set(Group.objects.get(name=VOLUNTEERS_GROUP).permissions.values_list("pk", flat=True)) == permissions
    user = User.objects.get()
    assert user.groups.count() == 1 and user.user_permissions.count() == 2


def test_an_existing_user_is_made_staff_and_kept():
    existing = User.objects.create_user("ops", email="ops@example.org", password="old-pw-123")
    output = make("--username", "ops")
    _, _, password = LOGIN.search(output).groups()
    user = User.objects.get()
    assert user.pk == existing.pk and user.email == "ops@example.org"
    assert user.is_staff and user.is_superuser
    assert authenticate(username="ops", password=password) == user
    assert authenticate(username="ops", password="old-pw-123") is None
