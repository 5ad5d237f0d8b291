"""Least privilege: the dashboard needs the model view permissions, like the admin."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.urls import reverse

from runs.models import Run, RunError, RunStatus
from runs.permissions import VOLUNTEERS_GROUP, ensure_volunteers_group

pytestmark = pytest.mark.django_db

SECRET_NAME = "Jan de Vries <jan@example.org>"


@pytest.fixture
def run():
    run = Run.objects.create(pipeline="sample", status=RunStatus.PARTIAL, error_count=1)
    RunError.objects.create(run=run, step_name="sample-sync", identifier="AAA1111",
                            message=f"{SECRET_NAME} has no email", traceback="Traceback: boom")
    return run


def pages(run):
    return {
        "overview": reverse("runs:overview"),
        "runs": reverse("runs:list"),
        "export": reverse("runs:export"),
        "detail": run.get_absolute_url(),
        "progress": reverse("runs:progress", args=[run.pk]),
        "pipeline": reverse("runs:pipeline", args=["sample"]),
        "errors": reverse("runs:errors"),
    }


def login(client, *codenames, staff=True):
    user = User.objects.create_user("someone", password="x", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))
    client.force_login(user)
    return user


def test_staff_without_permissions_gets_403_on_every_page(client, run):
    login(client)
    for name, url in pages(run).items():
        response = client.get(url)
        assert response.status_code == 403, name
        assert SECRET_NAME not in response.content.decode()


def test_not_staff_is_sent_to_the_login_page(client, run):
    login(client, "view_run", "view_runerror", staff=False)
    for name, url in pages(run).items():
        response = client.get(url)
        assert response.status_code == 302 and reverse("admin:login") in response["Location"], name


def test_view_run_alone_shows_runs_but_no_errors_or_tracebacks(client, run):
    login(client, "view_run")
    for name, url in pages(run).items():
        assert client.get(url).status_code == (403 if name == "errors" else 200), name
    html = client.get(run.get_absolute_url()).content.decode()
    assert "no email" not in html and "Traceback: boom" not in html
    assert "view run error" in html  # says what is missing
    assert reverse("runs:errors") not in client.get(reverse("runs:overview")).content.decode()


def test_the_volunteers_group_sees_everything_it_needs(client, run):
    user = login(client)
    user.groups.add(ensure_volunteers_group())
    for name, url in pages(run).items():
        assert client.get(url).status_code == 200, name
    html = client.get(run.get_absolute_url()).content.decode()
    assert "Jan de Vries &lt;jan@example.org&gt; has no email" in html


def test_makedemouser_creates_the_volunteers_group_with_the_right_set(capsys):
    call_command("makedemouser", "--username", "demo")
    group = Group.objects.get(name=VOLUNTEERS_GROUP)
    perms = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
    assert {"runs.view_run", "runs.view_runstep", "runs.view_runerror", "runs.trigger_run",
            "runs.cancel_run"} <= perms
    assert "pipelines.view_member" in perms  # the registry, read-only
    assert not {p for p in perms if p.split(".")[1].startswith(("add_", "change_", "delete_"))}
    assert not {p for p in perms if p.startswith(("auth.", "django_q."))}
    assert User.objects.get(username="demo").groups.filter(name=VOLUNTEERS_GROUP).exists()
    # Idempotent: a second call leaves exactly the same set.
    call_command("makedemouser", "--username", "demo")
    assert Group.objects.get(name=VOLUNTEERS_GROUP).permissions.count() == len(perms)
