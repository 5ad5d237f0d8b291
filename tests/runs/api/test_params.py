"""Parameters: the server enforces exactly what the spec declares (values, dates, cursors)."""

import re
from datetime import UTC, datetime, timedelta

import jsonschema_rs
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runs.api import OPENAPI_FILE
from runs.api.auth import ApiError
from runs.api.params import parse_since
from tests.runs.api.helpers import T0, assert_matches_spec, make_problem, make_run

pytestmark = pytest.mark.django_db

SINCE_VALIDATOR = jsonschema_rs.validator_for(
    [p for p in yaml.safe_load(OPENAPI_FILE.read_text())["paths"]["/api/runs/"]["get"]["parameters"]
     if p.get("name") == "since"][0]["schema"], validate_formats=True)


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
        parse_since(value)
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
