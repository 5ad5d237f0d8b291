# ruff: noqa: F811 (the fixtures `fake` and `pipeline` come from tests/pipelines/laposta_fake.py)
"""Laposta steps against a local Laposta API v2 that refuses, fails, times out or is not Laposta."""


import base64
import json
import re
import threading
from urllib.parse import quote

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from pipelines.models import LapostaSubscription
from runs.models import RunError
from runs.redact import clear_secret_cache
from tests.pipelines.laposta_fake import (  # noqa: F401 (fake and pipeline are fixtures)
    MEMBERS_LIST,
    PARENTS_LIST,
    counts,
    fake,
    member,
    pipeline,
    step,
    three,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_invalid_email_is_an_error_for_that_member_and_the_rest_go_on(fake, pipeline):
    members = [*three(), member("DDD4444", "not-an-email")]
    run = pipeline(members)
    assert run.status == "partial"
    assert counts(step(run, "laposta-prepare")) == (3, 0, 0, 1)
    (error,) = RunError.objects.filter(run=run)
    assert (error.identifier, error.identifier_kind, error.step_name) == ("DDD4444", "knvb_id", "laposta-prepare")
    assert "not-an-email" in error.message
    assert len(fake.lists[MEMBERS_LIST]) == 3


def test_laposta_refusing_a_member_is_an_error_with_its_message(fake, pipeline):
    fake.fail(status=400, email="cees@example.nl", body=json.dumps(
        {"error": {"type": "invalid_input", "message": "Email address is on the suppression list", "code": 999,
                   "parameter": "email"}}))
    run = pipeline(three())
    assert run.status == "partial"
    submit = step(run, "laposta-submit")
    assert (submit.status, submit.failed) == ("partial", 1)
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "CCC3333"
    assert "Email address is on the suppression list" in error.message
    assert "HTTP 400" in error.message
    # The refused one is not remembered, so the next run tries it again.
    assert not LapostaSubscription.objects.filter(email="cees@example.nl").exists()
    run = pipeline(three())
    assert counts(step(run, "laposta-prepare")) == (1, 0, 2, 0)
    assert run.status == "success"


def test_a_429_is_retried_after_retry_after(fake, pipeline, sleeps):
    fake.fail(status=429, times=1, headers={"Retry-After": "13"})
    run = pipeline(three())
    assert run.status == "success"
    assert sleeps == [13.0]
    assert len(fake.lists[MEMBERS_LIST]) == 3


def test_a_500_then_success_is_retried(fake, pipeline, sleeps):
    fake.fail(status=500, email="anna@example.nl", times=2)
    run = pipeline(three())
    assert run.status == "success"
    assert sleeps == [1.0, 2.0]
    assert len(fake.lists[MEMBERS_LIST]) == 3


def test_a_500_forever_fails_that_member_and_the_rest_go_on(fake, pipeline, sleeps):
    fake.fail(status=500, email="bram@example.nl", times=None)
    run = pipeline(three())
    assert run.status == "partial"
    submit = step(run, "laposta-submit")
    assert (submit.status, submit.read, submit.failed) == ("partial", 3, 1)
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "BBB2222"
    assert "HTTP 500" in error.message and "Simulated HTTP 500" in error.message
    assert sorted(fake.lists[MEMBERS_LIST]) == ["anna@example.nl", "cees@example.nl"]
    assert sleeps == [1.0, 2.0]


def test_a_401_fails_the_step_with_a_credentials_message_without_the_key(fake, pipeline, settings):
    settings.LAPOSTA_API_KEY = "wrong-key-9876543210"
    clear_secret_cache()
    run = pipeline(three())
    # laposta-submit is not critical: the registry sync after it still runs,
    # and the run ends partial (which alerts) instead of failed.
    assert run.status == "partial"
    submit = step(run, "laposta-submit")
    assert submit.status == "failed"
    assert "credentials are wrong" in submit.reason
    assert "LAPOSTA_API_KEY" in submit.reason
    assert "wrong-key-9876543210" not in submit.reason
    errors = list(RunError.objects.filter(run=run))
    assert any("credentials are wrong" in error.message for error in errors)
    for error in errors:
        assert "wrong-key-9876543210" not in error.message + error.traceback
    assert len(fake.requests) == 0
    assert not LapostaSubscription.objects.exists()


def test_what_was_sent_before_a_401_is_remembered(fake, pipeline, sleeps):
    fake.fail(status=401, email="cees@example.nl")
    # Members are sent oldest first: Cees (1985), Bram (1990), Anna (2012).
    members = three()
    run = pipeline(members)
    assert step(run, "laposta-submit").status == "failed"
    assert LapostaSubscription.objects.count() == 0  # Cees came first and failed: nothing after
    fake.faults.clear()
    fake.fail(status=401, email="anna@example.nl")
    run = pipeline(members)
    assert step(run, "laposta-submit").status == "failed"
    assert sorted(LapostaSubscription.objects.values_list("email", flat=True)) == [
        "bram@example.nl", "cees@example.nl"]


def test_a_timeout_is_retried_then_fails_that_member(fake, pipeline, sleeps, settings):
    settings.HTTP_TIMEOUT_S = 0.05

    release = threading.Event()
    original = fake.__call__

    class Slow:
        def __call__(self, request):
            if request.form.get("email") == "bram@example.nl":
                release.wait(0.3)  # bounded: longer than the client's timeout
            return original(request)

    fake_handler = Slow()
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(fake_handler)
    server.start()
    try:
        settings.LAPOSTA_BASE_URL = server.url_for("/v2")
        run = pipeline(three(), retries=1)
    finally:
        release.set()
        server.clear()
        server.stop()
    assert run.status == "partial"
    (error,) = RunError.objects.filter(run=run)
    assert error.identifier == "BBB2222"
    assert "no answer within 0.05 s" in error.message
    assert sleeps == [1.0]
    assert LapostaSubscription.objects.filter(email="anna@example.nl").exists()


def test_a_base_url_that_is_not_the_api_fails_the_step(fake, pipeline, httpserver, settings):
    httpserver.expect_request("/not-laposta/member").respond_with_data("<html>Welkom</html>",
                                                                       content_type="text/html")
    settings.LAPOSTA_BASE_URL = httpserver.url_for("/not-laposta")
    run = pipeline(three())
    submit = step(run, "laposta-submit")
    assert submit.status == "failed"
    assert "LAPOSTA_BASE_URL" in submit.reason
    assert not LapostaSubscription.objects.exists()


def test_a_server_that_echoes_the_key_encoded_stores_no_form_of_it(httpserver, pipeline, settings):
    """The HTTP stand-in echoes the Basic-auth header value (base64 of "key:") and
    the URL-encoded key back in its error, without any keyword near them."""
    key = "echo+key/0123456789=="

    def echo(request):
        basic = request.headers.get("Authorization", "").removeprefix("Basic ")
        body = {"error": {"type": "invalid_input", "code": 999, "parameter": "email",
                          "message": f"Rejected {basic} for {request.form.get('email')} via "
                                     f"/v2/member?account={quote(key, safe='')}"}}
        return Response(json.dumps(body), status=400, content_type="application/json")

    httpserver.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(echo)
    settings.LAPOSTA_API_KEY = key
    settings.LAPOSTA_BASE_URL = httpserver.url_for("/v2")
    settings.LAPOSTA_MEMBERS_LIST_ID = MEMBERS_LIST
    settings.LAPOSTA_PARENTS_LIST_ID = PARENTS_LIST
    clear_secret_cache()
    try:
        run = pipeline(three()[:1])
    finally:
        clear_secret_cache()
    (error,) = RunError.objects.filter(run=run)
    stored = error.message + error.traceback
    assert "Rejected ***" in stored and "anna@example.nl" in stored  # the echo arrived, masked
    basic = base64.b64encode(f"{key}:".encode()).decode()
    for form in (key, quote(key, safe=""), basic, basic.rstrip("=")):
        assert form not in stored
