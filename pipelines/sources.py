"""Where the exports come from: a directory, or https URLs, or the bundled demo.

`SPORTLINK_EXPORT_DIR` / `NIKKI_EXPORT_DIR` is either a directory holding the
CSV files (and a `photos/` folder with `<relatiecode>.jpg|png`), or one or
more https URLs (comma- or space-separated) of CSV files or of a zip archive
holding them. Empty means the bundled demo exports in `pipelines/demo/`.
Files are recognised by their header row, never by their name.

With SPORTLINK_SOURCE=web / NIKKI_SOURCE=web the sources are the sites
themselves (pipelines.web.source), behind the same interface.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

from pipelines.readers import (
    SPECS_BY_KIND,
    ExportError,
    FileSpec,
    Table,
    classify,
    open_table,
    shown_headings,
    sniff,
)

if TYPE_CHECKING:
    from pipelines.web.source import WebNikkiSource, WebSportlinkSource

DEMO_DIR = Path(__file__).resolve().parent / "demo"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
_HEADER_BYTES = 16384
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class ExportFile:
    name: str
    load: Callable[[], bytes]
    head: Callable[[], bytes]
    mtime: float = 0.0


@dataclass
class ExportSource:
    """A set of export files and photos read from one location."""

    location: str
    label: str = "export"
    _files: list[ExportFile] | None = field(default=None, repr=False)
    _photos: dict[str, ExportFile] | None = field(default=None, repr=False)

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("https://", "http://"))

    def describe(self) -> str:
        if self.is_url:
            return ", ".join(_safe_url(u) for u in _urls(self.location))
        return self.location

    # -- listing --------------------------------------------------------------------

    def _scan(self) -> None:
        if self._files is not None:
            return
        files: list[ExportFile] = []
        photos: dict[str, ExportFile] = {}
        if self.is_url:
            for url in _urls(self.location):
                data, final_url = _fetch(url)
                name = Path(urlsplit(final_url).path).name or "export.csv"
                if data[:4] == b"PK\x03\x04":
                    _scan_zip(data, files, photos)
                else:
                    files.append(_memory_file(name, data))
        else:
            root = Path(self.location)
            if not root.is_dir():
                raise ExportError(f"The {self.label} directory {self.location} does not exist or is not a directory")
            for path in sorted(root.iterdir()):
                if path.is_file() and path.suffix.lower() in {".csv", ".txt"}:
                    files.append(_path_file(path))
            photo_dir = root / "photos"
            if photo_dir.is_dir():
                for path in sorted(photo_dir.iterdir()):
                    if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES:
                        photos[path.stem.upper()] = _path_file(path)
        self._files, self._photos = files, photos

    def files(self) -> list[ExportFile]:
        self._scan()
        return list(self._files or [])

    def photos(self) -> dict[str, ExportFile]:
        """Photo files by relatiecode (upper case)."""
        self._scan()
        return dict(self._photos or {})

    # -- finding one kind of export ------------------------------------------------

    def table(self, kind: str) -> Table:
        """The export of `kind` ("members", "teams", ...), mapped and ready to read.

        Raises ExportError naming the location and what was expected when no
        file has the right header row, or MissingColumns (an ExportError) when
        the right file misses required columns.
        """
        spec = SPECS_BY_KIND[kind]
        seen: list[str] = []
        candidates: list[ExportFile] = []
        for export in self.files():
            head = export.head()
            if len(head) >= _HEADER_BYTES and b"\n" in head:
                head = head[: head.rindex(b"\n")]  # never decode half a character
            try:
                _text, _damaged, header = sniff(export.name, head)
            except ExportError as exc:
                seen.append(str(exc))  # empty, binary, damaged heading row: named with the file
                continue
            found = classify(header)
            if found is spec:
                candidates.append(export)
            if found:
                seen.append(f"{export.name} ({found.kind} export)")
            else:
                seen.append(f"{export.name}: not a recognised export (headings: {shown_headings(header)})")
        if not candidates:
            raise ExportError(_not_found(spec, self, seen))
        # Several exports of one kind: the newest wins.
        export = max(candidates, key=lambda f: f.mtime)
        table = open_table(export.name, export.load(), spec)
        return table


def _not_found(spec: FileSpec, source: ExportSource, seen: list[str]) -> str:
    required = [c.headings[0] for c in spec.columns if c.required]
    return (f"No {spec.kind} export found in {source.describe()}: expected a CSV file with the headings "
            f"{', '.join(repr(h) for h in required)}. Files found: {'; '.join(seen) or 'none'}.")


def _urls(location: str) -> list[str]:
    return [part for part in location.replace(",", " ").split() if part]


def _safe_url(url: str) -> str:
    # Never show credentials or query tokens of a source URL.
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


_MAX_REDIRECTS = 5


def _allowed(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _too_big(url: str, limit: int) -> ExportError:
    return ExportError(f"The download from {_safe_url(url)} is larger than EXPORT_MAX_BYTES ({_megabytes(limit)}); "
                       f"export fewer rows or raise EXPORT_MAX_BYTES")


def _fetch(url: str) -> tuple[bytes, str]:
    """Download `url` and say where it ended up: https on every redirect hop (plain http only on loopback,
    for tests), at most EXPORT_MAX_BYTES, read in chunks so a huge answer is
    refused before it fills the memory."""
    import httpx

    limit = settings.EXPORT_MAX_BYTES
    if not _allowed(url):
        raise ExportError(f"Export URL {_safe_url(url)} must use https")
    current = url
    try:
        with httpx.Client(timeout=settings.HTTP_TIMEOUT_S, follow_redirects=False) as client:
            for _hop in range(_MAX_REDIRECTS + 1):
                with client.stream("GET", current) as response:
                    if response.is_redirect:
                        target = str(response.url.join(response.headers["Location"]))
                        if not _allowed(target) or (urlsplit(target).scheme == "http"
                                                    and urlsplit(current).scheme == "https"):
                            raise ExportError(f"Export URL {_safe_url(url)} redirects to {_safe_url(target)}, "
                                              f"which does not use https")
                        current = target
                        continue
                    if response.status_code != 200:
                        raise ExportError(f"Could not download {_safe_url(url)}: HTTP {response.status_code}")
                    declared = response.headers.get("Content-Length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise _too_big(url, limit)
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise _too_big(url, limit)
                        chunks.append(chunk)
                    return b"".join(chunks), current
    except httpx.HTTPError as exc:
        raise ExportError(f"Could not download {_safe_url(url)}: {type(exc).__name__}") from None
    raise ExportError(f"Could not download {_safe_url(url)}: more than {_MAX_REDIRECTS} redirects")


def _memory_file(name: str, data: bytes) -> ExportFile:
    return ExportFile(name=name, load=lambda: data, head=lambda: data[:_HEADER_BYTES])


def _path_file(path: Path) -> ExportFile:
    def head() -> bytes:
        with path.open("rb") as fh:
            return fh.read(_HEADER_BYTES)

    return ExportFile(name=path.name, load=path.read_bytes, head=head, mtime=path.stat().st_mtime)


def _scan_zip(data: bytes, files: list[ExportFile], photos: dict[str, ExportFile]) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            path = Path(info.filename)
            if info.file_size > settings.EXPORT_MAX_BYTES:  # a zip bomb, or simply too big
                raise ExportError(f"{path.name} in the zip archive is larger than EXPORT_MAX_BYTES "
                                  f"({_megabytes(settings.EXPORT_MAX_BYTES)}) once unpacked")
            content = archive.read(info)
            if path.suffix.lower() in {".csv", ".txt"}:
                files.append(_memory_file(path.name, content))
            elif path.suffix.lower() in PHOTO_SUFFIXES and path.parent.name == "photos":
                photos[path.stem.upper()] = _memory_file(path.name, content)


def sportlink_source(run: Any = None) -> ExportSource | WebSportlinkSource:
    """The Sportlink source of `run`: export files, or Sportlink Club itself (SPORTLINK_SOURCE=web)."""
    if settings.SPORTLINK_SOURCE == "web":
        from pipelines.web.source import sportlink_web_source

        return sportlink_web_source(run)
    return ExportSource(settings.SPORTLINK_EXPORT_DIR or str(DEMO_DIR), label="Sportlink export")


def nikki_source(run: Any = None) -> ExportSource | WebNikkiSource:
    """The Nikki source of `run`: export files, or Nikki's site itself (NIKKI_SOURCE=web)."""
    if settings.NIKKI_SOURCE == "web":
        from pipelines.web.source import nikki_web_source

        return nikki_web_source(run)
    return ExportSource(settings.NIKKI_EXPORT_DIR or str(DEMO_DIR), label="Nikki export")


__all__ = ["DEMO_DIR", "ExportError", "ExportSource", "nikki_source", "sportlink_source"]
