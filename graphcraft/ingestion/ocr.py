"""OCR with Tesseract (pytesseract): words with boxes and confidences, grouped into paragraphs.

Used for scanned pages (no text layer: the page is rendered at ``dpi`` and OCR'd) and for
images that contain text. Word boxes are mapped back to PDF points so an OCR'd answer cites
a region of the page like any other chunk. Words under ``min_confidence`` are flagged, not
dropped: the chunk says which words are doubtful and its mean confidence.

Needs the Tesseract binary (Debian: tesseract-ocr tesseract-ocr-eng).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

import pymupdf
from PIL import Image, UnidentifiedImageError

from graphcraft.errors import IngestError
from graphcraft.ingestion.pdf_layout import BBox, bbox_union

DEFAULT_DPI = 300
DEFAULT_MIN_CONFIDENCE = 60.0

PointMap = Callable[[BBox], BBox]


class OcrError(IngestError):
    """Tesseract is missing, or it cannot read an image."""


@dataclass(frozen=True)
class OcrWord:
    text: str
    confidence: float  # Tesseract's 0-100 word confidence
    bbox: BBox  # image pixels, or PDF points once mapped
    block: int
    paragraph: int
    line: int


@dataclass
class OcrBlock:
    """A paragraph of OCR'd words: text, union bbox and confidence flags."""

    words: list[OcrWord]
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    text: str = field(init=False)
    bbox: BBox = field(init=False)

    def __post_init__(self) -> None:
        lines: dict[tuple[int, int, int], list[str]] = {}
        for w in self.words:
            lines.setdefault((w.block, w.paragraph, w.line), []).append(w.text)
        self.text = " ".join(" ".join(ws) for ws in lines.values())
        self.bbox = bbox_union(w.bbox for w in self.words)

    @property
    def mean_confidence(self) -> float:
        return sum(w.confidence for w in self.words) / len(self.words)

    @property
    def low_confidence_words(self) -> list[str]:
        return [w.text for w in self.words if w.confidence < self.min_confidence]

    @property
    def low_confidence(self) -> bool:
        """Flag a paragraph when its mean is low or any word is under the threshold."""
        return self.mean_confidence < self.min_confidence or bool(self.low_confidence_words)

    def flags(self) -> dict:
        """The confidence metadata a chunk carries."""
        return {
            "ocr": True,
            "ocr_confidence": round(self.mean_confidence, 1),
            "low_confidence": self.low_confidence,
            "low_confidence_words": self.low_confidence_words,
        }


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def _require_tesseract() -> None:
    if not tesseract_available():
        raise OcrError("Tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng")


def load_image(data: bytes | Image.Image, what: str = "image") -> Image.Image:
    """A PIL image in a mode Tesseract reads, or OcrError naming ``what``."""
    if isinstance(data, Image.Image):
        image = data
    else:
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise OcrError(f"{what}: not a readable image ({exc})") from exc
    if image.width < 1 or image.height < 1:
        raise OcrError(f"{what}: image is empty ({image.width}x{image.height})")
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def ocr_words(
    image: bytes | Image.Image,
    *,
    lang: str = "eng",
    to_points: PointMap | None = None,
    what: str = "image",
) -> list[OcrWord]:
    """Words Tesseract reads in the image, with confidences and boxes (mapped by ``to_points``)."""
    import pytesseract

    _require_tesseract()
    img = load_image(image, what)
    try:
        data = pytesseract.image_to_data(img, lang=lang, output_type=pytesseract.Output.DICT)
    except (pytesseract.TesseractError, OSError, ValueError) as exc:
        raise OcrError(f"{what}: Tesseract cannot read it ({str(exc).strip() or type(exc).__name__})") from exc
    words: list[OcrWord] = []
    for i, text in enumerate(data["text"]):
        text = text.strip()
        conf = float(data["conf"][i])
        if not text or conf < 0:  # conf -1 marks layout rows, not words
            continue
        left, top, width, height = (float(data[k][i]) for k in ("left", "top", "width", "height"))
        box: BBox = (left, top, left + width, top + height)
        words.append(
            OcrWord(
                text,
                conf,
                to_points(box) if to_points else box,
                data["block_num"][i],
                data["par_num"][i],
                data["line_num"][i],
            )
        )
    return words


def group_blocks(words: list[OcrWord], min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[OcrBlock]:
    """Paragraphs in Tesseract's reading order."""
    groups: dict[tuple[int, int], list[OcrWord]] = {}
    for w in words:
        groups.setdefault((w.block, w.paragraph), []).append(w)
    return [OcrBlock(ws, min_confidence) for ws in groups.values()]


def merge_blocks(blocks: list[OcrBlock], max_chars: int = 800, min_chars: int = 40) -> list[OcrBlock]:
    """Paragraphs as chunks, like text blocks on a text page: a paragraph longer than
    ``max_chars`` is split at line boundaries, one shorter than ``min_chars`` (a heading) is
    joined to the next, so each chunk cites one paragraph's box."""
    pieces: list[list[OcrWord]] = []
    for block in blocks:
        lines: dict[tuple[int, int, int], list[OcrWord]] = {}
        for w in block.words:
            lines.setdefault((w.block, w.paragraph, w.line), []).append(w)
        current: list[OcrWord] = []
        for words in lines.values():
            if current and _chars(current) + _chars(words) > max_chars:
                pieces.append(current)
                current = []
            current = current + words
        if current:
            pieces.append(current)
    merged: list[list[OcrWord]] = []
    for words in pieces:
        if merged and _chars(merged[-1]) < min_chars and _chars(merged[-1]) + _chars(words) <= max_chars:
            merged[-1] = merged[-1] + words
        else:
            merged.append(words)
    if len(merged) > 1 and _chars(merged[-1]) < min_chars and _chars(merged[-2]) + _chars(merged[-1]) <= max_chars:
        merged[-2:] = [merged[-2] + merged[-1]]  # a short last paragraph joins the one before
    min_conf = blocks[0].min_confidence if blocks else DEFAULT_MIN_CONFIDENCE
    return [OcrBlock(words, min_conf) for words in merged]


def _chars(words: list[OcrWord]) -> int:
    return sum(len(w.text) + 1 for w in words)


def ocr_image(
    image: bytes | Image.Image,
    *,
    lang: str = "eng",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    to_points: PointMap | None = None,
    what: str = "image",
) -> list[OcrBlock]:
    """OCR paragraphs of an image (boxes in pixels unless ``to_points`` maps them)."""
    return group_blocks(ocr_words(image, lang=lang, to_points=to_points, what=what), min_confidence)


def render_page(page: pymupdf.Page, dpi: int = DEFAULT_DPI) -> Image.Image:
    """The page as a PIL image at ``dpi`` (what a scanner would have produced)."""
    pix = page.get_pixmap(dpi=dpi, alpha=False)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def page_pixels_to_points(page: pymupdf.Page, dpi: int) -> PointMap:
    """Map a box on the rendered (rotated) page image to PDF points of the unrotated page."""
    matrix = pymupdf.Matrix(72.0 / dpi, 72.0 / dpi) * page.derotation_matrix

    def to_points(box: BBox) -> BBox:
        return tuple(pymupdf.Rect(box) * matrix)

    return to_points


def image_pixels_to_points(size: tuple[int, int], placed: BBox) -> PointMap:
    """Map a box in an embedded image's pixels to where the image is drawn on the page."""
    sx = (placed[2] - placed[0]) / size[0]
    sy = (placed[3] - placed[1]) / size[1]

    def to_points(box: BBox) -> BBox:
        return (placed[0] + box[0] * sx, placed[1] + box[1] * sy, placed[0] + box[2] * sx, placed[1] + box[3] * sy)

    return to_points


def ocr_page(
    page: pymupdf.Page,
    *,
    dpi: int = DEFAULT_DPI,
    lang: str = "eng",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    what: str | None = None,
) -> list[OcrBlock]:
    """OCR a page with no text layer; paragraph boxes come back in PDF points."""
    return ocr_image(
        render_page(page, dpi),
        lang=lang,
        min_confidence=min_confidence,
        to_points=page_pixels_to_points(page, dpi),
        what=what or f"page {page.number + 1}",
    )
