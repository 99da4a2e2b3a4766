"""Text layout: page numbers, bounding boxes, and clear errors for unreadable PDFs."""

from __future__ import annotations

import pymupdf
import pytest

from graphcraft.errors import IngestError
from graphcraft.ingestion.pdf_layout import (
    DamagedPdfError,
    EmptyPdfError,
    EncryptedPdfError,
    has_text_layer,
    open_pdf,
    text_regions,
)


def test_text_regions_carry_page_and_a_bbox_that_holds_the_text(report):
    with open_pdf(report.path) as doc:
        regions = [r for page in doc for r in text_regions(page)]
        people = [r for r in regions if "employed 412 people" in r.text]
        assert len(people) == 1
        region = people[0]
        assert region.page == report.pages["text"]
        # the words PyMuPDF finds inside the cited box are the chunk's words
        clip = pymupdf.Rect(region.bbox) + (-1, -1, 1, 1)
        inside = " ".join(doc[region.page - 1].get_textbox(clip).split())
        assert inside == region.text


def test_tables_are_left_out_of_text_regions(report):
    with open_pdf(report.path) as doc:
        page = doc[report.pages["table"] - 1]
        table_box = page.find_tables().tables[0].bbox
        texts = " ".join(r.text for r in text_regions(page, exclude=[table_box]))
        assert "dividend of 0.42" in texts
        assert "41.7" not in texts and "18.5" not in texts
        assert "41.7" in " ".join(r.text for r in text_regions(page))


def test_scanned_page_has_no_text_layer(report):
    with open_pdf(report.path) as doc:
        assert has_text_layer(doc[report.pages["text"] - 1])
        assert not has_text_layer(doc[report.pages["scanned"] - 1])


def test_long_block_is_split_at_lines_and_short_heading_joins_next(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 60), "Heading", fontsize=14)
    page.insert_textbox(pymupdf.Rect(72, 100, 520, 760), "A sentence about panels and inverters. " * 80, fontsize=10)
    regions = text_regions(page, max_chars=300)
    assert regions[0].text.startswith("Heading A sentence")
    assert len(regions) > 5
    assert all(len(r.text) <= 300 + 60 for r in regions)
    tops = [r.bbox[1] for r in regions]
    assert tops == sorted(tops)  # reading order, each chunk its own region
    assert all(r.bbox[3] > r.bbox[1] for r in regions)


@pytest.mark.parametrize(
    ("kind", "error", "words"),
    [
        ("damaged", DamagedPdfError, "damaged"),
        ("encrypted", EncryptedPdfError, "encrypted"),
        ("empty", EmptyPdfError, "0 pages"),
    ],
)
def test_unreadable_pdfs_raise_a_clear_ingest_error(bad_files, kind, error, words):
    path = bad_files[kind]
    with pytest.raises(error) as info:
        open_pdf(path)
    assert isinstance(info.value, IngestError)
    assert str(path) in str(info.value) and words in str(info.value)
    assert "\n" not in str(info.value)


def test_encrypted_pdf_opens_with_its_password(bad_files):
    path = bad_files["encrypted"]
    with open_pdf(path, password="user") as doc:
        assert "secret" in doc[0].get_text()
    with pytest.raises(EncryptedPdfError, match="wrong password"):
        open_pdf(path, password="nope")


def test_missing_file_is_an_ingest_error(tmp_path):
    with pytest.raises(IngestError, match="not found"):
        open_pdf(tmp_path / "absent.pdf")
