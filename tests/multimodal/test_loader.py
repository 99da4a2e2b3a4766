"""load_pdf_multimodal / load_multimodal: chunks with provenance, per-file errors."""

from __future__ import annotations

import hashlib
import shutil

import pymupdf
import pytest

from graphcraft.eval.multimodal_data import REVENUE, SCANNED_FACTS, TABLE_CAPTION, scanned_sentence_boxes
from graphcraft.ingestion.ocr import tesseract_available
from graphcraft.ingestion.pdf_multimodal import (
    MultimodalOptions,
    load_image_multimodal,
    load_multimodal,
    load_pdf_multimodal,
)
from graphcraft.ingestion.pdf_tables import frame_from_csv

pytestmark = pytest.mark.skipif(not tesseract_available(), reason="Tesseract not installed")

REQUIRED = {"source", "page", "bbox", "modality", "chunk_id", "content_hash"}


def test_every_chunk_carries_provenance(report_docs, report):
    assert {d.metadata["modality"] for d in report_docs} == {"text", "table", "image"}
    for doc in report_docs:
        meta = doc.metadata
        assert REQUIRED <= set(meta)
        assert meta["source"] == str(report.path)
        assert 1 <= meta["page"] <= 4
        x0, y0, x1, y1 = meta["bbox"]
        assert 0 <= x0 < x1 <= 595.5 and 0 <= y0 < y1 <= 842.5
        assert meta["content_hash"] == hashlib.sha256(doc.page_content.encode()).hexdigest()
    ids = [d.metadata["chunk_id"] for d in report_docs]
    assert len(ids) == len(set(ids))


def test_chunk_ids_are_stable_across_loads(report_docs, report):
    again = load_pdf_multimodal(report.path, images=False)
    first = {d.metadata["chunk_id"]: d.page_content for d in report_docs if d.metadata["modality"] != "image"}
    assert {d.metadata["chunk_id"]: d.page_content for d in again} == first


def test_table_chunk_keeps_exact_cells(report_docs, report):
    (table,) = [d for d in report_docs if d.metadata["modality"] == "table"]
    assert table.metadata["page"] == report.pages["table"]
    assert table.metadata["caption"] == TABLE_CAPTION
    frame = frame_from_csv(table.metadata["table_csv"])
    assert frame.set_index("Region").loc["South", "Q3"] == REVENUE["South"][2]
    assert "| South    | 9.7  | 10.3 | 41.7 | 11.9 |" in table.page_content


def test_scanned_page_becomes_ocr_text_chunks(report_docs, report):
    scanned = [d for d in report_docs if d.metadata["page"] == report.pages["scanned"]]
    assert scanned and all(d.metadata["modality"] == "text" and d.metadata["ocr"] for d in scanned)
    text = " ".join(d.page_content for d in scanned)
    for sentence, _, _ in SCANNED_FACTS:
        assert sentence in text
    for doc in scanned:
        assert doc.metadata["ocr_confidence"] > 80 and doc.metadata["low_confidence"] is False
    # one chunk per OCR'd paragraph, each citing that paragraph's box on the page
    truth = scanned_sentence_boxes()
    (gdansk,) = [d for d in scanned if "5,820 inverters" in d.page_content]
    sentence = next(s for s, _, _ in SCANNED_FACTS if "5,820" in s)
    if gdansk.page_content == sentence:  # Tesseract made it a paragraph of its own
        assert gdansk.metadata["bbox"] == pytest.approx(list(truth[sentence]), abs=4.0)
    x0, y0, x1, y1 = gdansk.metadata["bbox"]
    t0, u0, t1, u1 = truth[sentence]
    assert x0 <= t0 + 4 and y0 <= u0 + 4 and x1 >= t1 - 4 and y1 >= u1 - 4  # the box holds the sentence
    assert y1 - y0 < 120  # a paragraph, not the whole page


def test_image_chunk_has_ocr_text_and_caption(report_docs, report):
    (image,) = [d for d in report_docs if d.metadata["modality"] == "image"]
    assert image.metadata["page"] == report.pages["image"]
    assert "240 MW" in image.page_content and image.metadata["caption"] in image.page_content
    assert image.metadata["description_source"] == "ocr+caption"


def test_text_pages_are_not_ocrd(report_docs, report):
    text_page = [d for d in report_docs if d.metadata["page"] == report.pages["text"]]
    assert text_page and all(d.metadata.get("ocr") is False for d in text_page)


def test_ocr_off_skips_scanned_pages(report):
    docs = load_pdf_multimodal(report.path, MultimodalOptions(ocr=False, images=False))
    assert report.pages["scanned"] not in {d.metadata["page"] for d in docs}


def test_unknown_option_is_refused(report):
    with pytest.raises(TypeError, match="dpii"):
        load_pdf_multimodal(report.path, dpii=100)


def test_folder_with_bad_files_ingests_the_rest(tmp_path, report, bad_files):
    folder = bad_files["damaged"].parent
    shutil.copy(report.path, folder / "good.pdf")
    png = tmp_path / "note.png"
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=80)
    page.insert_text((10, 45), "Gate code is 7731", fontsize=20)
    page.get_pixmap(dpi=150).save(png)
    shutil.move(png, folder / "note.png")
    (folder / "readme.txt").write_text("not a pdf or image: ignored by the multimodal loader")

    load = load_multimodal(folder)

    assert set(load.errors) == {str(p) for p in bad_files.values()}
    assert "encrypted" in load.errors[str(bad_files["encrypted"])]
    assert "0 pages" in load.errors[str(bad_files["empty"])]
    assert "damaged" in load.errors[str(bad_files["damaged"])]
    assert "not a readable image" in load.errors[str(bad_files["bad_image"])]
    assert sorted(load.files) == [str(folder / "good.pdf"), str(folder / "note.png")]
    sources = {d.metadata["source"] for d in load.documents}
    assert sources == set(load.files)
    (note,) = [d for d in load.documents if d.metadata["source"].endswith("note.png")]
    assert "Gate code is 7731" in note.page_content
    assert note.metadata["modality"] == "image" and note.metadata["bbox_units"] == "px"


def test_image_file_with_vision_model(tmp_path, vision_model):
    png = tmp_path / "photo.png"
    doc = pymupdf.open()
    doc.new_page(width=300, height=60).insert_text((10, 40), "Exit B", fontsize=20)
    doc[0].get_pixmap(dpi=100).save(png)
    (chunk,) = load_image_multimodal(png, vision_model=vision_model)
    assert chunk.metadata["description_source"] == "vision"
    assert vision_model.reply in chunk.page_content and "Exit B" in chunk.page_content


def test_scan_with_a_stamped_page_number_is_still_ocrd(tmp_path):
    from graphcraft.eval.multimodal_data import text_image

    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_image(page.rect, stream=text_image(["Gate code is 7731 for the north entrance."], 595, 842, 150, 14))
    page.insert_text((280, 820), "- 7 -", fontsize=9)  # a text layer of five characters
    doc.save(tmp_path / "stamped.pdf")
    docs = load_pdf_multimodal(tmp_path / "stamped.pdf")
    assert any("Gate code is 7731" in d.page_content and d.metadata["ocr"] for d in docs)


def test_sandwich_pdf_scan_is_not_read_twice(tmp_path):
    from graphcraft.eval.multimodal_data import text_image

    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_image(page.rect, stream=text_image(["Invisible layer sentence about turbines."], 595, 842, 100, 14))
    page.insert_textbox(
        pymupdf.Rect(36, 36, 559, 200), "Invisible layer sentence about turbines. " * 3, fontsize=14, render_mode=3
    )  # invisible text, as OCR tools write it
    doc.save(tmp_path / "sandwich.pdf")
    docs = load_pdf_multimodal(tmp_path / "sandwich.pdf")
    assert {d.metadata["modality"] for d in docs} == {"text"}
    assert not any(d.metadata.get("ocr") for d in docs)
