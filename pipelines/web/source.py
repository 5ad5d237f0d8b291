"""The web sources: the same interface as `pipelines.sources.ExportSource`.

    source = sportlink_source(run)     # WebSportlinkSource when SPORTLINK_SOURCE=web
    table = source.table("members")    # a readers.Table, read by read_members as a CSV export would be
    photos = source.photos()           # relatiecode -> file whose load() fetches the photo

One browser and one login per run: the `WebSession` is kept in a context
variable for the run (and for the children of `all`, which shares its own),
and closed when that run finishes (`PipelineRun.on_finish`). Each raw answer
is kept gzipped in the run's folder (`runs.files`, pruned with the run), so a
run can be audited and its data replayed.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from pipelines.readers import Table, parse_date
from pipelines.sources import ExportFile
from pipelines.web import convert
from pipelines.web.browser import Browser, WebSourceError
from runs.files import run_files_dir

logger = logging.getLogger("pipelines.web")

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PHOTO_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}


class WebSession:
    """One browser and one logged-in page per site, for a run and the runs it starts."""

    def __init__(self, run_id: int | None = None) -> None:
        self.run_id = run_id
        self.browser: Browser | None = None
        self.sites: dict[str, Any] = {}
        self.cache: dict[str, Any] = {}

    def call(self, site: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """`site.method(*args)` in the browser's thread, logging in first if this session has not."""
        if self.browser is None:
            self.browser = Browser()

        def work(context: Any) -> Any:
            client = self.sites.get(site)
            if client is None:
                client = self.sites[site] = _site_class(site)(context)
            client.ensure_login()
            return getattr(client, method)(*args, **kwargs)

        return self.browser.call(work)

    def logins(self, site: str) -> int:
        client = self.sites.get(site)
        return client.logins if client is not None else 0

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.browser = None


def _site_class(site: str) -> type:
    if site == "sportlink":
        from pipelines.web.sportlink import Sportlink

        return Sportlink
    from pipelines.web.nikki import Nikki

    return Nikki


_current: ContextVar[WebSession | None] = ContextVar("syncsite_web_session", default=None)


def session_for(run: Any = None) -> WebSession:
    """The web session of this run: the one already open (a parent's, e.g. `all`), or a new one
    that is closed when `run` finishes."""
    session = _current.get()
    if session is not None:
        return session
    if run is None:
        return WebSession()  # outside a run (a shell): the caller closes it
    session = WebSession(run.run_id)
    token = _current.set(session)

    def close() -> None:
        try:
            session.close()
        finally:
            _current.reset(token)

    run.on_finish(close)
    return session


def share_session(run: Any) -> None:
    """Open the web session for `run` so that the child runs it starts share its browser and login."""
    session_for(run)


def _missing(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not getattr(settings, name)]


@dataclass
class _WebSource:
    session: WebSession
    run_id: int | None
    label: str = ""
    archived: list[str] = field(default_factory=list)
    cancelled: Any = None  # the run's cancel event, for the long loops in the browser's thread

    site: ClassVar[str] = ""
    credentials: ClassVar[tuple[str, ...]] = ()
    url_setting: ClassVar[str] = ""

    def describe(self) -> str:
        parts = urlsplit(getattr(settings, self.url_setting))
        port = f":{parts.port}" if parts.port else ""
        return (f"{self.label} ({parts.scheme}://{parts.hostname or ''}{port}, web; raw downloads in "
                f"{run_files_dir(self.run_id)})")

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        missing = _missing(self.credentials)
        if missing:
            raise WebSourceError(f"{self.label} is set as a web source, but {', '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} not set")
        return self.session.call(self.site, method, *args, **kwargs)

    def archive(self, name: str, data: bytes) -> Path | None:
        """Keep a raw download gzipped in the run's folder; a full disk never fails the download.

        Personal data: the folder and the file are readable by syncsite's own user only.
        """
        folder = run_files_dir(self.run_id)
        path = folder / f"{name}.gz"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(gzip.compress(data, compresslevel=6))
        except OSError as exc:
            logger.warning("could not keep the raw download %s: %s", path, exc)
            return None
        self.archived.append(path.name)
        return path

    def archive_json(self, name: str, value: Any) -> None:
        self.archive(name, json.dumps(value, ensure_ascii=False).encode())

    def files(self) -> list[ExportFile]:
        return []


class WebSportlinkSource(_WebSource):
    site = "sportlink"
    credentials = ("SPORTLINK_USERNAME", "SPORTLINK_PASSWORD", "SPORTLINK_OTP_SECRET")
    url_setting = "SPORTLINK_URL"

    def __init__(self, session: WebSession, run_id: int | None, cancelled: Any = None) -> None:
        super().__init__(session, run_id, label="Sportlink Club", cancelled=cancelled)

    def table(self, kind: str) -> Table:
        if kind == "members":
            return convert.members_table(self.members(), filename="Sportlink SearchMembers")
        if kind == "teams":
            raw = self.call("teams")
            self.archive_json("sportlink-teams.json", raw)
            return convert.teams_table(team_rows(raw), filename="Sportlink teams")
        if kind == "functions":
            return convert.functions_table(self.function_rows(), filename="Sportlink MemberCommittees")
        if kind == "discipline":
            body = self.call("discipline")
            self.archive_json("sportlink-discipline.json", body)
            return convert.discipline_table(body, filename="Sportlink DisciplineClubCasesPlayer")
        raise WebSourceError(f"Sportlink Club has no {kind} download")

    def members(self) -> dict:
        """SearchMembers' answer, fetched once per session (people and functions share it in `all`)."""
        body = self.session.cache.get("members")
        if body is None:
            data = self.call("members")
            self.archive("sportlink-members.json", data)
            body = convert.load_json(data, "SearchMembers")
            convert.records_of(body, "Members", "SearchMembers")  # the shape, before anything else
            if not body["Members"]:
                # Not a club that lost every member overnight: a search that finds nobody is
                # taken as a changed page, so nobody is marked former.
                raise WebSourceError("SearchMembers answered with no members at all: check the member search "
                                     "in Sportlink Club by hand (nobody was marked former)")
            self.session.cache["members"] = body
        return body

    def function_rows(self) -> list[list[str]]:
        codes = [str(m.get("PublicPersonId") or "") for m in self.members()["Members"] if isinstance(m, dict)]
        codes = [code for code in dict.fromkeys(codes) if code]
        answers, failed = self.call("committees", codes, cancelled=self.cancelled)
        self.archive_json("sportlink-committees.json", {"answers": answers, "failed": failed})
        if failed:
            examples = "; ".join(f"{code}: {why}" for code, why in list(failed.items())[:3])
            raise WebSourceError(f"the functions of {len(failed)} member(s) could not be read, so no function is "
                                 f"closed this run: {examples}")
        rows: list[list[str]] = []
        for code in codes:
            rows.extend(convert.committee_rows(code, answers[code]))
        return rows

    def photos(self) -> dict[str, ExportFile]:
        """Members with a Sportlink photo that is recent (SPORTLINK_PHOTO_DAYS) or not in the registry yet.

        Each file's `load()` reads the signed Photo.Url from the member's page and downloads it;
        no photo there (or a 404 from the photo server) loads as b"" (no photo, not an error).
        """
        from pipelines.models import Member

        cutoff = timezone.localdate() - timedelta(days=settings.SPORTLINK_PHOTO_DAYS)
        without = set(Member.objects.filter(photo_hash="").values_list("knvb_id", flat=True).iterator(2000))
        photos: dict[str, ExportFile] = {}
        for member in self.members()["Members"]:
            if not isinstance(member, dict):
                continue
            code = str(member.get("PublicPersonId") or "").upper()
            taken = _date(member.get("PersonImageDate"))
            if code and taken is not None and (taken >= cutoff or code in without):
                photos[code] = WebPhoto(self, code)
        return photos


def _date(value: Any) -> date | None:
    try:
        return parse_date(str(value or "").strip(), "photo date")
    except ValueError:
        return None


class WebPhoto(ExportFile):
    """A member photo fetched on `load()`; its name (and suffix) is known once loaded."""

    def __init__(self, source: WebSportlinkSource, code: str) -> None:
        super().__init__(name=f"{code}.jpg", load=self._load, head=lambda: b"")
        self.source, self.code = source, code

    def _load(self) -> bytes:
        url, _taken = self.source.call("photo_url", self.code)
        if not url:
            return b""
        data, suffix = download_photo(url, self.code)
        self.name = f"{self.code}{suffix}"
        return data


def download_photo(url: str, code: str) -> tuple[bytes, str]:
    """GET a signed photo URL outside the browser (no cookies, 10 s): (bytes, suffix); (b"", "") on 404."""
    import httpx

    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"  # never the signature
    if parts.scheme != "https" and parts.hostname not in _LOOPBACK:
        raise WebSourceError(f"the photo URL of {code} is not https: {shown}")
    try:
        response = httpx.get(url, timeout=10 * settings.WEB_SOURCE_TIMEOUT_SCALE, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise WebSourceError(f"the photo of {code} could not be downloaded from {shown}: {type(exc).__name__}") \
            from None
    if response.status_code == 404:
        return b"", ""  # permanently unavailable: no photo
    if not 200 <= response.status_code < 300:
        raise WebSourceError(f"the photo server answered {response.status_code} for {code} ({shown})")
    if len(response.content) < 100:
        raise WebSourceError(f"the photo of {code} is only {len(response.content)} bytes: not an image ({shown})")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return response.content, PHOTO_TYPES.get(content_type, ".jpg")


def team_rows(raw: dict) -> list[list[str]]:
    """Rows of the team export from the teams download; a team page that answered nothing for
    every team means the page changed (not that every team is empty)."""
    teams: dict[str, dict] = {}
    for key in ("UnionTeams", "ClubTeams"):
        body = raw.get(key)
        items = convert.records_of(body, "Team", key) if body is not None else []
        for team in items:
            if isinstance(team, dict) and team.get("PublicTeamId"):
                teams.setdefault(str(team["PublicTeamId"]), team)
    members = raw.get("members", {})
    answered = [m for m in members.values() if m.get("players") is not None or m.get("staff") is not None]
    if members and not answered:
        raise WebSourceError(f"Sportlink's team members page changed: none of the {len(members)} teams answered "
                             "with its players or staff (TeamPlayers / TeamNonPlayers)")
    rows: list[list[str]] = []
    for team_id, found in members.items():
        team = teams.get(team_id, {"PublicTeamId": team_id})
        for part, players in (("players", True), ("staff", False)):
            body = found.get(part)
            if body is not None:
                rows.extend(convert.team_rows(team, convert.records_of(body, "Person", f"team {team_id} {part}"),
                                              players=players))
    return rows


class WebNikkiSource(_WebSource):
    site = "nikki"
    credentials = ("NIKKI_USERNAME", "NIKKI_PASSWORD")
    url_setting = "NIKKI_URL"

    def __init__(self, session: WebSession, run_id: int | None) -> None:
        super().__init__(session, run_id, label="Nikki")

    def table(self, kind: str) -> Table:
        if kind != "nikki":
            raise WebSourceError(f"Nikki has no {kind} download")
        rows, report = self.call("contributions")
        self.archive_json("nikki-leden.json", rows)
        if report is not None:
            self.archive("nikki-rapport.csv", report)
        return convert.nikki_table(rows, report, filename="Nikki leden")

    def photos(self) -> dict[str, ExportFile]:
        return {}


def sportlink_web_source(run: Any = None) -> WebSportlinkSource:
    session = session_for(run)
    if run is None:
        return WebSportlinkSource(session, session.run_id)
    return WebSportlinkSource(session, run.run_id, cancelled=run.tracker.cancel_event)


def nikki_web_source(run: Any = None) -> WebNikkiSource:
    session = session_for(run)
    return WebNikkiSource(session, run.run_id if run is not None else session.run_id)
