"""Fixtures for the club pipelines: small demo exports in a temporary directory."""

from pathlib import Path

import pytest

from pipelines.demodata import write_demo


@pytest.fixture
def export_dir(tmp_path, settings) -> Path:
    """A 60-member demo export (with its bad rows), used as Sportlink and Nikki source.

    Destinations are not configured; photos go to a temporary MEDIA_ROOT.
    """
    out = tmp_path / "export"
    write_demo(out, members=60, seed=7, photos=3)
    settings.SPORTLINK_EXPORT_DIR = str(out)
    settings.NIKKI_EXPORT_DIR = str(out)
    settings.LAPOSTA_API_KEY = ""
    settings.FREESCOUT_API_KEY = ""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return out


def export_file(directory: Path, prefix: str) -> Path:
    return next(directory.glob(f"{prefix}*.csv"))


def rewrite(path: Path, old: str, new: str, *, encoding: str = "utf-8-sig") -> None:
    text = path.read_bytes().decode(encoding)
    assert old in text, f"{old!r} not in {path.name}"
    path.write_bytes(text.replace(old, new).encode(encoding))


class Sleeps(list):
    """An injected sleep for the HTTP clients: records each delay instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()
