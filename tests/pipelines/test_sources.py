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


# --- downloads: https on every hop, a size limit ---------------------------------


def test_redirects_between_allowed_urls_are_followed(httpserver):
    httpserver.expect_request("/latest").respond_with_data("", status=302, headers={"Location": "/v2/leden.csv"})
    httpserver.expect_request("/v2/leden.csv").respond_with_data(MEMBERS)
    assert ExportSource(httpserver.url_for("/latest")).table("members").filename == "leden.csv"


def test_a_redirect_to_plain_http_is_refused_before_connecting(httpserver):
    httpserver.expect_request("/leden.csv").respond_with_data(
        "", status=301, headers={"Location": "http://files.example.org/leden.csv?token=geheim"})
    with pytest.raises(ExportError) as caught:
        ExportSource(httpserver.url_for("/leden.csv")).table("members")
    message = str(caught.value)
    assert "redirects to http://files.example.org/leden.csv, which does not use https" in message
    assert "geheim" not in message


def test_endless_redirects_end_with_a_clear_error(httpserver):
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=302, headers={"Location": "/a"})
    with pytest.raises(ExportError, match="more than 5 redirects"):
        ExportSource(httpserver.url_for("/a")).table("members")


def test_a_download_over_export_max_bytes_is_refused(httpserver, settings):
    settings.EXPORT_MAX_BYTES = 1024
    big = MEMBERS + "BBB22B2;Jansen\n" * 200
    httpserver.expect_request("/declared.csv").respond_with_data(big)
    with pytest.raises(ExportError) as caught:
        ExportSource(httpserver.url_for("/declared.csv")).table("members")
    assert "is larger than EXPORT_MAX_BYTES (1024 bytes)" in str(caught.value)


def test_a_streamed_download_without_a_length_is_cut_off_at_the_limit(httpserver, settings):
    from werkzeug import Response

    settings.EXPORT_MAX_BYTES = 4096
    sent = []

    def endless():
        yield MEMBERS.encode()
        for _ in range(10_000):  # 150 KB, chunked, no Content-Length
            sent.append(1)
            yield b"BBB22B2;Jansen\n"

    httpserver.expect_request("/stream.csv").respond_with_handler(lambda request: Response(endless()))
    with pytest.raises(ExportError, match="larger than EXPORT_MAX_BYTES"):
        ExportSource(httpserver.url_for("/stream.csv")).table("members")


def test_a_file_in_a_zip_over_the_limit_is_refused(httpserver, settings):
    import io
    import zipfile

    settings.EXPORT_MAX_BYTES = 2048
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("leden.csv", MEMBERS + "BBB22B2;Jansen\n" * 1000)  # compresses to far below 2 KB
    httpserver.expect_request("/export.zip").respond_with_data(buffer.getvalue())
    with pytest.raises(ExportError, match="leden.csv in the zip archive is larger than EXPORT_MAX_BYTES"):
        ExportSource(httpserver.url_for("/export.zip")).table("members")
