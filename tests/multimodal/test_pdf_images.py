"""Embedded images: placement, caption, OCR'd text, vision and offline descriptions."""

from __future__ import annotations

import pymupdf
import pytest

from graphcraft.eval.multimodal_data import CAPACITY, FIGURE_CAPTION
from graphcraft.ingestion.ocr import tesseract_available
from graphcraft.ingestion.pdf_images import describe_image, extract_images, read_image
from graphcraft.ingestion.pdf_layout import open_pdf

pytestmark = pytest.mark.skipif(not tesseract_available(), reason="Tesseract not installed")


@pytest.fixture(scope="module")
def chart(report):
    with open_pdf(report.path) as doc:
        page = doc[report.pages["image"] - 1]
        images = extract_images(page)
        assert len(images) == 1
        read_image(images[0], page)
        caption_box = page.search_for(FIGURE_CAPTION)[0]
        return images[0], caption_box


def test_image_is_extracted_with_its_placement(chart, report):
    image, caption_box = chart
    assert image.page == report.pages["image"]
    assert image.xref > 0 and image.width > 100
    x0, y0, x1, y1 = image.bbox
    assert x0 == pytest.approx(72, abs=1) and x1 == pytest.approx(432, abs=1)
    assert y1 <= caption_box.y0 + 1  # the caption sits right below the figure


def test_caption_and_text_in_the_image_are_read(chart):
    image, _ = chart
    assert image.caption == FIGURE_CAPTION
    for year, value in CAPACITY.items():
        assert year in image.ocr_text and value in image.ocr_text
    for block in image.ocr:  # OCR boxes are mapped inside the image's placement
        assert image.bbox[0] - 1 <= block.bbox[0] and block.bbox[2] <= image.bbox[2] + 1
        assert image.bbox[1] - 1 <= block.bbox[1] and block.bbox[3] <= image.bbox[3] + 1


def test_offline_description_is_caption_plus_ocr_text(chart):
    image, _ = chart
    describe_image(image)
    assert image.description_source == "ocr+caption"
    assert FIGURE_CAPTION in image.description and "240 MW" in image.description


def test_vision_model_describes_the_image_it_is_sent(chart, vision_model):
    image, _ = chart
    describe_image(image, vision_model)
    assert image.description_source == "vision"
    assert vision_model.reply in image.description
    assert "240 MW" in image.description  # OCR text kept for exact matches
    (message,) = vision_model.calls[0]
    blocks = {b["type"]: b for b in message.content}
    assert blocks["image_url"]["image_url"]["url"].startswith("data:image/png;base64,")
    assert FIGURE_CAPTION in blocks["text"]["text"]


def test_failing_vision_model_falls_back_to_offline_description(chart):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class Broken(FakeListChatModel):
        def _call(self, *args, **kwargs):
            raise ConnectionError("server down")

    image, _ = chart
    describe_image(image, Broken(responses=["unused"]))
    assert image.description_source == "ocr+caption"
    assert "240 MW" in image.description


def test_tiny_images_are_skipped(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page()
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 8, 8), False)
    pix.clear_with(200)
    page.insert_image(pymupdf.Rect(10, 10, 20, 20), pixmap=pix)
    page.insert_image(pymupdf.Rect(100, 100, 200, 200), pixmap=pix)
    images = extract_images(page)
    assert [tuple(round(v) for v in i.bbox) for i in images] == [(100, 100, 200, 200)]
