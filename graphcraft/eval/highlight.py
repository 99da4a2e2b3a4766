"""Show where an answer came from: a PDF page rendered with the cited region highlighted.

A source's bbox is in PDF points of the unrotated page (what PyMuPDF's text extraction and
the multimodal loader use); it is mapped through the page's rotation and the render zoom, so
the highlight lands on the region as a reader sees the page. Image-file sources
(``bbox_units == "px"``) are highlighted on the image itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict, Unpack, cast

import pymupdf
from PIL import Image, ImageDraw

from graphcraft.errors import GraphcraftError

Color = tuple[int, int, int]
BBoxLike = Sequence[float]


class Style(TypedDict, total=False):
    """How a highlight is drawn (`render_highlight`'s keywords)."""

    color: Color
    width: int


def _draw(image: Image.Image, boxes: Sequence[BBoxLike], color: Color, width: int) -> Image.Image:
    base = image.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], fill=(*color, 70), outline=(*color, 255), width=width)
    return Image.alpha_composite(base, overlay).convert("RGB")


def page_box_to_pixels(page: pymupdf.Page, bbox: BBoxLike, dpi: int) -> tuple[float, float, float, float]:
    """A bbox in unrotated PDF points -> pixels of the page rendered at ``dpi``."""
    rect = pymupdf.Rect(bbox) * page.rotation_matrix * pymupdf.Matrix(dpi / 72, dpi / 72)
    return (rect.x0, rect.y0, rect.x1, rect.y1)


def _boxes(bboxes: BBoxLike | Sequence[BBoxLike]) -> list[BBoxLike]:
    """One bbox or several, as a list of bboxes."""
    if bboxes and isinstance(bboxes[0], (int, float)):
        return [cast(BBoxLike, bboxes)]
    return list(cast(Sequence[BBoxLike], bboxes))


def render_highlight(
    pdf_path: str | Path,
    page: int,
    bboxes: BBoxLike | Sequence[BBoxLike],
    *,
    dpi: int = 110,
    color: Color = (255, 170, 0),
    width: int = 3,
    out: str | Path | None = None,
) -> Image.Image:
    """Page ``page`` (1-based) of ``pdf_path`` as an image with ``bboxes`` highlighted;
    saved as PNG to ``out`` when given."""
    boxes = _boxes(bboxes)
    try:
        doc = pymupdf.open(pdf_path)
    except Exception as exc:
        raise GraphcraftError(f"cannot open {pdf_path} to highlight it: {exc}") from exc
    with doc:
        if not 1 <= page <= doc.page_count:
            raise GraphcraftError(f"{pdf_path} has no page {page} (it has {doc.page_count})")
        pdf_page = doc[page - 1]
        pix = pdf_page.get_pixmap(dpi=dpi, alpha=False)
        image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
        pixels = [page_box_to_pixels(pdf_page, box, dpi) for box in boxes]
    result = _draw(image, pixels, color, width)
    if out is not None:
        result.save(out, format="PNG")
    return result


def highlight_source(
    source: dict, *, dpi: int = 110, out: str | Path | None = None, **style: Unpack[Style]
) -> Image.Image:
    """The cited region of one answer source (a dict from a graph's ``sources``)."""
    if not source.get("bbox"):
        raise GraphcraftError(f"source {source.get('chunk_id')} has no bbox to highlight")
    path = Path(str(source["source"]))
    if source.get("bbox_units") == "px" or path.suffix.lower() != ".pdf":
        color, width = style.get("color", (255, 170, 0)), int(style.get("width", 3))
        image = _draw(Image.open(path), [source["bbox"]], color, width)
        if out is not None:
            image.save(out, format="PNG")
        return image
    return render_highlight(path, int(source.get("page") or 1), source["bbox"], dpi=dpi, out=out, **style)
