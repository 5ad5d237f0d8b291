"""How an export's bytes are taken for text (pipelines.readers.decode_checked and sniff).

Which encoding a file is read in decides whether `ë` is stored as `ë` or `Ã«`, and
whether a row counts as damaged (damaged rows are errors, never retired members).
"""

import pytest

from pipelines.readers import ExportError, decode_checked, shown_headings, sniff

HEADER = "Relatiecode;Roepnaam;Achternaam\r\n"
ROW = "AB12CD3;Zoë;Bakker\r\n"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\xef\xbb\xbf" + (HEADER + ROW).encode(), HEADER + ROW),
        (b"\xef\xbb\xbfnaam;\xef\xbf\xbd\r\n", "naam;\ufffd\r\n"),  # a U+FFFD the file itself holds
        ((HEADER + ROW).encode("utf-16"), HEADER + ROW),
        (b"\xfe\xff" + (HEADER + ROW).encode("utf-16-be"), HEADER + ROW),
        (b"\xff\xfe" + (HEADER + ROW).encode("utf-16-le"), HEADER + ROW),
        ((HEADER + ROW).encode(), HEADER + ROW),
        ((HEADER + ROW).encode("cp1252"), HEADER + ROW),
        (b"naam;\x81Zo\xeb\r\n", "naam;\x81Zoë\r\n"),  # 0x81 is undefined in Windows-1252: latin-1
    ],
    ids=["utf-8 bom", "bom with a real U+FFFD", "utf-16", "utf-16-be", "utf-16-le", "utf-8", "cp1252", "latin-1"],
)
def test_a_clean_file_in_any_encoding_reads_as_its_text_undamaged(data, text):
    assert decode_checked(data) == (text, False)


def test_a_utf8_file_with_a_bad_byte_after_a_bom_is_damaged():
    assert decode_checked(b"\xef\xbb\xbfZo\xc3\xab;Zo\xeb\r\n") == ("Zoë;Zo\ufffd\r\n", True)


def test_as_many_valid_utf8_characters_as_bad_bytes_is_still_utf8():
    # One ë in UTF-8 and one stray byte: a damaged UTF-8 file, not Windows-1252 (`Ã«`).
    assert decode_checked("Zoë;".encode() + b"na\xefve\r\n") == ("Zoë;na\ufffdve\r\n", True)
    # Two stray bytes and one valid pair: Windows-1252.
    assert decode_checked(b"Zo\xc3\xab;na\xefve;\xe9\r\n") == ("ZoÃ«;naïve;é\r\n", False)


def test_a_damaged_utf16_file_is_damaged():
    text, damaged = decode_checked(b"\xff\xfe" + "naam".encode("utf-16-le") + b"\x00\xd8")
    assert damaged and text.startswith("naam")


@pytest.mark.parametrize("data", [(HEADER + ROW).encode("utf-16"), b"\xfe\xff" + (HEADER + ROW).encode("utf-16-be")])
def test_a_utf16_export_is_text_not_binary(data):
    assert sniff("Leden.csv", data) == (HEADER + ROW, False, ["Relatiecode", "Roepnaam", "Achternaam"])


def test_one_nul_byte_makes_a_file_binary_however_much_text_it_has():
    data = (HEADER + ROW * 50).encode() + b"\x00" + ROW.encode()
    with pytest.raises(ExportError) as caught:
        sniff("Leden.csv", data)
    assert str(caught.value) == "Leden.csv is not a CSV export (binary data)"


@pytest.mark.parametrize(("controls", "binary"), [(10, False), (11, True)])
def test_more_than_one_control_character_in_a_hundred_makes_a_file_binary(controls, binary):
    body = HEADER + "x" * (1000 - len(HEADER) - controls - 2) + "\x01" * controls + "\r\n"
    assert len(body) == 1000
    if binary:
        with pytest.raises(ExportError, match=r"^Leden\.csv is not a CSV export \(binary data\)$"):
            sniff("Leden.csv", body.encode())
    else:
        assert sniff("Leden.csv", body.encode())[2] == ["Relatiecode", "Roepnaam", "Achternaam"]


def test_tabs_and_line_breaks_are_no_control_characters():
    body = "Relatiecode\tRoepnaam\r\n" + "AB12CD3\tZoë\r\n" * 100
    assert sniff("Leden.tsv", body.encode())[2] == ["Relatiecode", "Roepnaam"]


def test_shown_headings_are_the_first_eight_each_at_most_forty_characters():
    header = ["a" * 40, "b" * 41] + [f"kolom {i}" for i in range(3, 11)]
    assert shown_headings(header) == ", ".join(["a" * 40, "b" * 39 + "…"] + [f"kolom {i}" for i in range(3, 9)])
