"""Hostile input on every dashboard page: never a 500, always 200, 400 or 404.

Oversized integers, NaN/Infinity, NUL bytes, malformed and out-of-range
dates in every query parameter a page reads (and some it does not), and in
the path.
"""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Run, RunError, RunStatus
from runs.permissions import ensure_volunteers_group

pytestmark = pytest.mark.django_db

PARAMS = ["page", "per_page", "sort", "pipeline", "status", "mode", "since", "until", "parent", "identifier",
          "match", "step", "view", "q"]
NASTY = ["9" * 25, "99999999999999999999", "9223372036854775808", "-1", "0", "NaN", "nan", "Infinity",
         "-Infinity", "1e999", "\x00", "a\x00b", "9999-12-31", "0001-01-01", "2024-02-30", "99999-01-01", "",
         "%", "' OR 1=1 --", "²", "x" * 3000, "<script>alert(1)</script>"]
values = st.one_of(st.sampled_from(NASTY), st.integers(min_value=-(2**70), max_value=2**70).map(str),
                   st.text(max_size=40))


@pytest.fixture
def setup(client):
    user = User.objects.create_user("v", password="x", is_staff=True)
    user.groups.add(ensure_volunteers_group())
    client.force_login(user)
    run = Run.objects.create(pipeline="sample", status=RunStatus.PARTIAL, error_count=1)
    RunError.objects.create(run=run, step_name="sample-sync", identifier="AAA1111", message="no email")
    urls = [reverse("runs:overview"), reverse("runs:list"), reverse("runs:export"), run.get_absolute_url(),
            reverse("runs:progress", args=[run.pk]), reverse("runs:errors"), reverse("runs:pipeline", args=["sample"])]
    return client, urls


def fetch(client, url, data):
    response = client.get(url, data)
    if response.streaming:
        b"".join(response.streaming_content)  # the CSV fails, if at all, while streaming
    return response


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(PARAMS), values, min_size=1, max_size=4),
       grouped=st.booleans(), index=st.integers(min_value=0, max_value=6))
def test_no_query_parameter_gives_a_500(setup, data, grouped, index):
    client, urls = setup
    if grouped:
        data = {**data, "view": "grouped"}
    response = fetch(client, urls[index], data)
    assert response.status_code in (200, 400, 404), (urls[index], data, response.status_code)


def test_every_nasty_value_in_every_parameter(setup):
    client, urls = setup
    paging = {"page", "per_page"}  # checked first: a bad page would hide the other parameters
    for value in NASTY:
        for url in urls[1:]:  # the overview reads no parameters
            for names in (paging, set(PARAMS) - paging):
                data = dict.fromkeys(names, value)
                response = fetch(client, url, data)
                assert response.status_code in (200, 400, 404), (url, data, response.status_code)


@pytest.mark.parametrize(("param", "value", "message"), [
    ("page", "99999999999999999999", "page must be a whole number from 1 to 100000"),
    ("page", "NaN", "page must be a whole number from 1 to 100000, got 'NaN'"),
    ("per_page", "-1", "per_page must be a whole number from 1 to 500"),
])
def test_out_of_range_pages_answer_400_with_a_message(setup, param, value, message):
    client, urls = setup
    for url in (reverse("runs:list"), reverse("runs:errors"), reverse("runs:pipeline", args=["sample"]),
                urls[3]):
        if param == "per_page" and url == urls[3]:
            continue  # run detail has a fixed page size
        response = client.get(url, {param: value})
        assert response.status_code == 400 and message in response.content.decode(), url


def test_a_step_id_the_database_cannot_hold_answers_400(setup):
    client, urls = setup
    response = client.get(urls[3], {"step": "9999999999999999999999"})
    assert response.status_code == 400
    assert "step must be a whole number" in response.content.decode()


def test_out_of_range_dates_answer_400_next_to_the_filter(setup):
    client, _ = setup
    for url in (reverse("runs:list"), reverse("runs:errors")):
        response = client.get(url, {"since": "0001-01-01", "until": "9999-12-31"})
        assert response.status_code == 400
        assert "Pick a day between 1970-01-01 and 2999-12-31." in response.content.decode()
    response = client.get(reverse("runs:export"), {"parent": "99999999999999999999"})
    assert response.status_code == 400 and "Invalid filter" in response.content.decode()


@pytest.mark.parametrize("path", ["/runs/99999999999999999999999/", "/runs/9223372036854775808/progress/",
                                  "/pipelines/a%00b/", "/pipelines/" + "x" * 300 + "/", "/runs/0/"])
def test_hostile_paths_answer_404(setup, path):
    client, _ = setup
    assert client.get(path).status_code == 404
