"""The shared HTTP client of the destinations (Laposta, FreeScout).

One place decides how syncsite talks to a REST API:

* every request has a timeout (`HTTP_TIMEOUT`, seconds);
* 429, 5xx and timeouts are retried up to `HTTP_MAX_RETRIES` times with
  exponential backoff; a `Retry-After` header (seconds or an HTTP date) is
  honoured instead of the backoff;
* a connection that cannot be made (refused, or the host name does not
  resolve) is not retried: the service is not there, and waiting would not
  bring it. After CONNECT_FAILURES_FATAL of those in a row the failure is
  fatal, naming the service and the cause, so a step stops in seconds instead
  of spending minutes of backoff per member;
* 401/403 raise `CredentialsError`, whose message says the credentials are
  wrong and never contains them; other 4xx raise `ApiError` carrying the API's
  own message (with any configured secret masked, in case the API echoes it);
* after `give_up_after` requests in a row that failed even after their
  retries, the next failure is *fatal*: the service is down, and going on
  would only spend minutes of backoff per remaining member.

Errors a caller must not turn into a per-member RunError have `fatal = True`
(wrong credentials, service down); the steps re-raise those so the step fails.

The sleep function is injectable (`sleep=`), so tests record the delays
instead of waiting for them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings

#: Exponential backoff without Retry-After: 1, 2, 4, 8 ... seconds, at most 30.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0
#: A Retry-After longer than this is not waited for: the request fails (a
#: daily quota is not worth blocking a run for hours).
MAX_RETRY_AFTER_S = 120.0
#: Requests in a row that failed after all retries before the service counts as down.
GIVE_UP_AFTER = 10
#: Connections in a row that were refused or whose host did not resolve before the service counts as unreachable.
CONNECT_FAILURES_FATAL = 3


class ApiError(Exception):
    """A request the API refused or could not answer; the message is readable and secret-free."""

    fatal = False

    def __init__(self, message: str, *, status: int | None = None, code: Any = None, said: str = "",
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code  # the API's own error code, when it has one (Laposta: 203, 208 ...)
        self.said = said  # the API's own message
        self.transient = transient


class CredentialsError(ApiError):
    """401/403: the configured API key is wrong. Fails the step, never one member."""

    fatal = True


class ServiceDownError(ApiError):
    """Too many requests in a row failed after their retries: stop the step."""

    fatal = True


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ApiClient:
    """A small httpx wrapper with the retry and error policy above.

    Subclasses set `service` (a name people recognise), `credentials_setting`
    (the variable to check on a 401) and override `api_message(response)`.
    """

    service = "The API"
    credentials_setting = ""
    base_url_setting = ""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        sleep: Callable[[float], Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        secrets: Iterable[str] = (),
        give_up_after: int = GIVE_UP_AFTER,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout = float(settings.HTTP_TIMEOUT_S if timeout is None else timeout)
        self.max_retries = int(settings.HTTP_MAX_RETRIES if max_retries is None else max_retries)
        self.sleep = time.sleep if sleep is None else sleep
        self.give_up_after = give_up_after
        self.failures_in_a_row = 0
        self.connect_failures_in_a_row = 0
        self._secrets = tuple(s for s in secrets if s)
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            timeout=self.timeout,
            headers={"Accept": "application/json", "User-Agent": "syncsite", **(headers or {})},
            auth=auth,
            transport=transport,
            follow_redirects=False,
        )

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Any = None, data: Any = None,
                json: Any = None) -> httpx.Response:
        """Send one request with retries; return a 2xx response or raise ApiError."""
        attempt = 0
        while True:
            try:
                response = self._client.request(method, path.lstrip("/"), params=params, data=data, json=json)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                where = f" Check {self.base_url_setting}." if self.base_url_setting else ""
                raise ServiceDownError(f"{self.service}'s base URL is not usable: {self._scrub(str(exc))}.{where}") \
                    from None
            except httpx.ConnectError as exc:
                self._unreachable(exc)
            except httpx.TransportError as exc:
                problem = self._describe_transport_error(exc)
                delay = self._backoff(attempt)
                status = None
            else:
                status = response.status_code
                self.connect_failures_in_a_row = 0
                if status < 300:
                    self.failures_in_a_row = 0
                    return response
                if status < 400:
                    # An API does not redirect; a web server in front of the wrong URL does
                    # (http -> https, a login page). Following it could turn a POST into a GET.
                    where = f" Check {self.base_url_setting}." if self.base_url_setting else ""
                    location = self._scrub(response.headers.get("Location", "?"))
                    raise ServiceDownError(f"{self.service} answered HTTP {status} redirecting to {location}: "
                                           f"the base URL is not the API's.{where}", status=status)
                if status in (401, 403):
                    raise CredentialsError(self._credentials_message(response))
                if status != 429 and status < 500:
                    self.failures_in_a_row = 0  # the service answered: it is up
                    said = self._scrub(self.api_message(response))
                    raise ApiError(f"{self.service} refused the request (HTTP {status}): {said}", status=status,
                                   code=self.api_code(response), said=said)
                problem = f"HTTP {status}: {self._scrub(self.api_message(response))}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                    self._give_up(f"{problem} (it asks to retry after {retry_after:.0f} s, "
                                  f"more than the {MAX_RETRY_AFTER_S:.0f} s syncsite waits)", status)
                delay = retry_after if retry_after is not None else self._backoff(attempt)
            if attempt >= self.max_retries:
                tries = "once" if attempt == 0 else f"{attempt + 1} times"
                self._give_up(f"{problem} (tried {tries})", status)
            self.sleep(delay)
            attempt += 1

    def _unreachable(self, exc: httpx.ConnectError) -> None:
        """A connection that could not be made: fail this request at once; fatal after a few in a row."""
        self.connect_failures_in_a_row += 1
        text = str(exc).lower()
        host = self._client.base_url.host
        if "refused" in text:
            cause = f"the connection to {host} was refused"
        elif any(s in text for s in ("name or service", "nodename", "name resolution", "getaddrinfo", "no address")):
            cause = f"the host name {host} could not be found (DNS)"
        else:
            cause = f"could not connect to {host}: {self._scrub(str(exc)) or type(exc).__name__}"
        where = f" Check {self.base_url_setting} and that {self.service} is up." if self.base_url_setting else ""
        if self.connect_failures_in_a_row >= CONNECT_FAILURES_FATAL:
            raise ServiceDownError(
                f"{self.service} is unreachable: {cause} ({self.connect_failures_in_a_row} times in a row); "
                f"stopped.{where}", transient=True) from None
        raise ApiError(f"{self.service} is unreachable: {cause}.{where}", transient=True) from None

    def _give_up(self, problem: str, status: int | None) -> None:
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.give_up_after:
            raise ServiceDownError(
                f"{self.service} keeps failing: {self.failures_in_a_row} requests in a row failed "
                f"after their retries; stopped. Last: {problem}", status=status, transient=True)
        raise ApiError(f"{self.service} did not answer successfully: {problem}", status=status, transient=True)

    def _backoff(self, attempt: int) -> float:
        return min(BACKOFF_BASE_S * (2 ** attempt), BACKOFF_MAX_S)

    def _describe_transport_error(self, exc: httpx.TransportError) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"no answer within {self.timeout:g} s ({type(exc).__name__})"
        detail = self._scrub(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            return f"could not connect: {detail}"
        return detail

    def _credentials_message(self, response: httpx.Response) -> str:
        said = self._scrub(self.api_message(response))
        where = f" Check {self.credentials_setting}." if self.credentials_setting else ""
        return (f"{self.service} refused the credentials (HTTP {response.status_code}: {said}): "
                f"the credentials are wrong or lack permission.{where}")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- what the API said (subclasses know their error shapes) -----------------

    def api_message(self, response: httpx.Response) -> str:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase or f"HTTP {response.status_code}"

    def api_code(self, response: httpx.Response) -> Any:
        return None


def json_or_none(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when there is none or it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None
