"""PDF text layout with PyMuPDF: text regions that keep their page number and bounding box.

Answers cite the region they came from, so a chunk is a group of consecutive lines of one
PyMuPDF text block and its bbox is the union of those lines' boxes, in PDF points of the
unrotated page (the coordinates PyMuPDF's text extraction uses).

PyMuPDF is licensed under the AGPL (or a commercial licence from Artifex).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pymupdf

from graphcraft.errors import IngestError

BBox = tuple[float, float, float, float]


class PdfOpenError(IngestError):
    """Base class for a PDF that cannot be read at all."""


class DamagedPdfError(PdfOpenError):
    """The file is not a readable PDF (corrupt, truncated beyond repair, or not a PDF)."""


class EncryptedPdfError(PdfOpenError):
    """The PDF is password-protected and no (correct) password was given."""


class EmptyPdfError(PdfOpenError):
    """The PDF opens but has no pages."""


@dataclass(frozen=True)
class TextRegion:
    """Text found on a page, with where it is: page is 1-based, bbox in PDF points."""

    text: str
    page: int
    bbox: BBox


def open_pdf(path: str | Path, password: str | None = None, data: bytes | None = None) -> pymupdf.Document:
    """Open a PDF (from `data` when its bytes were already read) or raise a one-line IngestError subclass."""
    path = Path(path)
    if data is None and not path.is_file():
        raise IngestError(f"{path}: file not found")
    try:
        doc = pymupdf.open(stream=data, filetype="pdf") if data is not None else pymupdf.open(path, filetype="pdf")
    except Exception as exc:  # PyMuPDF raises FileDataError / RuntimeError subclasses
        raise DamagedPdfError(f"{path}: damaged or not a PDF ({exc})") from exc
    if doc.needs_pass and not (password and doc.authenticate(password)):
        doc.close()
        hint = "wrong password" if password else "pass password=... to read it"
        raise EncryptedPdfError(f"{path}: PDF is encrypted ({hint})")
    if doc.page_count == 0:
        doc.close()
        raise EmptyPdfError(f"{path}: PDF has 0 pages")
    return doc


def bbox_union(boxes: Iterable[Sequence[float]]) -> BBox:
    """Smallest box containing all boxes."""
    boxes = list(boxes)
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def overlap_ratio(inner: Sequence[float], outer: Sequence[float]) -> float:
    """Share of ``inner``'s area that lies inside ``outer`` (0 for degenerate boxes)."""
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    if area <= 0:
        return 0.0
    w = min(inner[2], outer[2]) - max(inner[0], outer[0])
    h = min(inner[3], outer[3]) - max(inner[1], outer[1])
    return max(w, 0.0) * max(h, 0.0) / area


def has_text_layer(page: pymupdf.Page, min_chars: int = 1) -> bool:
    """True when the page carries extractable text; pages without one are scans to OCR."""
    return len(page.get_text("text").strip()) >= min_chars


def page_lines(page: pymupdf.Page, exclude: Sequence[Sequence[float]] = ()) -> list[list[TextRegion]]:
    """Text lines grouped by PyMuPDF block, in reading order.

    Lines lying mostly inside an ``exclude`` box (tables, which are chunked as tables) are
    dropped so the same content is not indexed twice.
    """
    number = page.number + 1
    blocks: list[list[TextRegion]] = []
    layout = page.get_text("dict", sort=True, flags=pymupdf.TEXTFLAGS_TEXT | pymupdf.TEXT_DEHYPHENATE)
    for block in layout["blocks"]:
        if block.get("type", 0) != 0:
            continue
        lines = []
        for line in block["lines"]:
            text = " ".join("".join(span["text"] for span in line["spans"]).split())
            if not text:
                continue
            box = tuple(float(v) for v in line["bbox"])
            if any(overlap_ratio(box, ex) > 0.5 for ex in exclude):
                continue
            lines.append(TextRegion(text, number, box))  # type: ignore[arg-type]
        if lines:
            blocks.append(lines)
    return blocks


def chunk_lines(blocks: list[list[TextRegion]], max_chars: int = 800, min_chars: int = 40) -> list[TextRegion]:
    """Group lines into chunks: never across blocks except that a short block (a heading)
    is carried into the next one, and a long block is split at line boundaries."""
    chunks: list[TextRegion] = []
    carry: list[TextRegion] = []
    for lines in blocks:
        group: list[TextRegion] = list(carry)
        carry = []
        for line in lines:
            size = sum(len(g.text) + 1 for g in group)
            if group and size + len(line.text) > max_chars:
                chunks.append(_merge(group))
                group = []
            group.append(line)
        if sum(len(g.text) + 1 for g in group) < min_chars:
            carry = group
        elif group:
            chunks.append(_merge(group))
    if carry:
        chunks.append(_merge(carry))
    return chunks


def _merge(lines: list[TextRegion]) -> TextRegion:
    return TextRegion(" ".join(line.text for line in lines), lines[0].page, bbox_union(line.bbox for line in lines))


def text_regions(
    page: pymupdf.Page,
    exclude: Sequence[Sequence[float]] = (),
    max_chars: int = 800,
    min_chars: int = 40,
) -> list[TextRegion]:
    """The page's text chunks with page number and bbox (tables in ``exclude`` left out)."""
    return chunk_lines(page_lines(page, exclude), max_chars=max_chars, min_chars=min_chars)


def nearby_caption(
    page: pymupdf.Page,
    bbox: Sequence[float],
    pattern: re.Pattern[str],
    prefer: str = "above",
    max_gap: float = 36.0,
) -> str | None:
    """Caption of a table or figure: a text block within ``max_gap`` points above or below
    ``bbox`` that matches ``pattern`` ("Table 2", "Figure 1"), else the nearest block on the
    ``prefer`` side."""
    above: list[tuple[float, str]] = []
    below: list[tuple[float, str]] = []
    for x0, y0, x1, y1, text, *_ in page.get_text("blocks"):
        text = " ".join(str(text).split())
        if not text or x1 < bbox[0] or x0 > bbox[2]:
            continue
        if 0 <= bbox[1] - y1 <= max_gap:
            above.append((bbox[1] - y1, text))
        elif 0 <= y0 - bbox[3] <= max_gap:
            below.append((y0 - bbox[3], text))
    for _, text in sorted(above + below):
        if pattern.match(text):
            return text
    side = above if prefer == "above" else below
    return min(side)[1] if side else None
