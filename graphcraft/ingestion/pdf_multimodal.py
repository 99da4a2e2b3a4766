"""Multimodal PDF loading: text, tables, images and scanned pages as chunks with provenance.

Every chunk is a ``Document`` whose metadata says where it came from -- ``source``, 1-based
``page``, ``bbox`` ([x0, y0, x1, y1] PDF points of the unrotated page), ``modality``
("text" | "table" | "image"), a stable ``chunk_id`` and the ``content_hash`` of its text --
plus what the modality adds:

- text: ``ocr`` (True for scanned pages), and for OCR'd text ``ocr_confidence`` (mean word
  confidence, 0-100), ``low_confidence`` and ``low_confidence_words``;
- table: ``table_csv`` (the exact cells, read back with ``pdf_tables.frame_from_csv``),
  ``table_cell_bboxes`` (each body cell's box, row by row), ``table_columns``, ``table_rows``,
  ``caption``;
- image: ``caption``, ``description_source`` ("vision" or "ocr+caption"), ``image_xref``,
  ``image_size`` and the OCR flags of the text read in the image.

Loading a folder never stops at one bad file: each file that cannot be read (damaged,
encrypted, 0 pages, an image Tesseract cannot read) is reported with a one-line reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel

from graphcraft.errors import IngestError
from graphcraft.ingestion.ocr import (
    DEFAULT_DPI,
    DEFAULT_MIN_CONFIDENCE,
    OcrBlock,
    OcrError,
    load_image,
    merge_blocks,
    ocr_image,
    ocr_page,
)
from graphcraft.ingestion.pdf_images import PdfImage, describe_image, extract_images, read_image
from graphcraft.ingestion.pdf_layout import BBox, open_pdf, text_regions
from graphcraft.ingestion.pdf_tables import PdfTable, extract_tables

log = logging.getLogger(__name__)

PDF_SUFFIXES = frozenset({".pdf"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
MULTIMODAL_SUFFIXES = PDF_SUFFIXES | IMAGE_SUFFIXES
SCAN_MAX_TEXT_CHARS = 80  # fewer characters than this over a page-sized image: still a scan
SCAN_COVERAGE = 0.6  # share of the page an image must cover to count as a scan
BACKGROUND_SCAN = 0.8  # an image this large under a real text layer is the page's scan


@dataclass
class MultimodalOptions:
    """How to read a PDF; the defaults work offline."""

    ocr: bool = True  # OCR scanned pages and images (needs Tesseract)
    dpi: int = DEFAULT_DPI  # rendering resolution for scanned pages
    lang: str = "eng"  # Tesseract language(s), e.g. "eng+deu"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # words below are flagged low-confidence
    chunk_size: int = 800  # max characters of a text chunk
    images: bool = True  # extract embedded images
    table_strategy: str = "lines"  # PyMuPDF find_tables strategy
    table_layout: bool = False  # gate tables with PyMuPDF's layout model (~1 s/page on CPU)
    vision_model: BaseChatModel | None = None  # describes images when given
    password: str | None = None


@dataclass
class MultimodalLoad:
    """What a batch produced: the chunks, a reason per file that failed, non-fatal warnings."""

    documents: list[Document] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _round(bbox: BBox | None) -> list[float] | None:
    return [round(float(v), 2) for v in bbox] if bbox is not None else None


class _Chunks:
    """Builds Documents for one source with stable ids: <source digest>:p<page>:<modality><n>."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.key = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
        self.counts: dict[tuple[int | None, str], int] = {}
        self.documents: list[Document] = []

    def add(self, text: str, page: int | None, bbox: BBox | None, modality: str, **extra: object) -> None:
        text = text.strip()
        if not text:
            return
        n = self.counts.get((page, modality), 0)
        self.counts[(page, modality)] = n + 1
        metadata = {
            "source": self.source,
            "page": page,
            "bbox": _round(bbox),
            "modality": modality,
            "chunk_id": f"{self.key}:p{page or 0}:{modality}{n}",
            "content_hash": content_hash(text),
            **extra,
        }
        self.documents.append(Document(page_content=text, metadata=metadata))


def _merged_flags(blocks: list[OcrBlock], min_confidence: float) -> dict:
    words = [w for block in blocks for w in block.words]
    return OcrBlock(words, min_confidence).flags() if words else {"ocr": False}


def _add_table(chunks: _Chunks, table: PdfTable) -> None:
    chunks.add(
        table.markdown(),
        table.page,
        table.bbox,
        "table",
        table_csv=table.to_csv(),
        table_columns=list(table.frame.columns),
        table_rows=len(table.frame),
        table_cell_bboxes=[[list(b) if b else None for b in row] for row in table.cell_bboxes],
        caption=table.caption,
    )


def _add_image(chunks: _Chunks, image: PdfImage, opts: MultimodalOptions, label: str, bbox_units: str = "pt") -> None:
    """One chunk for a figure; an image full of text is split into OCR chunks as well.
    An image with nothing to say (no caption, no text, no vision model) is not indexed."""
    if image.description_source != "vision" and not image.caption and not image.ocr:
        return
    base = {
        "caption": image.caption,
        "description_source": image.description_source,
        "image_xref": image.xref,
        "image_size": [image.width, image.height],
        "bbox_units": bbox_units,
    }
    if len(image.description) <= opts.chunk_size or image.description_source == "vision":
        chunks.add(
            image.description, image.page, image.bbox, "image", **base, **_merged_flags(image.ocr, opts.min_confidence)
        )
    if len(image.description) <= opts.chunk_size:
        return
    caption = f" Caption: {image.caption}" if image.caption else ""
    for block in merge_blocks(image.ocr, opts.chunk_size):
        chunks.add(
            f"{label}.{caption} Text in image: {block.text}", image.page, block.bbox, "image", **base, **block.flags()
        )


def _area(bbox: BBox) -> float:
    return max(bbox[2] - bbox[0], 0.0) * max(bbox[3] - bbox[1], 0.0)


def is_scanned(page: pymupdf.Page) -> bool:
    """A page to OCR: no text layer at all (but something drawn), or a page-sized image with
    only a few characters of text on it (a stamped page number or header over a scan)."""
    chars = len(page.get_text("text").strip())
    if chars == 0:
        return bool(page.get_images() or page.get_drawings())
    if chars >= SCAN_MAX_TEXT_CHARS:
        return False
    covered = sum(_area(tuple(pymupdf.Rect(i["bbox"]) & page.rect)) for i in page.get_image_info())
    return covered >= SCAN_COVERAGE * abs(page.rect)


def _text_page(page: pymupdf.Page, chunks: _Chunks, opts: MultimodalOptions, load: MultimodalLoad) -> None:
    tables = extract_tables(page, opts.table_strategy, opts.table_layout)
    for region in text_regions(page, exclude=[t.bbox for t in tables], max_chars=opts.chunk_size):
        chunks.add(region.text, region.page, region.bbox, "text", ocr=False)
    for table in tables:
        _add_table(chunks, table)
    if not opts.images:
        return
    for image in extract_images(page):
        if _area(image.bbox) >= BACKGROUND_SCAN * abs(page.rect):
            continue  # the scan under an OCR'd text layer ("sandwich" PDF): its text is already read
        what = f"{chunks.source} page {image.page} image xref {image.xref}"
        try:
            read_image(image, page, ocr=opts.ocr, lang=opts.lang, min_confidence=opts.min_confidence, what=what)
        except OcrError as exc:  # the figure is still indexed by its caption
            load.warnings.append(str(exc))
            log.warning("%s", exc)
        describe_image(image, opts.vision_model)
        _add_image(chunks, image, opts, f"Image on page {image.page}")


def _scanned_page(page: pymupdf.Page, chunks: _Chunks, opts: MultimodalOptions) -> None:
    what = f"{chunks.source} page {page.number + 1}"
    blocks = ocr_page(page, dpi=opts.dpi, lang=opts.lang, min_confidence=opts.min_confidence, what=what)
    for block in merge_blocks(blocks, opts.chunk_size):
        chunks.add(block.text, page.number + 1, block.bbox, "text", **block.flags())


def load_pdf_multimodal(
    path: str | Path,
    options: MultimodalOptions | None = None,
    *,
    load: MultimodalLoad | None = None,
    data: bytes | None = None,
    **overrides: object,
) -> list[Document]:
    """Chunks of one PDF (from `data` when its bytes were already read): text blocks, tables, images
    and OCR'd scanned pages.

    ``options`` (or keyword overrides of its fields, e.g. ``dpi=200``) say how to read it.
    Raises an IngestError subclass when the file cannot be read at all; a problem with one
    embedded image is a warning (collected in ``load.warnings`` when given).
    """
    opts = _options(options, overrides)
    load = load if load is not None else MultimodalLoad()
    source = str(path)
    chunks = _Chunks(source)
    with open_pdf(path, opts.password, data) as doc:
        for page in doc:
            try:
                if not is_scanned(page):
                    _text_page(page, chunks, opts, load)
                elif opts.ocr:
                    _scanned_page(page, chunks, opts)
            except OcrError:
                raise
            except Exception as exc:  # a page MuPDF cannot interpret: the file is damaged
                raise IngestError(f"{source}: page {page.number + 1} cannot be read ({exc})") from exc
    return chunks.documents


def load_image_multimodal(
    path: str | Path,
    options: MultimodalOptions | None = None,
    *,
    data: bytes | None = None,
    **overrides: object,
) -> list[Document]:
    """Chunks of an image file (PNG, JPEG, TIFF ...; from `data` when already read): its OCR'd text,
    and a vision description when a model is given. Boxes are in image pixels (``bbox_units="px"``)."""
    opts = _options(options, overrides)
    source = str(path)
    try:
        data = Path(path).read_bytes() if data is None else data
    except OSError as exc:
        raise IngestError(f"{source}: cannot read file ({exc})") from exc
    pil = load_image(data, what=source)
    blocks = ocr_image(pil, lang=opts.lang, min_confidence=opts.min_confidence, what=source)
    fmt = (pil.format or Path(path).suffix.lstrip(".") or "png").lower()
    image = PdfImage(
        None, (0.0, 0.0, float(pil.width), float(pil.height)), 0, data, fmt, pil.width, pil.height, ocr=blocks
    )
    describe_image(image, opts.vision_model)
    chunks = _Chunks(source)
    _add_image(chunks, image, opts, f"Image {Path(path).name}", bbox_units="px")
    return chunks.documents


def _options(options: MultimodalOptions | None, overrides: dict[str, object]) -> MultimodalOptions:
    opts = options or MultimodalOptions()
    if overrides:
        unknown = set(overrides) - set(MultimodalOptions.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown multimodal options: {', '.join(sorted(unknown))}")
        opts = MultimodalOptions(**{**opts.__dict__, **overrides})
    return opts


def iter_multimodal_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """PDF and image files under the given files/folders, sorted, recursing into folders."""
    roots = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in MULTIMODAL_SUFFIXES)
        else:
            files.append(root)
    return files


def load_multimodal(
    paths: str | Path | Iterable[str | Path],
    options: MultimodalOptions | None = None,
    **overrides: object,
) -> MultimodalLoad:
    """Load every PDF and image under ``paths``; a file that fails is recorded in
    ``errors`` with its reason and the others are loaded."""
    opts = _options(options, overrides)
    load = MultimodalLoad()
    for path in iter_multimodal_files(paths):
        try:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                docs = load_image_multimodal(path, opts)
            else:
                docs = load_pdf_multimodal(path, opts, load=load)
        except IngestError as exc:
            load.errors[str(path)] = str(exc)
            log.warning("%s", exc)
            continue
        load.documents.extend(docs)
        load.files.append(str(path))
    return load
