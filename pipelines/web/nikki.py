"""Nikki: its login form (optionally with a TOTP code), the members table and the CSV report."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from django.conf import settings

from pipelines.web.browser import WebSourceError
from pipelines.web.site import LoginRefused, PageChanged, Site, shown
from pipelines.web.sportlink import scaled_ms

LOGIN_INPUTS = 'input[name="username"], input[name="password"]'
LOGGED_IN = 'nav, .navbar, .sidebar, [data-testid="user-menu"]'
REPORT_LINKS = ('a:has-text("Rapporten")', 'button:has-text("Rapporten")', '[href*="rapport"]', 'a[href*="export"]',
                '.export-btn')
# Scripts Nikki's pages load that the download does not need (and that would reach out to CDNs).
BLOCKED = re.compile(r"(ajax\.googleapis\.com/.*jquery|maxcdn\.bootstrapcdn\.com/.*bootstrap|/js/main\.js)")


def nikki_totp_now(secret: str) -> str:
    """An `otpauth://` URL gives a base32 secret and its parameters; otherwise the secret's
    ASCII bytes are the HMAC-SHA1 key (as Nikki's authenticator set-up shows it)."""
    from pipelines.web.totp import code_from_key

    try:
        return code_from_key(secret)
    except (ValueError, UnicodeEncodeError):
        raise LoginRefused("NIKKI_OTP_SECRET is neither an otpauth:// URL nor a plain key: copy it again from "
                           "Nikki's two-factor set-up") from None


class Nikki(Site):
    name = "Nikki"
    base_url_setting = "NIKKI_URL"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.page.route(BLOCKED, lambda route: route.abort())

    def login(self) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        page = self.page
        self.goto("/", "login", seconds=45, wait_until="load")
        self.fill('input[name="username"]', settings.NIKKI_USERNAME, "login", 15)
        self.fill('input[name="password"]', settings.NIKKI_PASSWORD, "login", 15)
        with_code = page.locator('input[name="otp"]').count() > 0
        if with_code:
            if not settings.NIKKI_OTP_SECRET:
                raise LoginRefused("Nikki asks for a two-factor code: set NIKKI_OTP_SECRET")
            page.fill('input[name="otp"]', nikki_totp_now(settings.NIKKI_OTP_SECRET))
        self.pause(3)
        self.click('button[type="submit"]', "login", 15)
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_url(lambda url: "login" not in url, timeout=scaled_ms(15))
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_selector(LOGGED_IN, timeout=scaled_ms(15))
        if page.locator(LOGIN_INPUTS).count():
            if with_code:
                raise LoginRefused("Nikki refused the login: check NIKKI_USERNAME, NIKKI_PASSWORD and "
                                   "NIKKI_OTP_SECRET (and the server clock)")
            raise LoginRefused("Nikki refused the login: check NIKKI_USERNAME and NIKKI_PASSWORD")

    def check_session(self, page_name: str) -> None:
        if self.logged_in and self.page.locator(LOGIN_INPUTS).count():
            self.logged_in = False
            raise WebSourceError(f"Nikki showed its login form instead of the {page_name} page: the session "
                                 "expired; the next run logs in again")

    def contributions(self) -> tuple[list[list[str]], bytes | None]:
        """The members table's rows (cells as text) and the CSV report (None when there is no report link)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        page = self.page
        self.pause(1)
        self.goto("/leden", "members", wait_until="load")
        self.find("#datatable, table", "members", 10, state="attached")
        try:
            page.wait_for_selector("tbody tr", state="attached", timeout=scaled_ms(15))
        except PlaywrightTimeout:
            return [], self._report()  # an empty table: no contributions this year
        self.pause(2)
        rows = page.eval_on_selector_all(
            "tbody tr", "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(td => td.innerText.trim()))")
        usable = [row for row in rows if len(row) >= 8]
        if rows and not usable:
            raise PageChanged("Nikki's members page changed: its table rows have fewer than 8 cells "
                              "(year, …, KNVB id, …, Nikki id, saldo, status)")
        return usable, self._report()

    def _report(self) -> bytes | None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for selector in REPORT_LINKS:
            if self.page.locator(selector).count():
                try:
                    with self.page.expect_download(timeout=scaled_ms(30)) as info:
                        self.page.locator(selector).first.click(timeout=scaled_ms(30))
                except PlaywrightTimeout:
                    raise PageChanged(f"Nikki's members page: {selector} gave no download within {shown(30)}") \
                        from None
                download = info.value
                return Path(download.path()).read_bytes()
        return None
