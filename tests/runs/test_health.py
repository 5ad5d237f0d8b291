from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

from runs.models import Run
from runs.pipeline import all_pipelines

T0 = datetime(2025, 3, 10, 14, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))


def make_run(pipeline, status, *, started_at):
    return Run.objects.create(pipeline=pipeline, status=status, started_at=started_at,
                              finished_at=None if status == "running" else started_at + timedelta(minutes=1))


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def all_on_schedule():
    for p in all_pipelines():
        if p.schedule:
            make_run(p.name, "success", started_at=T0 - timedelta(minutes=30))


@pytest.mark.django_db
def test_health_is_200_without_login_with_a_tiny_body(client):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)
def test_health_is_503_when_the_database_does_not_answer(client, tmp_path):
    original = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "missing-dir" / "db.sqlite3")
    else:
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", "1"
    try:
        response = client.get("/health/")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(original)
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}
    assert str(tmp_path) not in response.content.decode()


@pytest.mark.django_db
def test_pipelines_health_is_200_when_nothing_is_overdue_or_failing(client, frozen, all_on_schedule):
    make_run("soft", "partial", started_at=T0 - timedelta(hours=1))
    make_run("clean", "failed", started_at=T0 - timedelta(hours=2))
    make_run("clean", "success", started_at=T0 - timedelta(hours=1))
    make_run("clean", "running", started_at=T0 - timedelta(minutes=1))
    response = client.get("/health/pipelines/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    states = {p["name"]: p["state"] for p in body["pipelines"]}
    assert states["soft"] == "partial" and states["clean"] == "running" and states["boom"] == "never_run"
    assert all(set(p) == {"name", "state"} for p in body["pipelines"])


@pytest.mark.django_db
def test_pipelines_health_is_503_when_the_latest_finished_run_failed(client, frozen, all_on_schedule):
    make_run("boom", "failed", started_at=T0 - timedelta(hours=1))
    make_run("boom", "running", started_at=T0 - timedelta(minutes=1))
    make_run("boom", "cancelled", started_at=T0 - timedelta(minutes=2))
    response = client.get("/health/pipelines/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert {"name": "boom", "state": "failed"} in body["pipelines"]


@pytest.mark.django_db
def test_pipelines_health_is_503_when_a_pipeline_is_overdue(client, frozen):
    for p in all_pipelines():
        if p.schedule and p.name != "sample":
            make_run(p.name, "success", started_at=T0 - timedelta(minutes=30))
    make_run("sample", "success", started_at=T0 - timedelta(days=1))  # missed today's 08:00
    response = client.get("/health/pipelines/")
    assert response.status_code == 503
    assert {"name": "sample", "state": "overdue"} in response.json()["pipelines"]
