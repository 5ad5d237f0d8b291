"""Every answer under /api/ is JSON: unknown paths and ids, undeclared methods, failures."""


import pytest
from django.test import Client

from tests.runs.api.helpers import assert_matches_spec, make_run

pytestmark = pytest.mark.django_db



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
