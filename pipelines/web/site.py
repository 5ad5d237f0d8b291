"""What the Sportlink and Nikki clients share: bounded waits, pauses, captured answers, clear errors.

Every method here runs in the browser's thread (pipelines.web.browser).
Waits are the ones of the facts the clients were built from, multiplied by
WEB_SOURCE_TIMEOUT_SCALE; a wait that runs out says which page and which
element or answer it was waiting for.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from django.conf import settings

from pipelines.web.browser import WebSourceError
from pipelines.web.convert import parse_json


class PageChanged(WebSourceError):
    """An element or an answer the client relies on did not appear: the site changed."""


class LoginRefused(WebSourceError):
    """The site refused the credentials or the two-factor code."""


class EndpointFailed(WebSourceError):
    """An endpoint answered, but not with a 2xx."""


def scaled(seconds: float) -> float:
    return seconds * settings.WEB_SOURCE_TIMEOUT_SCALE


def shown(seconds: float) -> str:
    return f"{scaled(seconds):g} s"


def head(data: bytes | str, limit: int = 300) -> str:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return " ".join(text[: limit * 2].split())[:limit]


class Site(ABC):
    """A logged-in page on one site; subclasses implement `login()` and the downloads."""

    name = "The site"  # "Sportlink", "Nikki": how people call it
    base_url_setting = ""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.page = context.new_page()
        self.logged_in = False
        self.logins = 0
        self.login_failure: WebSourceError | None = None
        self.rng = random.Random()

    @property
    def base_url(self) -> str:
        return getattr(settings, self.base_url_setting)

    def ensure_login(self) -> None:
        if self.logged_in:
            return
        if self.login_failure is not None:
            # Not tried again in this run (nor by the next children of `all`): a
            # wrong password tried over and over can lock the account.
            raise type(self.login_failure)(f"{self.login_failure} (not tried again in this run)")
        self.logins += 1
        try:
            self.login()
        except WebSourceError as exc:
            self.login_failure = exc
            raise
        self.logged_in = True

    @abstractmethod
    def login(self) -> None:
        """Log in to the site (each site its own pages); WebSourceError when refused."""

    # -- waiting ------------------------------------------------------------------

    def pause(self, low: float, high: float | None = None) -> None:
        """A small random pause, as the tool this replaces makes (WEB_SOURCE_PAUSES=0 turns them off)."""
        if settings.WEB_SOURCE_PAUSES:
            time.sleep(low if high is None else self.rng.uniform(low, high))

    def goto(self, path: str, page_name: str, *, seconds: float = 60, wait_until: str = "networkidle") -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.goto(self.base_url + path, wait_until=wait_until, timeout=scaled(seconds) * 1000)
        except PlaywrightTimeout:
            raise PageChanged(f"{self.name}'s {page_name} page ({path}) did not finish loading within "
                              f"{shown(seconds)}") from None
        except PlaywrightError as exc:
            raise WebSourceError(f"{self.name}'s {page_name} page ({path}) could not be opened: "
                                 f"{head(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}") from None
        self.check_session(page_name)

    def check_session(self, page_name: str) -> None:  # noqa: B027 - a hook; the default checks nothing
        """Subclasses raise when the site sent us back to its login page."""

    def find(self, selector: str, page_name: str, seconds: float, *, state: str = "visible") -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_selector(selector, state=state, timeout=scaled(seconds) * 1000)
        except PlaywrightTimeout:
            raise PageChanged(f"{self.name}'s {page_name} page changed: {selector} not found after "
                              f"{shown(seconds)}") from None

    def click(self, selector: str, page_name: str, seconds: float) -> None:
        self.find(selector, page_name, seconds)
        self._act(lambda: self.page.click(selector, timeout=scaled(seconds) * 1000), selector, page_name, seconds)

    def check(self, selector: str, page_name: str, seconds: float) -> None:
        self.find(selector, page_name, seconds, state="attached")
        self._act(lambda: self.page.check(selector, timeout=scaled(seconds) * 1000), selector, page_name, seconds)

    def fill(self, selector: str, value: str, page_name: str, seconds: float) -> None:
        self.find(selector, page_name, seconds)
        self._act(lambda: self.page.fill(selector, value, timeout=scaled(seconds) * 1000), selector, page_name,
                  seconds)

    def _act(self, action: Callable[[], Any], selector: str, page_name: str, seconds: float) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            action()
        except PlaywrightTimeout:
            raise PageChanged(f"{self.name}'s {page_name} page changed: {selector} could not be used within "
                              f"{shown(seconds)}") from None

    def capture(self, wanted: dict[str, Callable[[Any], bool]], action: Callable[[], Any],
                seconds: float) -> dict[str, Any]:
        """Run `action` with a listener set up before it, and wait up to `seconds` for one
        response matching each of `wanted` (name -> predicate); returns name -> Response for
        those that came."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        got: dict[str, Any] = {}

        def on_response(response: Any) -> None:
            for name, matches in wanted.items():
                if name not in got and matches(response):
                    got[name] = response

        self.page.on("response", on_response)
        try:
            deadline = time.monotonic() + scaled(seconds)
            action()
            while len(got) < len(wanted):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    self.page.wait_for_event("response", timeout=remaining * 1000)
                except PlaywrightTimeout:
                    break
        finally:
            self.page.remove_listener("response", on_response)
        return got

    def body(self, response: Any, endpoint: str) -> bytes:
        """The body of a 2xx answer; otherwise EndpointFailed with the status and the start of the body."""
        try:
            data = response.body()
        except Exception:  # the page navigated away before the body was read
            data = b""
        if not 200 <= response.status < 300:
            raise EndpointFailed(f"{endpoint} answered {response.status}: {head(data)}")
        return data

    def json_body(self, response: Any, endpoint: str) -> Any:
        data = self.body(response, endpoint)
        try:
            return parse_json(data)
        except ValueError:
            raise EndpointFailed(f"{endpoint} did not answer with JSON: {head(data)}") from None
