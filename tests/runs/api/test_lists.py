"""The lists and details: shapes that match the spec, filters, keyset pages, query counts."""

import re
from datetime import timedelta

import pytest
import yaml
from django.urls import URLPattern, URLResolver, get_resolver

from runs.models import Run, RunError, RunStep
from tests.runs.api.helpers import T0, assert_matches_spec, grant, make_problem, make_run, spec

pytestmark = pytest.mark.django_db


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


def test_runs_show_their_scope(api):
    make_run(only=["AB0001"])
    make_run(started_at=T0 - timedelta(hours=1))
    body = assert_matches_spec(api.get("/api/runs/"))
    assert [r["only"] for r in body["results"]] == [["AB0001"], None]
