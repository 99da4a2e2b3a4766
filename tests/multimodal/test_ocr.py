"""OCR: scanned pages read with word boxes mapped to PDF points; confidences flagged."""

from __future__ import annotations

import io

import pymupdf
import pytest
from PIL import Image, ImageFilter

from graphcraft.eval.multimodal_data import SCANNED_FACTS, scanned_sentence_boxes
from graphcraft.ingestion.ocr import (
    OcrError,
    image_pixels_to_points,
    merge_blocks,
    ocr_image,
    ocr_page,
    ocr_words,
    tesseract_available,
)
from graphcraft.ingestion.pdf_layout import open_pdf

pytestmark = pytest.mark.skipif(not tesseract_available(), reason="Tesseract not installed")


@pytest.fixture(scope="module")
def scanned_blocks(report):
    with open_pdf(report.path) as doc:
        return ocr_page(doc[report.pages["scanned"] - 1], dpi=200)


def test_scanned_page_sentences_are_read(scanned_blocks):
    text = " ".join(b.text for b in scanned_blocks)
    for sentence, _, _ in SCANNED_FACTS:
        assert sentence in text


def test_scanned_boxes_are_in_pdf_points_where_the_text_was_drawn(scanned_blocks):
    # make_sample_report draws the scan's text in a textbox starting at (36, 36) of a
    # 595 x 842 pt page; OCR boxes mapped back must land there, not in 200-dpi pixels
    first = scanned_blocks[0]
    assert first.text.startswith("Warehouse inspection notes")
    assert 30 <= first.bbox[0] <= 45 and 30 <= first.bbox[1] <= 55
    assert all(b.bbox[2] <= 595 and b.bbox[3] <= 842 for b in scanned_blocks)
    tops = [b.bbox[1] for b in scanned_blocks]
    assert tops == sorted(tops)


def test_clean_scan_is_not_flagged(scanned_blocks):
    assert all(b.mean_confidence > 80 for b in scanned_blocks)
    flags = scanned_blocks[1].flags()
    assert flags["ocr"] is True and flags["low_confidence"] is False and flags["low_confidence_words"] == []


def _text_png(text: str, blur: float = 0.0) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=420, height=60)
    page.insert_text((10, 38), text, fontsize=16)
    image = Image.open(io.BytesIO(page.get_pixmap(dpi=150).tobytes("png")))
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_degraded_text_is_flagged_low_confidence():
    sharp = ocr_image(_text_png("Quarterly dividend 0.42 euros per share"))
    blurred = ocr_image(_text_png("Quarterly dividend 0.42 euros per share", blur=2.6), min_confidence=80)
    assert "dividend" in " ".join(b.text for b in sharp)
    assert not any(b.low_confidence for b in sharp)
    assert blurred, "Tesseract should still return words for a blurred line"
    assert any(b.low_confidence for b in blurred)
    assert any(b.low_confidence_words for b in blurred)
    mean_sharp = sum(b.mean_confidence for b in sharp) / len(sharp)
    mean_blur = sum(b.mean_confidence for b in blurred) / len(blurred)
    assert mean_blur < mean_sharp


def test_image_boxes_map_to_the_placement_on_the_page():
    to_points = image_pixels_to_points((200, 100), (100.0, 50.0, 300.0, 150.0))
    assert to_points((0, 0, 200, 100)) == (100.0, 50.0, 300.0, 150.0)
    assert to_points((50, 25, 100, 50)) == (150.0, 75.0, 200.0, 100.0)


def test_unreadable_image_raises_ocr_error():
    with pytest.raises(OcrError, match="not a readable image"):
        ocr_words(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, what="broken.png")


def _truth_box(text: str) -> tuple[float, ...]:
    """Union of the drawn boxes of the lines (heading, sentences) that an OCR chunk contains."""
    boxes = [box for line, box in scanned_sentence_boxes().items() if line in text]
    assert boxes, text
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def test_merge_blocks_keeps_paragraphs_and_joins_the_heading(scanned_blocks):
    merged = merge_blocks(scanned_blocks, max_chars=800)
    assert merged[0].text.startswith("Warehouse inspection notes The Lisbon warehouse")
    for sentence, _, _ in SCANNED_FACTS:  # each sentence whole in exactly one chunk
        assert sum(sentence in b.text for b in merged) == 1
    assert len(merged) >= 4  # paragraphs stay apart: Tesseract's layout, not one page-sized chunk
    small = merge_blocks(scanned_blocks, max_chars=40, min_chars=0)
    # split at line boundaries: a chunk over the limit is a single OCR line
    assert all(len(b.text) <= 40 or len({(w.block, w.paragraph, w.line) for w in b.words}) == 1 for b in small)
    assert len(small) > len(merged)
    assert " ".join(b.text for b in small) == " ".join(b.text for b in scanned_blocks)


def test_ocr_chunk_box_matches_where_its_sentences_were_drawn(scanned_blocks):
    for block in merge_blocks(scanned_blocks):
        # OCR boxes are ink-tight, search_for boxes span the font's line height: 6 pt of slack
        assert block.bbox == pytest.approx(_truth_box(block.text), abs=6.0)
