"""A PDF page that is only an image of text: the plain ingest OCRs it (real Tesseract), or
reports it in `warnings` with the fix; it is never dropped without a word."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from graphcraft.api import ingest
from graphcraft.ingestion.loaders import LoadWarning, OcrOptions, load_pdf
from graphcraft.ingestion.ocr import tesseract_available
from graphcraft.stores.vector import open_store

SCANNED_TEXT = ["The lighthouse keeper replaces the lamp", "every second Tuesday at dawn."]
QUESTION = "When does the lighthouse keeper replace the lamp?"

needs_tesseract = pytest.mark.skipif(
    not tesseract_available(), reason="apt-get install tesseract-ocr tesseract-ocr-eng"
)


def image_of_text(lines: list[str], dpi: int = 200) -> bytes:
    """A PNG of the lines, as a scanner would deliver them (no text layer)."""
    scratch = pymupdf.open()
    page = scratch.new_page()
    for row, line in enumerate(lines):
        page.insert_text((72, 100 + 30 * row), line, fontsize=18)
    return page.get_pixmap(dpi=dpi).tobytes("png")


def write_pdf(path: Path, pages: list[str | None]) -> Path:
    """One page per entry: a string becomes a text page, None the scanned page."""
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        if text is None:
            page.insert_image(page.rect, stream=image_of_text(SCANNED_TEXT))
        else:
            page.insert_text((72, 72), text)
    doc.save(path)
    return path


@pytest.fixture(scope="module")
def report_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    return write_pdf(
        folder / "report.pdf", ["Page one is about the harbour tides.", None, "Page three lists the ferry times."]
    )


def test_the_fixture_page_really_has_no_text_layer(report_pdf: Path) -> None:
    with pymupdf.open(report_pdf) as doc:
        assert doc[1].get_text().strip() == "" and doc[1].get_images()


@needs_tesseract
def test_plain_ingest_ocrs_the_scanned_page(report_pdf: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    store_dir = tmp_path_factory.mktemp("store")
    report = ingest([report_pdf], store=store_dir)
    assert report["failed"] == [] and report["warnings"] == []
    store = open_store(store_dir, create=False)
    by_page = {d.metadata["page"]: d for d in store.documents()}
    assert set(by_page) == {1, 2, 3}
    scanned = by_page[2]
    words = {w.strip(".,").lower() for w in scanned.page_content.split()}
    assert {"lighthouse", "keeper", "lamp", "tuesday", "dawn"} <= words
    assert scanned.metadata["ocr"] is True and scanned.metadata["ocr_confidence"] > 60
    hits = store.search_by_vector(store.embeddings.embed_query(QUESTION), k=1)
    assert hits[0][0].metadata["page"] == 2


def test_with_ocr_disabled_the_page_is_a_warning(report_pdf: Path, tmp_path: Path) -> None:
    report = ingest([report_pdf], store=tmp_path / "store", ocr=False)
    assert report["failed"] == []
    [warning] = report["warnings"]
    assert warning["path"] == str(report_pdf) and warning["page"] == 2
    assert warning["warning"].startswith("page 2 has no text layer") and "OCR is disabled" in warning["warning"]
    pages = {d.metadata["page"] for d in open_store(tmp_path / "store", create=False).documents()}
    assert pages == {1, 3}


def test_without_tesseract_the_warning_names_the_fix(report_pdf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no tesseract binary to be found
    warnings: list[LoadWarning] = []
    pages = load_pdf(report_pdf, ocr=OcrOptions(), warnings=warnings)
    assert [p.metadata["page"] for p in pages] == [1, 3]
    assert [w.page for w in warnings] == [2]
    assert "apt-get install tesseract-ocr" in warnings[0].warning


def test_a_pdf_of_only_unread_scans_fails_with_the_reason(tmp_path: Path) -> None:
    scans = write_pdf(tmp_path / "scans.pdf", [None, None])
    report = ingest([scans], store=tmp_path / "store", ocr=False)
    assert report["added"] == 0 and report["warnings"] == []
    [failure] = report["failed"]
    assert failure["path"] == str(scans) and failure["error"].startswith("PDF has no text layer (OCR is disabled")
