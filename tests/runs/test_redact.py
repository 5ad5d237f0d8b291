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


@pytest.mark.parametrize("shape", ["plain", "basic", "basic-user-only", "urlencoded", "urlencoded-plus", "inside"])
def test_encoded_forms_of_a_configured_secret_are_masked(settings, shape):
    import base64
    from urllib.parse import quote, quote_plus

    from runs.redact import clear_secret_cache

    key = "k3y+with/odd=chars&more"
    settings.LAPOSTA_API_KEY = key
    clear_secret_cache()
    try:
        shown = {
            "plain": key,
            "basic": base64.b64encode(f"{key}:".encode()).decode(),
            "basic-user-only": base64.b64encode(key.encode()).decode(),
            "urlencoded": quote(key, safe=""),
            "urlencoded-plus": quote_plus(key),
            "inside": "the server saw " + base64.b64encode(f"{key}:".encode()).decode() + " and refused it",
        }[shape]
        cleaned = redact(f"rejected account {shown} (no keyword near it)")
        assert "***" in cleaned
        for form in (key, quote(key, safe=""), quote_plus(key), base64.b64encode(f"{key}:".encode()).decode()[:-2]):
            assert form not in cleaned
    finally:
        clear_secret_cache()


def test_a_traceback_keeps_a_quarter_from_the_start_and_the_rest_from_the_end():
    assert truncate_traceback("x" * 400, 400) == "x" * 400  # exactly at the limit: untouched
    tb = "a" * 1000 + "b" * 1000
    marker = "… (1600 characters cut)\n"
    cut = truncate_traceback(tb, 400)
    assert cut == "a" * 100 + marker + "b" * (300 - len(marker))
    assert len(cut) == 400
    assert truncate("abcdef", 6) == "abcdef" and truncate("abcdefg", 6) == "abcde…"


def test_the_database_and_redis_passwords_are_masked(settings):
    """A driver error that echoes a DSN or a password (no keyword near it) keeps neither password."""
    from runs.redact import clear_secret_cache

    default = settings.DATABASES["default"]  # changed in place and put back: Django warns on replacing DATABASES
    password = default.get("PASSWORD")
    default["PASSWORD"] = "pg-Pa55word"
    settings.REDIS_URL = "redis://:r3dis-secret@127.0.0.1:6379/0"
    clear_secret_cache()
    try:
        cleaned = redact("could not connect as syncsite/pg-Pa55word; broker said r3dis-secret was wrong")
        assert "pg-Pa55word" not in cleaned and "r3dis-secret" not in cleaned
        assert cleaned.count("***") == 2
    finally:
        default["PASSWORD"] = password
        clear_secret_cache()


def test_keyword_guard_matches_the_keyword_list():
    from runs.redact import _KEYWORDS, _has_keyword

    for keyword in _KEYWORDS:
        assert _has_keyword(f"x {keyword} y")
    assert not _has_keyword("member abc00010: has an invalid email address")


@pytest.mark.parametrize("shape", ["urlencoded", "urlencoded-plus", "basic inside a longer text"])
def test_a_secret_with_a_space_and_base64_padding_is_masked_in_every_encoding(settings, shape):
    import base64
    from urllib.parse import quote, quote_plus

    from runs.redact import clear_secret_cache

    key = "pass wd/77"  # a space (quote and quote_plus differ) and a length that base64 pads
    settings.LAPOSTA_API_KEY = key
    clear_secret_cache()
    try:
        basic = base64.b64encode(f"{key}:".encode()).decode()
        assert basic.endswith("=")
        text, expected = {
            "urlencoded": (f"rejected {quote(key, safe='')} (no keyword)", "rejected *** (no keyword)"),
            "urlencoded-plus": (f"rejected {quote_plus(key, safe='')} (no keyword)", "rejected *** (no keyword)"),
            # Without its padding, as inside a longer base64 text.
            "basic inside a longer text": (f"seen {basic.rstrip('=')}xyz refused", "seen ***xyz refused"),
        }[shape]
        assert redact(text) == expected
    finally:
        clear_secret_cache()


def test_a_base64_form_ending_in_a_letter_is_masked_up_to_its_last_character(settings):
    import base64

    from runs.redact import clear_secret_cache

    key = "lp-key-0W"  # base64 "bHAta2V5LTBX": no padding, ends in X
    settings.LAPOSTA_API_KEY = key
    clear_secret_cache()
    try:
        basic = base64.b64encode(key.encode()).decode()
        assert basic == "bHAta2V5LTBX"
        assert redact(f"rejected {basic} (no keyword)") == "rejected *** (no keyword)"
    finally:
        clear_secret_cache()
