"""A local stand-in for Sportlink Club and Nikki, written from the documented facts
(docs/development.md, "The web source").

Two small HTTP servers on 127.0.0.1 that behave like the real sites towards a
browser: a Keycloak-style login with `#username`, `#password`, `#kc-login`
and then `#otp` (a real TOTP check with pyotp), a session cookie gating every
page, pages whose own JavaScript fetches the `navajo` JSON endpoints
(member search, teams, member tabs, discipline cases), signed photo URLs,
and Nikki's login form, `PHPSESSID`, `/leden` table and "Rapporten" CSV.

Switches (attributes of `SportlinkStandIn.switches` / `NikkiStandIn.switches`):
`renamed` (element ids served under another id), `fail` (endpoint -> HTTP
status), `slow` (endpoint -> seconds before answering), `empty` (endpoints
answer empty lists), `expire_on` (a page path that ends the session),
`on_hit` (endpoint -> a function called when it is asked for). Wrong
passwords and codes are simply wrong settings: the stand-in checks the real
ones.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pyotp

NAVAJO = "/navajo/entity/common/clubweb"
REALM_AUTH = "/auth/realms/club/protocol/openid-connect/auth"
REALM_POST = "/auth/realms/club/login-actions/authenticate"
# A tiny valid PNG, padded past the 100 bytes a real photo has at least.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
                       "AAAABJRU5ErkJggg==") + b"\0" * 120


@dataclass
class Switches:
    renamed: set[str] = field(default_factory=set)
    fail: dict[str, int] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    empty: set[str] = field(default_factory=set)
    expire_on: str = ""
    # endpoint -> a function called (in the server's thread) when it is asked for
    on_hit: dict[str, Callable[[], object]] = field(default_factory=dict)


def _page(title: str, body: str, script: str = "") -> bytes:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
            f"<body>{body}<script>{script}</script></body></html>").encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StandIn:
    """Base: a server thread, a request log, the session cookie check, the switches."""

    cookie_name = "SESSION"

    def __init__(self) -> None:
        self.switches = Switches()
        self.sessions: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.logins = 0
        self.hits: Counter[str] = Counter()
        handler = type("Handler", (_Handler,), {"standin": self})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def id(self, name: str) -> str:
        """An element id as the page currently serves it (a renamed element gets a new id)."""
        return f"{name}V2" if name in self.switches.renamed else name

    def endpoint(self, name: str, handler: _Handler) -> bool:
        """Apply the `slow` and `fail` switches to `name`; True when an error was sent."""
        self.hits[name] += 1
        if name in self.switches.on_hit:
            self.switches.on_hit[name]()
        delay = self.switches.slow.get(name)
        if delay:
            time.sleep(delay)
        status = self.switches.fail.get(name)
        if status:
            handler.send(status, f"<html><body><h1>{status} Internal Server Error</h1><p>navajo: "
                                 f"{name} failed with java.lang.NullPointerException at "
                                 f"com.dexels.navajo.{'x' * 400}</p></body></html>".encode(), "text/html")
            return True
        return False

    def handle(self, handler: _Handler, method: str) -> None:  # pragma: no cover - subclasses
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self.parts = urlsplit(self.path)
        self.query = {k: v[0] for k, v in parse_qs(self.parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.data = self.rfile.read(length) if length else b""
        self.standin.requests.append((method, self.path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.standin.handle(self, method)

    def cookie(self, name: str) -> str:
        jar = SimpleCookie(self.headers.get("Cookie", ""))
        return jar[name].value if name in jar else ""

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.data.decode()).items()}

    def send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def json(self, value: object) -> None:
        self.send(200, json.dumps(value).encode(), "application/json")

    def redirect(self, location: str, headers: dict[str, str] | None = None) -> None:
        self.send(302, b"", headers={"Location": location, **(headers or {})})


# --- Sportlink Club ------------------------------------------------------------------

def _fetch_script(calls: list[tuple[str, str]]) -> str:
    """JavaScript that fetches each (method, url) the way the app's pages do (credentials included)."""
    return "".join(f"fetch({json.dumps(url)}, {{method: {json.dumps(method)}, credentials: 'same-origin', "
                   "headers: {'Accept': 'application/json'}});" for method, url in calls)


class SportlinkStandIn(StandIn):
    """Sportlink Club with `members` (SearchMembers records plus a private "Status" and "Committee"
    list), `teams` (union and club teams with "Players"/"Staff" lists), photos and discipline cases."""

    def __init__(self, *, username: str, password: str, otp_secret: str, members: list[dict],
                 teams: list[dict] = (), cases: list = (), photos: dict[str, bytes | None] | None = None) -> None:
        super().__init__()
        self.username, self.password, self.otp_secret = username, password, otp_secret
        self.members = list(members)
        self.teams = list(teams)
        self.cases = list(cases)
        self.photos = dict(photos or {})
        self.pending: set[str] = set()
        self.search_bodies: list[dict] = []

    # -- login --------------------------------------------------------------------------

    def _login_form(self, handler: _Handler, error: str = "") -> None:
        body = (f'<div id="kc-content"><form id="kc-form-login" method="post" action="{REALM_POST}">'
                f'<input id="{self.id("username")}" name="username" type="text">'
                f'<input id="{self.id("password")}" name="password" type="password">'
                f'<input id="{self.id("kc-login")}" type="submit" value="Inloggen">'
                + (f'<span id="input-error">{error}</span>' if error else "") + "</form></div>")
        handler.send(200, _page("Inloggen bij Sportlink", body))

    def _otp_form(self, handler: _Handler, error: str = "", cookie: str = "") -> None:
        body = (f'<form id="kc-otp-login-form" method="post" action="{REALM_POST}">'
                f'<label for="otp">Eenmalige code</label><input id="{self.id("otp")}" name="otp" autocomplete="off">'
                f'<input id="{self.id("kc-login")}" type="submit" value="Inloggen">'
                + (f'<span id="input-error">{error}</span>' if error else "") + "</form>")
        headers = {"Set-Cookie": f"KC_PENDING={cookie}; Path=/auth; HttpOnly"} if cookie else {}
        handler.send(200, _page("Tweestapsverificatie", body), headers=headers)

    def _authenticate(self, handler: _Handler) -> None:
        form = handler.form()
        if "otp" in form:
            pending = handler.cookie("KC_PENDING")
            if pending not in self.pending:
                return self._login_form(handler, "Sessie verlopen, log opnieuw in.")
            if not pyotp.TOTP(self.otp_secret).verify(form["otp"], valid_window=1):
                return self._otp_form(handler, "Ongeldige code.")
            self.pending.discard(pending)
            session = secrets.token_hex(16)
            self.sessions.add(session)
            self.logins += 1
            return handler.redirect("/", {"Set-Cookie": f"{self.cookie_name}={session}; Path=/; HttpOnly"})
        if form.get("username") == self.username and form.get("password") == self.password:
            pending = secrets.token_hex(8)
            self.pending.add(pending)
            return self._otp_form(handler, cookie=pending)
        return self._login_form(handler, "Ongeldige gebruikersnaam of wachtwoord.")

    # -- routing ------------------------------------------------------------------------

    def handle(self, handler: _Handler, method: str) -> None:
        path = handler.parts.path
        if path == REALM_AUTH:
            return self._login_form(handler)
        if path == REALM_POST and method == "POST":
            return self._authenticate(handler)
        if path.startswith("/cdn/photos/"):
            return self._photo(handler, path.rsplit("/", 1)[1])
        session = handler.cookie(self.cookie_name)
        if session and self.switches.expire_on and path.startswith(self.switches.expire_on):
            self.sessions.discard(session)
        if session not in self.sessions:
            if path.startswith(NAVAJO):
                return handler.send(401, b'{"error":"not logged in"}', "application/json")
            return handler.redirect(f"{REALM_AUTH}?client_id=clubweb&redirect_uri=%2F")
        if path.startswith(NAVAJO):
            return self._endpoint(handler, method, path[len(NAVAJO):])
        return self._app_page(handler, path)

    def _app_page(self, handler: _Handler, path: str) -> None:
        nav = '<nav role="navigation"><a href="/member/search">Leden</a></nav>'
        if path == "/":
            return handler.send(200, _page("Sportlink Club", nav + '<div id="panelHeaderTasks">Taken</div>'))
        if path == "/member/search":
            body = (nav + f'<button id="{self.id("btnShowMore")}" onclick="more()">Meer filters</button>'
                    '<div id="more" style="display:none">'
                    f'<label><input type="checkbox" id="{self.id("scFetchUnionTeams_input")}"> Bondsteams</label>'
                    # By default the search selects active members and those eligible for removal.
                    + "".join(f'<button class="chip{" on" * (s != "INACTIVE")}" id="{self.id("chipStatus" + s)}" '
                              f'data-status="{s}" onclick="this.classList.toggle(\'on\')">{s}</button>'
                              for s in ("ACTIVE", "ELIGABLE_FOR_REMOVE", "INACTIVE"))
                    + f'</div><button id="{self.id("btnSearch")}" onclick="search()">Zoeken</button>')
            script = (
                "function more(){document.getElementById('more').style.display='block';}"
                "function search(){"
                "const statuses=[...document.querySelectorAll('.chip.on')].map(c=>c.dataset.status);"
                f"const box=document.getElementById({json.dumps(self.id('scFetchUnionTeams_input'))});"
                f"fetch({json.dumps(NAVAJO + '/member/search/SearchMembers')},{{method:'POST',"
                "credentials:'same-origin',headers:{'Content-Type':'application/json'},"
                "body:JSON.stringify({Statuses:statuses,FetchUnionTeams:!!(box&&box.checked)})})"
                ".then(r=>r.text()).then(t=>{document.body.dataset.result=t.length;});}")
            return handler.send(200, _page("Leden zoeken", body, script))
        if path in ("/teams/union-teams", "/teams/club-teams"):
            endpoint = "UnionTeams" if "union" in path else "ClubTeams"
            return handler.send(200, _page("Teams", nav, _fetch_script([("GET", f"{NAVAJO}/team/{endpoint}?")])))
        if path.startswith("/teams/team-details/") and path.endswith("/members"):
            team_id = path.split("/")[3]
            team = next((t for t in self.teams if t["PublicTeamId"] == team_id), None)
            kind = "Union" if team is None or team.get("Kind", "Union") == "Union" else "Club"
            return handler.send(200, _page("Team", nav, _fetch_script([
                ("GET", f"{NAVAJO}/team/{kind}TeamPlayers?PublicTeamId={team_id}"),
                ("GET", f"{NAVAJO}/team/{kind}TeamNonPlayers?PublicTeamId={team_id}")])))
        if path.startswith("/member/member-details/"):
            _, _, _, person, tab = path.split("/")[:5]
            calls = {"functions": ["function/MemberFunctions", "function/MemberCommittees"],
                     "other": ["remarks/MemberFreeFields", "member/MemberHeader"]}.get(tab, [])
            return handler.send(200, _page("Lid", nav, _fetch_script(
                [("GET", f"{NAVAJO}/member/{c}?PublicPersonId={person}&ShowInactive=false") for c in calls])))
        if path == "/competition-affairs/discipline-cases":
            body = (nav + '<div role="tablist"><button role="tab">Teamtuchtzaken</button>'
                    f'<button role="tab" id="tabIndividual" onclick="cases()">'
                    f'{"Persoonlijke zaken" if "tab" in self.switches.renamed else "Individuele tuchtzaken"}'
                    "</button></div>")
            script = (f"function cases(){{fetch({json.dumps(NAVAJO + '/competition/DisciplineClubCasesPlayer?')},"
                      "{credentials:'same-origin'});}")
            return handler.send(200, _page("Tuchtzaken", body, script))
        handler.send(404, _page("Niet gevonden", "<h1>404</h1>"))

    def _endpoint(self, handler: _Handler, method: str, path: str) -> None:
        name = path.rsplit("/", 1)[1]
        if self.endpoint(name, handler):
            return
        empty = name in self.switches.empty
        if name == "SearchMembers" and method == "POST":
            request = json.loads(handler.data or b"{}")
            self.search_bodies.append(request)
            statuses = set(request.get("Statuses") or ["ACTIVE"])
            members = [] if empty else [self._public(m, request.get("FetchUnionTeams")) for m in self.members
                                        if m.get("Status", "ACTIVE") in statuses]
            return handler.json({"Members": members})
        if name in ("UnionTeams", "ClubTeams"):
            kind = name[:-5]
            return handler.json({"Team": [] if empty else [
                {k: v for k, v in t.items() if k not in {"Players", "Staff", "Kind"}}
                for t in self.teams if t.get("Kind", "Union") == kind]})
        if name.endswith(("TeamPlayers", "TeamNonPlayers")):
            team = next((t for t in self.teams if t["PublicTeamId"] == handler.query.get("PublicTeamId")), {})
            return handler.json({"Person": team.get("Staff" if "NonPlayers" in name else "Players", [])})
        person = handler.query.get("PublicPersonId", "")
        member = next((m for m in self.members if m["PublicPersonId"] == person), None)
        if name in ("MemberFunctions", "MemberCommittees", "MemberFreeFields", "MemberHeader") and member is None:
            return handler.send(404, b'{"error":"unknown person"}', "application/json")
        if name == "MemberFunctions":
            return handler.json({"Function": member.get("Function", [])})
        if name == "MemberCommittees":
            return handler.json({"Committee": member.get("Committee", [])})
        if name == "MemberFreeFields":
            return handler.json({"FreeFields": {f"Remarks{i}": {"Value": ""} for i in range(1, 9)}})
        if name == "MemberHeader":
            photo = None
            if person in self.photos:
                photo = {"Url": f"{self.url}/cdn/photos/{person}?sig={secrets.token_hex(8)}",
                         "PhotoDate": member.get("PersonImageDate", "")}
            return handler.json({"HasFinancialTransferBlockOwnClub": False, "Photo": photo})
        if name == "DisciplineClubCasesPlayer":
            return handler.json([] if empty else self.cases)
        handler.send(404, b'{"error":"unknown endpoint"}', "application/json")

    @staticmethod
    def _public(member: dict, union_teams: bool) -> dict:
        public = {k: v for k, v in member.items() if k not in {"Status", "Committee", "Function"}}
        if not union_teams:
            public.pop("UnionTeams", None)
        return public

    def _photo(self, handler: _Handler, person: str) -> None:
        self.hits["photo"] += 1
        if "sig" not in handler.query:
            return handler.send(403, b"Forbidden", "text/plain")
        data = self.photos.get(person)
        if data is None:
            return handler.send(404, b"Not Found\n", "text/plain")
        handler.send(200, data, "image/png")


# --- Nikki -----------------------------------------------------------------------------

class NikkiStandIn(StandIn):
    """Nikki with `rows` (the members table: year, name, address, KNVB id, team, Nikki id, saldo,
    status) and `report` (nikki_id -> hoofdsom, for the CSV report; None: no report link)."""

    cookie_name = "PHPSESSID"

    def __init__(self, *, username: str, password: str, otp_key: str = "", rows: list[list[str]],
                 report: dict[str, str] | None = None) -> None:
        super().__init__()
        self.username, self.password, self.otp_key = username, password, otp_key
        self.rows = rows
        self.report = report

    def _code_ok(self, code: str) -> bool:
        key = base64.b32encode(self.otp_key.encode()).decode()
        return pyotp.TOTP(key).verify(code, valid_window=1)

    def _login_form(self, handler: _Handler, error: str = "") -> None:
        body = ('<form method="post" action="/login"><input name="username"><input name="password" type="password">'
                + ('<input name="otp" inputmode="numeric">' if self.otp_key else "")
                + '<button type="submit">Inloggen</button>'
                + (f'<div class="alert">{error}</div>' if error else "") + "</form>")
        handler.send(200, _page("Mijn Nikki", body))

    def handle(self, handler: _Handler, method: str) -> None:
        path = handler.parts.path
        if path == "/js/main.js":
            return handler.send(200, b"document.body.dataset.main = 'loaded';", "text/javascript")
        if path in ("/", "/login") and method == "GET":
            return self._login_form(handler)
        if path == "/login" and method == "POST":
            form = handler.form()
            if (form.get("username") == self.username and form.get("password") == self.password
                    and (not self.otp_key or self._code_ok(form.get("otp", "")))):
                session = secrets.token_hex(16)
                self.sessions.add(session)
                self.logins += 1
                return handler.redirect("/dashboard", {"Set-Cookie": f"PHPSESSID={session}; Path=/; HttpOnly"})
            return self._login_form(handler, "Onjuiste inloggegevens.")
        if handler.cookie("PHPSESSID") not in self.sessions:
            return self._login_form(handler, "Log in om verder te gaan.")
        if path == "/dashboard":
            return handler.send(200, _page("Nikki", '<nav class="navbar">Nikki</nav><p>Welkom</p>'))
        if path == "/leden":
            if self.endpoint("leden", handler):
                return
            rows = [] if "leden" in self.switches.empty else self.rows
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            report = '<a href="/rapporten/contributie.csv">Rapporten</a>' if self.report is not None else ""
            body = (f'<nav class="navbar">Nikki</nav>{report}<table id="datatable"><thead><tr><th>Jaar</th>'
                    "<th>Naam</th><th>Adres</th><th>Lidnr.</th><th>Team</th><th>Nikki ID</th><th>Saldo</th>"
                    f"<th>Status</th></tr></thead><tbody>{cells}</tbody></table>"
                    '<script src="/js/main.js"></script>')
            return handler.send(200, _page("Leden", body))
        if path == "/rapporten/contributie.csv":
            if self.endpoint("rapport", handler):
                return
            lines = ["\ufeffnikki_id;lidnummer;hoofdsom;betaald"]
            lines += [f'"{nikki_id}";"";"{amount}";"0"' for nikki_id, amount in (self.report or {}).items()]
            return handler.send(200, "\r\n".join(lines).encode(), "text/csv; charset=utf-8",
                                {"Content-Disposition": 'attachment; filename="contributie.csv"'})
        handler.send(404, _page("Niet gevonden", "<h1>404</h1>"))


# --- data ------------------------------------------------------------------------------

def members_json_from_csv(csv_bytes: bytes) -> list[dict]:
    """The members of a CSV member export as SearchMembers records (the same people, Sportlink's keys).

    Used to prove the two sources give the same records, and by the benchmark.
    """
    from pipelines.readers import open_table
    from pipelines.web.convert import MEMBER_FIELDS

    table = open_table("members.csv", csv_bytes)
    members = []
    for _number, row in table.dicts():
        member: dict = {}
        for key, json_key in MEMBER_FIELDS:
            value = row.get(key, "")
            if key == "gender":
                value = {"man": "Male", "vrouw": "Female"}.get(value.casefold(), value)
            if key == "house_number" and value.isdigit():
                value = int(value)
            member[json_key] = value if value != "" else None
        member["LastUpdate"] = "2026-01-10"
        members.append(member)
    return members
