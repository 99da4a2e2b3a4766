"""Encodings: a stray bad byte no longer turns a UTF-8 file into Latin-1 mojibake; whatever
was guessed or replaced is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphcraft.api import ingest
from graphcraft.errors import IngestError
from graphcraft.ingestion.loaders import LoadWarning, decode_text
from graphcraft.stores.vector import open_store

TEXT = "Café Zürich opens at 7; the naïve façade faces the Straße."


def test_utf8_with_one_bad_byte_keeps_its_characters_and_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "menu.txt"
    path.write_bytes(TEXT[:18].encode("utf-8") + b"\xff" + TEXT[18:].encode("utf-8"))
    report = ingest([path], store=tmp_path / "store")
    assert report["failed"] == [] and report["added"] == 1
    assert report["warnings"] == [
        {"path": str(path), "page": None, "warning": "1 invalid UTF-8 byte(s) replaced by U+FFFD"}
    ]
    [chunk] = open_store(tmp_path / "store", create=False).documents()
    assert chunk.page_content == TEXT[:18] + "\ufffd" + TEXT[18:]


def test_bad_bytes_are_counted_one_by_one() -> None:
    warnings: list[LoadWarning] = []
    text = decode_text(TEXT.encode("utf-8") + b" \xc3\x28 \xe2\x82", warnings)
    assert text.startswith(TEXT) and text.count("\ufffd") == 3
    assert warnings == [LoadWarning(None, "3 invalid UTF-8 byte(s) replaced by U+FFFD")]


@pytest.mark.parametrize(("text", "encoding"), [("Café in Zürich", "latin-1"), ("“Café” in Zürich", "cp1252")])
def test_legacy_8bit_text_is_read_and_noted(text: str, encoding: str) -> None:
    warnings: list[LoadWarning] = []
    assert decode_text(text.encode(encoding), warnings) == text
    assert warnings == [LoadWarning(None, "not UTF-8: read as Windows-1252/Latin-1")]


def test_clean_utf8_and_utf16_with_bom_need_no_warning() -> None:
    warnings: list[LoadWarning] = []
    assert decode_text(b"\xef\xbb\xbf" + TEXT.encode("utf-8"), warnings) == TEXT
    assert decode_text(TEXT.encode("utf-16"), warnings) == TEXT
    assert warnings == []


def test_binary_is_still_refused() -> None:
    with pytest.raises(IngestError, match="binary file"):
        decode_text(bytes(range(1, 256)) * 8)


def test_html_declared_charset_is_used_when_the_bytes_are_not_utf8(tmp_path: Path) -> None:
    from graphcraft.ingestion.loaders import load_html

    page = tmp_path / "old.html"
    html = '<html><head><meta charset="iso-8859-7"><title>Κατάλογος</title></head><body><p>Καλημέρα</p></body></html>'
    page.write_bytes(html.encode("iso-8859-7"))
    warnings: list[LoadWarning] = []
    [doc] = load_html(page, warnings=warnings)
    assert doc.page_content == "# Κατάλογος\n\nΚαλημέρα" and warnings == []


def test_one_stray_byte_in_a_file_with_a_single_accent_stays_utf8(tmp_path: Path) -> None:
    """One valid UTF-8 character and one stray byte once tied the vote and the whole file was
    read as Latin-1 ("CafÃ©"): a valid multi-byte sequence is strong evidence of UTF-8."""
    path = tmp_path / "note.txt"
    path.write_bytes("The Café opens at 7".encode() + b"\x92" + b"s on weekdays.")
    report = ingest([path], store=tmp_path / "store")
    assert report["failed"] == [] and report["warnings"] == [
        {"path": str(path), "page": None, "warning": "1 invalid UTF-8 byte(s) replaced by U+FFFD"}
    ]
    [chunk] = open_store(tmp_path / "store", create=False).documents()
    assert chunk.page_content == "The Café opens at 7\ufffds on weekdays."
