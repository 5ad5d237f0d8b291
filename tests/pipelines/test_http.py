"""The shared destination client against a real local HTTP server."""

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import time_machine
from pytest_httpserver import HTTPServer
from werkzeug import Response

from pipelines.http import (
    ApiClient,
    ApiError,
    CredentialsError,
    ServiceDownError,
    parse_retry_after,
)

KEY = "s3cr3t-api-key-123"




def make_client(server, sleeps, **kwargs):
    kwargs.setdefault("max_retries", 4)
    kwargs.setdefault("timeout", 2)
    return ApiClient(server.url_for(""), sleep=sleeps, headers={"X-Key": KEY}, secrets=(KEY,), **kwargs)


def test_it_returns_a_successful_response_and_sends_the_headers(httpserver, sleeps):
    httpserver.expect_oneshot_request("/things", method="GET", headers={"X-Key": KEY}).respond_with_json(
        {"ok": True})
    with make_client(httpserver, sleeps) as client:
        response = client.request("GET", "/things")
    assert response.json() == {"ok": True}
    assert sleeps == []
    httpserver.check_assertions()


def test_it_retries_a_429_after_the_retry_after_seconds(httpserver, sleeps):
    httpserver.expect_ordered_request("/things").respond_with_json(
        {"error": "slow down"}, status=429, headers={"Retry-After": "7"})
    httpserver.expect_ordered_request("/things").respond_with_json({"ok": True})
    with make_client(httpserver, sleeps) as client:
        assert client.request("GET", "things").status_code == 200
    assert sleeps == [7.0]
    assert len(httpserver.log) == 2


@time_machine.travel(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), tick=False)
def test_it_honours_a_retry_after_given_as_an_http_date(httpserver, sleeps):
    when = format_datetime(datetime(2026, 3, 1, 12, 0, 45, tzinfo=UTC), usegmt=True)
    httpserver.expect_ordered_request("/things").respond_with_data("", status=503, headers={"Retry-After": when})
    httpserver.expect_ordered_request("/things").respond_with_json({"ok": True})
    with make_client(httpserver, sleeps) as client:
        assert client.request("GET", "things").status_code == 200
    assert sleeps == [45.0]


def test_it_retries_a_500_with_exponential_backoff_then_succeeds(httpserver, sleeps):
    httpserver.expect_ordered_request("/things").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/things").respond_with_data("oops", status=502)
    httpserver.expect_ordered_request("/things").respond_with_json({"ok": True})
    with make_client(httpserver, sleeps) as client:
        assert client.request("POST", "things", data={"a": "1"}).json() == {"ok": True}
    assert sleeps == [1.0, 2.0]


def test_a_500_forever_gives_up_after_the_retries_with_the_apis_message(httpserver, sleeps):
    httpserver.expect_request("/things").respond_with_data("database on fire", status=500)
    with make_client(httpserver, sleeps, max_retries=3) as client, pytest.raises(ApiError) as info:
        client.request("GET", "things")
    assert len(httpserver.log) == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert info.value.status == 500
    assert info.value.transient and not info.value.fatal
    assert "HTTP 500: database on fire" in str(info.value)
    assert "tried 4 times" in str(info.value)


def test_max_retries_comes_from_the_settings(httpserver, sleeps, settings):
    settings.HTTP_MAX_RETRIES = 1
    httpserver.expect_request("/things").respond_with_data("", status=500)
    client = ApiClient(httpserver.url_for(""), sleep=sleeps)
    with pytest.raises(ApiError):
        client.request("GET", "things")
    assert len(httpserver.log) == 2
    client.close()


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_say_the_credentials_are_wrong_without_the_key(httpserver, sleeps, status):
    # Even an API that echoes the key back does not get it into the message.
    httpserver.expect_request("/things").respond_with_json({"message": f"Bad key {KEY}"}, status=status)
    with make_client(httpserver, sleeps) as client, pytest.raises(CredentialsError) as info:
        client.request("GET", "things")
    message = str(info.value)
    assert "credentials are wrong" in message
    assert KEY not in message
    assert info.value.fatal
    assert len(httpserver.log) == 1  # never retried
    assert sleeps == []


def test_another_4xx_is_not_retried_and_carries_the_apis_message(httpserver, sleeps):
    httpserver.expect_request("/things").respond_with_data("email is not valid", status=400)
    with make_client(httpserver, sleeps) as client, pytest.raises(ApiError) as info:
        client.request("POST", "things")
    assert info.value.status == 400
    assert info.value.said == "email is not valid"
    assert "HTTP 400" in str(info.value) and "email is not valid" in str(info.value)
    assert not info.value.fatal
    assert len(httpserver.log) == 1


def test_a_retry_after_longer_than_syncsite_waits_fails_at_once(httpserver, sleeps):
    httpserver.expect_request("/things").respond_with_data("", status=429, headers={"Retry-After": "86400"})
    with make_client(httpserver, sleeps) as client, pytest.raises(ApiError) as info:
        client.request("GET", "things")
    assert sleeps == []
    assert "86400" in str(info.value)


def test_too_many_failures_in_a_row_mean_the_service_is_down(httpserver, sleeps):
    httpserver.expect_request("/things").respond_with_data("", status=500)
    with make_client(httpserver, sleeps, max_retries=0, give_up_after=3) as client:
        for _ in range(2):
            with pytest.raises(ApiError) as info:
                client.request("GET", "things")
            assert not info.value.fatal
        with pytest.raises(ServiceDownError) as info:
            client.request("GET", "things")
    assert info.value.fatal
    assert "3 requests in a row" in str(info.value)


def test_a_success_resets_the_failures_in_a_row(httpserver, sleeps):
    httpserver.expect_request("/bad").respond_with_data("", status=500)
    httpserver.expect_request("/good").respond_with_json({})
    with make_client(httpserver, sleeps, max_retries=0, give_up_after=2) as client:
        for _ in range(3):
            with pytest.raises(ApiError) as info:
                client.request("GET", "bad")
            assert not info.value.fatal
            client.request("GET", "good")


@pytest.fixture
def slow_server():
    """A threaded server whose handler blocks until released: the client times out."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    release = threading.Event()
    yield server, release
    release.set()
    server.clear()
    server.stop()


def test_a_timeout_is_retried_and_then_reported(slow_server, sleeps):
    server, release = slow_server

    arrived = []
    three_arrived = threading.Event()

    def handler(request):
        # Counted on arrival: the server's own log records a request only once its handler returns.
        arrived.append((request.method, request.path))
        if len(arrived) == 3:
            three_arrived.set()
        release.wait(2)  # bounded: the fixture releases it at teardown
        return Response("late", status=200)

    server.expect_request("/slow").respond_with_handler(handler)
    client = ApiClient(server.url_for(""), sleep=sleeps, timeout=0.05, max_retries=2)
    with pytest.raises(ApiError) as info:
        client.request("GET", "slow")
    client.close()
    assert "no answer within 0.05 s" in str(info.value)
    assert "tried 3 times" in str(info.value)
    assert info.value.transient
    assert sleeps == [1.0, 2.0]
    # The first try and two retries all reached the server (a busy server thread may start late).
    assert three_arrived.wait(5), arrived
    assert arrived == [("GET", "/slow")] * 3


def test_a_timeout_then_an_answer_succeeds(slow_server, sleeps):
    server, release = slow_server
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            release.wait(2)
        return Response(json.dumps({"ok": True}), status=200, content_type="application/json")

    server.expect_request("/slow").respond_with_handler(handler)
    client = ApiClient(server.url_for(""), sleep=sleeps, timeout=0.1, max_retries=2)
    assert client.request("GET", "slow").json() == {"ok": True}
    client.close()
    assert sleeps == [1.0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_not_retried_and_the_third_in_a_row_is_fatal(sleeps):
    port = _closed_port()
    client = ApiClient(f"http://127.0.0.1:{port}", sleep=sleeps, max_retries=4, timeout=1)
    client.service, client.base_url_setting = "Laposta", "LAPOSTA_BASE_URL"
    for _ in range(2):
        with pytest.raises(ApiError) as info:
            client.request("GET", "x")
        assert not info.value.fatal
        assert str(info.value) == ("Laposta is unreachable: the connection to 127.0.0.1 was refused. "
                                   "Check LAPOSTA_BASE_URL and that Laposta is up.")
    with pytest.raises(ServiceDownError) as info:
        client.request("GET", "x")
    assert info.value.fatal
    assert str(info.value).startswith("Laposta is unreachable: the connection to 127.0.0.1 was refused "
                                      "(3 times in a row); stopped.")
    assert sleeps == []  # no backoff: a refused connection does not come back by waiting


def test_an_answer_resets_the_connection_failures_in_a_row(httpserver, sleeps):
    httpserver.expect_request("/ok").respond_with_json({"ok": True})
    down = ApiClient(f"http://127.0.0.1:{_closed_port()}", sleep=sleeps, timeout=1)
    for _ in range(2):
        with pytest.raises(ApiError):
            down.request("GET", "x")
    # Same client, the service back: the count starts again.
    down._client.base_url = httpserver.url_for("/")
    assert down.request("GET", "ok").json() == {"ok": True}
    assert down.connect_failures_in_a_row == 0


def test_an_unusable_base_url_is_fatal_at_once(sleeps):
    client = ApiClient("ftp://127.0.0.1/api", sleep=sleeps)
    with pytest.raises(ServiceDownError) as info:
        client.request("GET", "x")
    assert "base URL is not usable" in str(info.value)
    assert sleeps == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", None), ("soon", None), ("", None), (None, None),
     ("nan", None)],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_dates():
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after(earlier, now=now) == 0.0


def test_a_redirect_is_not_followed_and_is_fatal(httpserver, sleeps):
    httpserver.expect_request("/things").respond_with_data("", status=301,
                                                           headers={"Location": "https://example.org/login"})
    with make_client(httpserver, sleeps) as client, pytest.raises(ServiceDownError) as info:
        client.request("POST", "things")
    assert "HTTP 301" in str(info.value) and "https://example.org/login" in str(info.value)
    assert len(httpserver.log) == 1
