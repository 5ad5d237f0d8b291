"""Photos from Sportlink's signed URLs: a plain GET outside the browser (a real local HTTP server)."""

import pytest

from pipelines.web.browser import WebSourceError
from pipelines.web.source import download_photo
from tests.web_standin import PNG


def test_a_photo_is_downloaded_with_its_suffix_from_the_content_type(httpserver):
    httpserver.expect_request("/p/ABC12D3", query_string="sig=s3cr3t").respond_with_data(PNG, content_type="image/png")
    data, suffix = download_photo(httpserver.url_for("/p/ABC12D3") + "?sig=s3cr3t", "ABC12D3")
    assert (data, suffix) == (PNG, ".png")


def test_an_unknown_image_type_is_stored_as_jpg(httpserver):
    httpserver.expect_request("/p").respond_with_data(b"\xff\xd8" + b"x" * 200, content_type="application/octet-stream")
    assert download_photo(httpserver.url_for("/p"), "ABC12D3")[1] == ".jpg"


def test_a_404_means_no_photo_not_an_error(httpserver):
    httpserver.expect_request("/p").respond_with_data("Not Found\n", status=404)
    assert download_photo(httpserver.url_for("/p"), "ABC12D3") == (b"", "")


@pytest.mark.parametrize(("status", "body", "message"), [
    (500, b"oops", "the photo server answered 500 for ABC12D3"),
    (200, b"tiny", "the photo of ABC12D3 is only 4 bytes: not an image"),
])
def test_other_answers_are_errors_that_never_show_the_signature(httpserver, status, body, message):
    httpserver.expect_request("/p").respond_with_data(body, status=status, content_type="image/jpeg")
    with pytest.raises(WebSourceError) as caught:
        download_photo(httpserver.url_for("/p") + "?sig=s3cr3t", "ABC12D3")
    assert str(caught.value).startswith(message)
    assert "s3cr3t" not in str(caught.value)


def test_a_photo_url_must_be_https():
    with pytest.raises(WebSourceError, match="the photo URL of ABC12D3 is not https: http://cdn.example.org/p"):
        download_photo("http://cdn.example.org/p?sig=s3cr3t", "ABC12D3")
