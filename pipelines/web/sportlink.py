"""Sportlink Club: the Keycloak login with a TOTP code, then the JSON its own pages fetch.

Built from the documented behaviour of the site (docs/development.md, "The web source"): the
pages, the element ids and the `navajo` endpoints. Every method runs in the
browser's thread and returns plain data.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

from django.conf import settings

from pipelines.web.browser import WebSourceError
from pipelines.web.site import LoginRefused, PageChanged, Site, shown

NAVAJO = "/navajo/entity/common/clubweb"
SEARCH_MEMBERS = f"{NAVAJO}/member/search/SearchMembers"
REALM = "/auth/realms/"
DASHBOARD_SELECTORS = ('#panelHeaderTasks', '[id*="panelHeader"]', 'nav[role="navigation"]',
                       '[data-testid="dashboard"]', 'a[href*="/member/"]')
DISCIPLINE_TAB_SELECTORS = ('button:has-text("Individuele tuchtzaken")', '[data-tab="individual"]',
                            'text=Individuele tuchtzaken', '[role="tab"]:has-text("Individuele")')


def totp_now(secret: str) -> str:
    """The current code of the base32 SPORTLINK_OTP_SECRET."""
    from pipelines.web.totp import code

    try:
        return code(secret)
    except ValueError:
        raise LoginRefused("SPORTLINK_OTP_SECRET is not a valid base32 secret: copy the secret shown when "
                           "two-factor authentication was set up for the Sportlink account") from None


def _is(method: str | None, part: str, *, not_part: str = "") -> Any:
    def matches(response: Any) -> bool:
        url = response.url
        return (part in url and (not not_part or not_part not in url)
                and (method is None or response.request.method == method))
    return matches


class Sportlink(Site):
    name = "Sportlink"
    base_url_setting = "SPORTLINK_URL"

    # -- login ----------------------------------------------------------------------

    def login(self) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        page = self.page
        self.goto("/", "login", seconds=45, wait_until="load")
        for selector in ("#username", "#password", "#kc-login"):
            self.find(selector, "login", 45)
        page.fill("#username", settings.SPORTLINK_USERNAME)
        page.fill("#password", settings.SPORTLINK_PASSWORD)
        self._submit("login")
        try:
            page.wait_for_selector("#otp, #username", timeout=scaled_ms(45))
        except PlaywrightTimeout:
            raise PageChanged(f"Sportlink's two-factor page changed: #otp not found after {shown(45)}") from None
        if page.locator("#otp").count() == 0:
            raise LoginRefused("Sportlink refused the login: check SPORTLINK_USERNAME and SPORTLINK_PASSWORD")
        page.fill("#otp", totp_now(settings.SPORTLINK_OTP_SECRET))
        self._submit("two-factor")
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_load_state("networkidle", timeout=scaled_ms(45))
        if REALM in page.url:
            raise LoginRefused("the two-factor code was rejected: check SPORTLINK_OTP_SECRET and the server clock")
        for selector in DASHBOARD_SELECTORS:
            try:
                page.wait_for_selector(selector, timeout=scaled_ms(5))
                return
            except PlaywrightTimeout:
                continue
        if page.locator("#username, #password, #kc-login").count():
            raise LoginRefused("Sportlink refused the login: check SPORTLINK_USERNAME and SPORTLINK_PASSWORD")
        # No known dashboard element, but no login form either: assume we are in (as the original does).

    def _submit(self, page_name: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            with self.page.expect_navigation(wait_until="load", timeout=scaled_ms(45)):
                self.page.click("#kc-login", timeout=scaled_ms(45))
        except PlaywrightTimeout:
            raise PageChanged(f"Sportlink's {page_name} page did not answer #kc-login within {shown(45)}") \
                from None

    def check_session(self, page_name: str) -> None:
        if self.logged_in and REALM in self.page.url:
            self.logged_in = False
            raise WebSourceError(f"Sportlink sent the {page_name} page back to its login: the session expired "
                                 "or the account was logged in elsewhere; the next run logs in again")

    # -- members --------------------------------------------------------------------

    def members(self) -> bytes:
        """SearchMembers' raw answer: `{"Members": [...]}` (the search's default selection, active
        members, with their union teams)."""
        self.goto("/member/search", "member search")
        self.pause(1, 4)
        self.click("#btnShowMore", "member search", 20)
        self.check("#scFetchUnionTeams_input", "member search", 20)
        self.find("#btnSearch", "member search", 20)
        got = self.capture({"SearchMembers": _is("POST", SEARCH_MEMBERS)},
                           lambda: self.page.click("#btnSearch"), 60)
        if "SearchMembers" not in got:
            raise PageChanged(f"Sportlink's member search page changed: no SearchMembers answer within "
                              f"{shown(60)} after #btnSearch was clicked")
        return self.body(got["SearchMembers"], "SearchMembers")

    # -- teams ----------------------------------------------------------------------

    def teams(self) -> dict:
        """Union and club teams, each with the `{"Person": [...]}` answers of its members page."""
        raw: dict[str, Any] = {"UnionTeams": None, "ClubTeams": None, "members": {}}
        for key, path, endpoint in (("UnionTeams", "/teams/union-teams", "/team/UnionTeams"),
                                    ("ClubTeams", "/teams/club-teams", "/team/ClubTeams")):
            got = self.capture({key: _is("GET", endpoint, not_part="Players")},
                               partial(self.goto, path, f"{key} list"), 60)
            if key not in got:
                raise PageChanged(f"Sportlink's {path} page changed: no {endpoint} answer within {shown(60)}")
            raw[key] = self.json_body(got[key], key)
        for kind, body in (("Union", raw["UnionTeams"]), ("Club", raw["ClubTeams"])):
            teams = body.get("Team") if isinstance(body, dict) else None
            if isinstance(teams, dict):
                teams = [teams]
            for team in teams or []:
                if not isinstance(team, dict) or not team.get("PublicTeamId"):
                    continue
                if kind == "Club" and team.get("HasUnionTeamConnection"):
                    continue  # the same team, already listed as a union team
                team_id = str(team["PublicTeamId"])
                wanted = {"players": _is(None, f"/{kind}TeamPlayers"), "staff": _is(None, f"/{kind}TeamNonPlayers")}
                got = self.capture(wanted, partial(self.goto, f"/teams/team-details/{team_id}/members", "team members",
                                                   wait_until="commit"), 10)
                raw["members"][team_id] = {
                    "kind": kind,
                    "players": self.json_body(got["players"], f"{kind}TeamPlayers") if "players" in got else None,
                    "staff": self.json_body(got["staff"], f"{kind}TeamNonPlayers") if "staff" in got else None,
                }
        return raw

    # -- member tabs ----------------------------------------------------------------

    def member_tab(self, knvb_id: str, tab: str, endpoint: str) -> Any:
        """The JSON of `endpoint` fetched by the member's `tab` page; raises when it does not come."""
        got = self.capture({endpoint: _is(None, f"/{endpoint}?")}, lambda: self.goto(
            f"/member/member-details/{knvb_id}/{tab}", f"member {tab}"), 15)
        if endpoint not in got:
            raise PageChanged(f"Sportlink's member {tab} page changed: no {endpoint} answer within {shown(15)} "
                              f"(member {knvb_id})")
        return self.json_body(got[endpoint], endpoint)

    def committees(self, knvb_ids: list[str], *, cancelled: Any = None) -> tuple[dict[str, Any], dict[str, str]]:
        """Each member's `{"Committee": [...]}`; and the members whose answer did not come, with why.

        `cancelled`: the run's cancel event (a threading.Event), checked before each member:
        this loop visits every member and can take many minutes.
        """
        from runs.pipeline import Cancelled

        answers: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for number, knvb_id in enumerate(knvb_ids):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled()
            if number:
                self.pause(0.5, 1.5)
            try:
                answers[knvb_id] = self.member_tab(knvb_id, "functions", "MemberCommittees")
            except WebSourceError as exc:
                if not self.logged_in:
                    raise  # the session expired: every next member would fail too
                failed[knvb_id] = str(exc)
        return answers, failed

    def photo_url(self, knvb_id: str) -> tuple[str, str]:
        """The signed `Photo.Url` and `PhotoDate` of the member header ("" when there is no photo)."""
        header = self.member_tab(knvb_id, "other", "MemberHeader")
        photo = header.get("Photo") if isinstance(header, dict) else None
        if not isinstance(photo, dict) or not photo.get("Url"):
            return "", ""
        return str(photo["Url"]), str(photo.get("PhotoDate") or "")

    # -- discipline -----------------------------------------------------------------

    def discipline(self) -> Any:
        """The individual discipline cases (DisciplineClubCasesPlayer's JSON)."""
        self.goto("/competition-affairs/discipline-cases", "discipline cases")
        self.pause(1)
        tab = self._discipline_tab()
        got = self.capture({"cases": _is("GET", "/DisciplineClubCasesPlayer")}, lambda: self.page.click(tab), 60)
        if "cases" not in got:
            raise PageChanged(f"Sportlink's discipline cases page changed: no DisciplineClubCasesPlayer answer "
                              f"within {shown(60)} after the tab {tab} was clicked")
        return self.json_body(got["cases"], "DisciplineClubCasesPlayer")

    def _discipline_tab(self) -> str:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for selector in (*DISCIPLINE_TAB_SELECTORS, "role=tab[name=/individuele/i]"):
            try:
                self.page.locator(selector).first.wait_for(state="visible", timeout=scaled_ms(2))
                return selector
            except PlaywrightTimeout:
                continue
        raise PageChanged("Sportlink's discipline cases page changed: the 'Individuele tuchtzaken' tab not found "
                          f"after {shown(2)} per selector (tried {', '.join(DISCIPLINE_TAB_SELECTORS)})")


def scaled_ms(seconds: float) -> float:
    return seconds * settings.WEB_SOURCE_TIMEOUT_SCALE * 1000
