import pytest

from runs.redact import redact, truncate, truncate_traceback


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://user:s3cr3t@example.org/path", "s3cr3t"),
        ("https://example.org/v2/member?list_id=1&api_key=abcdef123", "abcdef123"),
        ("headers={'X-FreeScout-API-Key': 'fs_key_987'}", "fs_key_987"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ('{"access_token": "tok123456"}', "tok123456"),
        ("password=hunter2&user=bob", "hunter2"),
        ("client_secret: verysecret", "verysecret"),
        ("credentials=opensesame42", "opensesame42"),
        ('{"credentials": "opensesame42"}', "opensesame42"),
        ("credential: opensesame42", "opensesame42"),
        ("pwd=opensesame42", "opensesame42"),
        ("X-FreeScout-API-Key: fs_key_987", "fs_key_987"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("refresh_token=opensesame42", "opensesame42"),
    ],
)
def test_secrets_are_masked(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned
    assert "***" in cleaned


def test_ordinary_messages_are_left_alone():
    text = "Member ABC12D3: invalid email 'jan@@example' (row 12); KeyError: 'Rel. code'"
    assert redact(text) == text


def test_truncation_keeps_limits():
    assert truncate("abc", 5) == "abc"
    assert len(truncate("x" * 3000, 2000)) == 2000
    tb = "head\n" + "x" * 10000 + "\nValueError: tail"
    cut = truncate_traceback(tb, 8000)
    assert len(cut) <= 8000 and cut.startswith("head") and cut.endswith("ValueError: tail")


def test_a_traceback_keeps_a_quarter_from_the_start_and_the_rest_from_the_end():
    assert truncate_traceback("x" * 400, 400) == "x" * 400  # exactly at the limit: untouched
    tb = "a" * 1000 + "b" * 1000
    marker = "… (1600 characters cut)\n"
    cut = truncate_traceback(tb, 400)
    assert cut == "a" * 100 + marker + "b" * (300 - len(marker))
    assert len(cut) == 400
    assert truncate("abcdef", 6) == "abcdef" and truncate("abcdefg", 6) == "abcde…"
