"""Export sources: a directory with files recognised by their header row."""

import os

import pytest

from pipelines.readers import ExportError
from pipelines.sources import ExportSource

MEMBERS = "Rel. code;Achternaam\nAAA11A1;Bos\n"


def test_a_file_is_recognised_by_its_header_not_its_name(tmp_path):
    (tmp_path / "teams.csv").write_text(MEMBERS)  # misleading name, member export inside
    (tmp_path / "leden.csv").write_text("Team;Teamrol;Rel. code\nJO11-1;Teamspeler;AAA11A1\n")
    (tmp_path / "notes.txt").write_text("not an export")
    source = ExportSource(str(tmp_path))
    assert source.table("members").filename == "teams.csv"
    assert source.table("teams").filename == "leden.csv"


def test_the_newest_of_two_exports_of_one_kind_wins(tmp_path):
    old, new = tmp_path / "Leden oud.csv", tmp_path / "Leden nieuw.csv"
    old.write_text(MEMBERS)
    new.write_text(MEMBERS.replace("Bos", "Kok"))
    os.utime(old, (1_700_000_000, 1_700_000_000))
    assert ExportSource(str(tmp_path)).table("members").filename == "Leden nieuw.csv"


def test_no_export_of_a_kind_lists_what_was_found(tmp_path):
    (tmp_path / "random.csv").write_text("Foo;Bar\n")
    with pytest.raises(ExportError) as caught:
        ExportSource(str(tmp_path)).table("discipline")
    message = str(caught.value)
    assert "No discipline export found" in message and "'Dossiernummer'" in message
    assert "random.csv: not a recognised export (headings: Foo, Bar)" in message


def test_photos_are_found_by_relatiecode(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "aaa11a1.JPG").write_bytes(b"jpeg")
    (tmp_path / "photos" / "readme.md").write_text("no photo")
    photos = ExportSource(str(tmp_path)).photos()
    assert list(photos) == ["AAA11A1"] and photos["AAA11A1"].load() == b"jpeg"


def test_several_urls_are_read_as_one_export(httpserver, settings):
    httpserver.expect_request("/leden.csv").respond_with_data(MEMBERS)
    httpserver.expect_request("/teams.csv").respond_with_data("Team;Teamrol;Rel. code\nJO11-1;Teamspeler;AAA11A1\n")
    source = ExportSource(f"{httpserver.url_for('/leden.csv')}, {httpserver.url_for('/teams.csv')}")
    assert source.table("members").filename == "leden.csv"
    assert source.table("teams").filename == "teams.csv"
    assert source.describe() == ", ".join(httpserver.url_for(p) for p in ("/leden.csv", "/teams.csv"))


def test_credentials_in_a_source_url_are_never_shown():
    source = ExportSource("https://user:geheim@files.example.org/leden.csv?token=geheim")
    assert source.describe() == "https://files.example.org/leden.csv"
