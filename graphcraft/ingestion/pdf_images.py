"""Images embedded in PDFs: extracted with their placement, OCR'd, and described.

A vision chat model describes an image when one is given. Offline, the description is
assembled from what can be read without one: the figure's caption and the text Tesseract
finds in the image, so a question about a chart's labels or a photographed sign still
retrieves it.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field

import pymupdf
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from graphcraft.ingestion.ocr import (
    DEFAULT_MIN_CONFIDENCE,
    OcrBlock,
    image_pixels_to_points,
    load_image,
    ocr_image,
)
from graphcraft.ingestion.pdf_layout import BBox, nearby_caption

log = logging.getLogger(__name__)

FIGURE_CAPTION = re.compile(r"^\s*(figure|fig\.|chart|image|photo|diagram|plate)\s*\d*", re.IGNORECASE)
MIN_IMAGE_POINTS = 24.0  # smaller placements are rules, bullets and logos

VISION_PROMPT = (
    "Describe this image{where} so that it can be found by search: what it "
    "shows, every readable text, number, axis label and legend entry.{caption}"
)


@dataclass
class PdfImage:
    """An image as placed on a page (bbox in PDF points) with what was read from it."""

    page: int | None  # None for a standalone image file
    bbox: BBox
    xref: int
    data: bytes
    ext: str
    width: int
    height: int
    caption: str | None = None
    ocr: list[OcrBlock] = field(default_factory=list)
    description: str = ""
    description_source: str = "ocr+caption"

    @property
    def ocr_text(self) -> str:
        return " ".join(block.text for block in self.ocr)

    @property
    def mime(self) -> str:
        return "image/jpeg" if self.ext in ("jpg", "jpeg") else f"image/{self.ext}"


def extract_images(page: pymupdf.Page, min_points: float = MIN_IMAGE_POINTS) -> list[PdfImage]:
    """Images drawn on the page, once per placement, skipping tiny ones."""
    doc = page.parent
    images: list[PdfImage] = []
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for info in page.get_image_info(xrefs=True):
        rect = pymupdf.Rect(info["bbox"]) & page.rect
        if rect.is_empty or rect.width < min_points or rect.height < min_points:
            continue
        xref = int(info.get("xref") or 0)
        key = (xref, tuple(round(v) for v in rect))
        if key in seen:
            continue
        seen.add(key)
        if xref > 0:
            raw = doc.extract_image(xref)
            data, ext, width, height = raw["image"], raw["ext"], raw["width"], raw["height"]
        else:  # inline image: no xref to extract, so render its region instead
            pix = page.get_pixmap(clip=rect, dpi=150, alpha=False)
            data, ext, width, height = pix.tobytes("png"), "png", pix.width, pix.height
        bbox: BBox = tuple(float(v) for v in rect)  # type: ignore[assignment]
        images.append(PdfImage(page.number + 1, bbox, xref, data, ext, width, height))
    return images


def read_image(
    image: PdfImage,
    page: pymupdf.Page,
    *,
    ocr: bool = True,
    lang: str = "eng",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    what: str = "image",
) -> PdfImage:
    """Fill in the caption and, with ``ocr``, the text in the image (boxes mapped onto the page)."""
    image.caption = nearby_caption(page, image.bbox, FIGURE_CAPTION, prefer="below")
    if not ocr:
        return image
    pil = load_image(image.data, what)
    image.ocr = ocr_image(
        pil,
        lang=lang,
        min_confidence=min_confidence,
        to_points=image_pixels_to_points(pil.size, image.bbox),
        what=what,
    )
    return image


def offline_description(image: PdfImage) -> str:
    """Caption and OCR text: what stands in for a vision model's description."""
    parts = [f"Image on page {image.page}." if image.page else "Image."]
    if image.caption:
        parts.append(f"Caption: {image.caption}")
    if image.ocr_text:
        parts.append(f"Text in image: {image.ocr_text}")
    return " ".join(parts)


def vision_description(image: PdfImage, model: BaseChatModel) -> str:
    """Ask a vision chat model to describe the image (OpenAI-style image_url content block)."""
    caption = f" Its caption reads: {image.caption}" if image.caption else ""
    where = f" from page {image.page} of a PDF" if image.page else ""
    url = f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"
    message = HumanMessage(
        content=[
            {"type": "text", "text": VISION_PROMPT.format(where=where, caption=caption)},
            {"type": "image_url", "image_url": {"url": url}},
        ]
    )
    reply = model.invoke([message])
    return str(reply.text).strip()


def describe_image(image: PdfImage, vision_model: BaseChatModel | None = None) -> PdfImage:
    """Set ``description``: the vision model's, falling back to caption + OCR text offline or
    when the model fails (the failure is logged, ingestion goes on)."""
    if vision_model is not None:
        try:
            text = vision_description(image, vision_model)
            extra = f" Text in image: {image.ocr_text}" if image.ocr_text else ""
            where = f"Image on page {image.page}." if image.page else "Image."
            image.description = f"{where} {text}{extra}"
            image.description_source = "vision"
            return image
        except Exception as exc:  # a remote model failing must not lose the image
            log.warning("vision model failed on page %s image %s: %s", image.page, image.xref, exc)
    image.description = offline_description(image)
    image.description_source = "ocr+caption"
    return image
