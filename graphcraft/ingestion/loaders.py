"""Turn one file into page-level Documents (text + source/page metadata), or fail clearly.

Every failure is an IngestError with a one-line reason, so a folder ingest can report the bad
file and go on with the rest. Content a loader had to skip or guess at (a scanned page it could
not OCR, bytes that are not valid UTF-8) is never dropped silently: it becomes a LoadWarning
the caller reports next to the file.

HTML is rendered to Markdown that reads like the page: the main content only (navigation,
sidebars, page headers/footers and permalink marks removed), headings as ``#`` lines (so the
splitter keeps section paths), code verbatim in fences, definition terms with their text,
table rows with cells separated by `` | ``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.documents import Document

from graphcraft.errors import IngestError
from graphcraft.ingestion.ocr import (
    DEFAULT_DPI,
    DEFAULT_MIN_CONFIDENCE,
    OcrBlock,
    OcrError,
    ocr_page,
    tesseract_available,
)

if TYPE_CHECKING:
    import pymupdf
    from bs4 import BeautifulSoup, Tag

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".log", ".py", ".yaml", ".yml"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


@dataclass(frozen=True)
class LoadWarning:
    """Content that was skipped or read with a guess: the page (None: the whole file) and why."""

    page: int | None
    warning: str


@dataclass(frozen=True)
class OcrOptions:
    """How the plain PDF loader reads pages that have no text layer."""

    enabled: bool = True
    dpi: int = DEFAULT_DPI
    lang: str = "eng"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


Warnings = list[LoadWarning]


def _warn(warnings: Warnings | None, page: int | None, message: str) -> None:
    if warnings is not None:
        warnings.append(LoadWarning(page, message))


# ------------------------------------------------------------------------------ bytes and text


def read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise IngestError("file not found") from exc
    except PermissionError as exc:
        raise IngestError("permission denied") from exc
    except IsADirectoryError as exc:
        raise IngestError("is a directory") from exc
    except OSError as exc:
        raise IngestError(f"cannot read: {exc.strerror or exc}") from exc
    if not data.strip():
        raise IngestError("empty file")
    return data


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _decode_utf8_with_bad_bytes(data: bytes) -> tuple[str, int, int]:
    """(text with U+FFFD per invalid byte, invalid bytes, valid non-ASCII characters)."""
    escaped = data.decode("utf-8-sig", errors="surrogateescape")
    bad = len(_ESCAPED_BYTE.findall(escaped))
    valid_non_ascii = sum(ord(c) > 127 for c in escaped) - bad
    return _ESCAPED_BYTE.sub("\ufffd", escaped), bad, valid_non_ascii


def _mostly_utf8(valid_non_ascii: int, bad: int) -> bool:
    """Whether bytes with `bad` invalid sequences are UTF-8 with stray bytes rather than 8-bit text.

    A valid multi-byte sequence is strong evidence: 8-bit text almost never forms one (a capital
    accented letter followed by a symbol such as © or »), while its every accented letter before
    an ASCII one is invalid UTF-8. So one valid character outweighs several stray bytes; only
    text with no valid sequence at all is read as Windows-1252/Latin-1.
    """
    return valid_non_ascii > 0 and bad <= UTF8_EVIDENCE_RATIO * valid_non_ascii


UTF8_EVIDENCE_RATIO = 4  # stray bytes one valid UTF-8 character can outweigh
CP1252_UNDEFINED = {0x81, 0x8D, 0x8F, 0x90, 0x9D}


def _looks_like_text(sample: bytes) -> bool:
    """Almost no control characters: printable ASCII, line breaks, tabs and 8-bit letters."""
    printable = sum(32 <= b < 127 or b in (9, 10, 13) or (b >= 128 and b not in CP1252_UNDEFINED) for b in sample)
    return printable / max(1, len(sample)) >= 0.95


def _decode_legacy(data: bytes) -> str:
    """Windows-1252 (a superset of Latin-1's printable range), else Latin-1, which decodes anything."""
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_declared(data: bytes, encoding: str | None) -> str | None:
    """The text in the encoding the file declares (an HTML meta charset), if that decodes it."""
    if not encoding:
        return None
    try:
        return data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return None


def decode_text(data: bytes, warnings: Warnings | None = None, declared_encoding: str | None = None) -> str:
    """UTF-8 (with BOM) or UTF-16 text; anything with NUL bytes is binary.

    Valid UTF-8 wins over any declaration (a mislabelled page is more common than Latin-1 text
    that happens to be valid UTF-8). Then the declared encoding, if it decodes the bytes. A
    mostly valid UTF-8 file (see `_mostly_utf8`: one stray byte never turns it into Latin-1)
    keeps its characters and gets U+FFFD for each bad byte, with a warning; otherwise the bytes
    are read as a legacy 8-bit encoding when they look like text, with a warning.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise IngestError("invalid UTF-16 text") from None
    if b"\x00" in data[:8192]:
        raise IngestError("binary file (not text)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    declared = _decode_declared(data, declared_encoding)
    if declared is not None:
        return declared
    text, bad, valid_non_ascii = _decode_utf8_with_bad_bytes(data)
    if _mostly_utf8(valid_non_ascii, bad):
        _warn(warnings, None, f"{bad} invalid UTF-8 byte(s) replaced by U+FFFD")
        return text
    if not _looks_like_text(data[:8192]):
        raise IngestError("binary file (not text)")
    _warn(warnings, None, "not UTF-8: read as Windows-1252/Latin-1")
    return _decode_legacy(data)


def load_text(path: Path, data: bytes | None = None, warnings: Warnings | None = None) -> list[Document]:
    text = decode_text(read_bytes(path) if data is None else data, warnings)
    if not text.strip():
        raise IngestError("empty file")
    fmt = "markdown" if path.suffix.lower() in {".md", ".markdown"} else "text"
    return [Document(page_content=text, metadata={"source": str(path), "page": None, "format": fmt})]


# ------------------------------------------------------------------------------------- HTML

# Elements that are never the page's content.
NON_CONTENT_TAGS = [
    "head",
    "title",  # read before this; without a <head> the parser leaves it in the body, glued to the first paragraph
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "object",
    "button",
    "input",
    "select",
    "textarea",
    "nav",
]
# ARIA landmarks of site chrome (the page header is "banner", the page footer "contentinfo").
CHROME_ROLES = {"navigation", "search", "banner", "contentinfo"}
# Class names documentation generators and sites give their chrome: Sphinx (sphinxsidebar,
# related, footer), DocBook XSL (navheader, navfooter), and common site themes.
CHROME_CLASSES = {
    "sphinxsidebar",
    "related",
    "navheader",
    "navfooter",
    "footer",
    "breadcrumb",
    "breadcrumbs",
    "navbar",
    "navigation",
    "mobile-nav",
    "skip-link",
    "headerlink",
}
# The text of a permalink (an in-page link) next to a heading or definition.
PERMALINK_MARKS = {"¶", "§", "#", "🔗", "∞"}
# Containers whose heading is a label ("Note", "Warning"), not a section of the page.
ADMONITION_CLASSES = {
    "admonition",
    "note",
    "warning",
    "tip",
    "caution",
    "important",
    "attention",
    "danger",
    "error",
    "hint",
    "seealso",
}
# header/footer belong to the nearest of these; directly under body they are the site's chrome.
SECTIONING_TAGS = ["article", "aside", "section", "main", "blockquote", "details", "figure", "td", "fieldset", "dialog"]
HEADING_TAGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
BLOCK_TAGS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "header",
    "hgroup",
    "hr",
    "html",
    "li",
    "main",
    "menu",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
    *HEADING_TAGS,
}
LINE_BREAK = "\u2028"  # stands for <br> until paragraphs are laid out
MARKDOWN_SYNTAX_AT_LINE_START = re.compile(r"^(#|```|~~~)")


def _classes(tag: Tag) -> set[str]:
    return set(tag.get("class") or [])


def _is_chrome(tag: Tag) -> bool:
    """Navigation, search, page header/footer, hidden elements and permalink anchors."""
    if tag.get("role") in CHROME_ROLES or _classes(tag) & CHROME_CLASSES:
        return True
    if tag.has_attr("hidden") or tag.get("aria-hidden") == "true":
        return True
    if tag.name in ("header", "footer") and tag.find_parent(SECTIONING_TAGS) is None:
        return True
    return tag.name == "a" and str(tag.get("href", "")).startswith("#") and tag.get_text(strip=True) in PERMALINK_MARKS


def _strip_chrome(soup: BeautifulSoup) -> None:
    from bs4.element import PreformattedString

    for node in soup.find_all(string=lambda s: isinstance(s, PreformattedString)):
        node.extract()  # comments, doctype, processing instructions, CDATA
    for tag in soup.find_all(NON_CONTENT_TAGS):
        tag.decompose()
    for tag in soup.find_all(_is_chrome):
        if not tag.decomposed:
            tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with(LINE_BREAK)


def _main_content(soup: BeautifulSoup) -> Tag:
    """The page's main landmark when it has one with text, else its body."""
    main = soup.find("main") or soup.find(None, {"role": "main"})
    if main is not None and main.get_text(strip=True):
        return main
    return soup.body or soup


def _is_block(tag: Tag) -> bool:
    """A block element, or an inline one wrapping blocks (a link around a div)."""
    return tag.name in BLOCK_TAGS or any(getattr(node, "name", None) in BLOCK_TAGS for node in tag.descendants)


def _clean(text: str) -> str:
    return " ".join(text.split())


def _fence(code: str) -> str:
    """Verbatim code in a Markdown fence (so `#` comments never read as headings)."""
    code = code.replace(LINE_BREAK, "\n").strip("\n")
    marker = "~~~~" if "```" in code else "```"
    return f"{marker}\n{code}\n{marker}"


@dataclass
class _Heading:
    tag: Tag
    level: int
    text: str


class HtmlRenderer:
    """Render one content root to Markdown blocks; `ranks` maps a heading tag to its `#` count
    (0: the heading is the page title, already written)."""

    def __init__(self, ranks: dict[int, int]) -> None:
        self.ranks = ranks

    def blocks(self, node: Tag) -> list[str]:
        """Paragraph-level blocks of a container, inline runs joined into paragraphs."""
        from bs4 import NavigableString, Tag

        out: list[str] = []
        inline: list[str] = []
        for child in node.children:
            if isinstance(child, NavigableString):
                inline.append(str(child))
            elif isinstance(child, Tag) and _is_block(child):  # children are strings or tags
                self._flush(inline, out)
                out.extend(self.block(child))
            else:
                inline.append(child.get_text())
        self._flush(inline, out)
        return out

    def text(self, node: Tag) -> str:
        """The element as one line (a heading, a table cell, a definition term)."""
        return " ".join(_clean(block) for block in self.blocks(node))

    def block(self, tag: Tag) -> list[str]:
        name = tag.name
        if name in HEADING_TAGS:
            return self._heading(tag)
        if name == "pre":
            return [_fence(tag.get_text())]
        if name == "table":
            return self._table(tag)
        if name in ("ul", "ol", "menu"):
            return self._list(tag)
        if name == "dl":
            return self._definitions(tag)
        if name == "hr":
            return []
        if _classes(tag) & ADMONITION_CLASSES:
            return self._admonition(tag)
        return self.blocks(tag)

    @staticmethod
    def _flush(inline: list[str], out: list[str]) -> None:
        lines = [_clean(line) for line in "".join(inline).split(LINE_BREAK)]
        lines = ["\\" + line if MARKDOWN_SYNTAX_AT_LINE_START.match(line) else line for line in lines if line]
        if lines:
            out.append("\n".join(lines))
        inline.clear()

    def _heading(self, tag: Tag) -> list[str]:
        rank = self.ranks.get(id(tag))
        if rank == 0:
            return []
        text = self.text(tag)
        if not text:
            return []
        return [f"{'#' * rank} {text}" if rank else text]

    def _admonition(self, tag: Tag) -> list[str]:
        """'Note: text' rather than a 'Note' paragraph (or section) of its own."""
        blocks = self.blocks(tag)
        label_is_short = len(blocks) > 1 and "\n" not in blocks[0] and len(blocks[0]) <= 40
        if label_is_short and not blocks[1].startswith(("```", "~~~")):
            return [f"{blocks[0].rstrip(':')}: {blocks[1]}", *blocks[2:]]
        return blocks

    def _table(self, table: Tag) -> list[str]:
        caption = table.find("caption", recursive=False)
        rows = [self.text(caption)] if caption else []
        for tr in table.find_all("tr"):
            if tr.find_parent("table") is not table:
                continue  # a nested table is rendered inside its cell
            cells = [self.text(cell) for cell in tr.find_all(["th", "td"], recursive=False)]
            if any(cells):
                rows.append(" | ".join(cells))
        return ["\n".join(row for row in rows if row)] if any(rows) else []

    def _list(self, tag: Tag) -> list[str]:
        """One block per list: items on their own lines, continuations indented under them."""
        items = []
        for number, li in enumerate(tag.find_all("li", recursive=False), start=1):
            blocks = self.blocks(li)
            if not blocks:
                continue
            bullet = f"{number}. " if tag.name == "ol" else "- "
            lines = "\n".join(blocks).split("\n")
            items.append("\n".join([bullet + lines[0], *("  " + line if line else line for line in lines[1:])]))
        return ["\n".join(items)] if items else []

    def _definitions(self, dl: Tag) -> list[str]:
        """Each term (a Sphinx signature, a DocBook variablelist term) joined to the first
        paragraph of its description, so a chunk never holds one without the other."""
        out: list[str] = []
        terms: list[str] = []
        for item in _definition_items(dl):
            if item.name == "dt":
                terms.append(self.text(item))
                continue
            body = self.blocks(item)
            head = "\n".join(t for t in terms if t)
            terms = []
            if head and body:
                out.extend([_term_with_text(head, body[0]), *body[1:]])
            else:
                out.extend([head] if head else body)
        if any(terms):
            out.append("\n".join(t for t in terms if t))
        return out


def _term_with_text(term: str, text: str) -> str:
    """'term: text' on one line, so cutting a long description never leaves the term alone;
    a description that opens with code or a list starts on the next line."""
    if text.startswith(("```", "~~~", "- ", "1. ")) or "\n" in term:
        return f"{term}\n{text}"
    return f"{term}{'' if term.endswith(':') else ':'} {text}"


def _definition_items(dl: Tag) -> list[Tag]:
    """dt/dd children of a dl, including those grouped in div wrappers (allowed by HTML)."""
    items: list[Tag] = []
    for child in dl.find_all(True, recursive=False):
        if child.name in ("dt", "dd"):
            items.append(child)
        elif child.name == "div":
            items.extend(child.find_all(["dt", "dd"], recursive=False))
    return items


def _section_headings(root: Tag, renderer: HtmlRenderer) -> list[_Heading]:
    """Headings that open sections (not the labels of notes and warnings), in page order."""
    headings = []
    for tag in root.find_all(HEADING_TAGS):
        if any(_classes(parent) & ADMONITION_CLASSES for parent in tag.parents):
            continue
        text = renderer.text(tag)
        if text:
            headings.append(_Heading(tag, int(tag.name[1]), text))
    return headings


def _rank_headings(headings: list[_Heading], head_title: str) -> tuple[str, bool, dict[int, int]]:
    """(page title, whether a `# title` line must be written, heading tag -> `#` count).

    A page whose first heading is its only top-level one (Sphinx's h1, a DocBook section's
    h2) takes it as the title. Otherwise (a DocBook reference page: several h2, the first
    repeating the <title>) the <title> becomes `#` and the headings sit under it. Levels are
    renumbered from there without gaps, so an h2/h3 page yields #/## and section paths.
    """
    levels = sorted({h.level for h in headings})
    top = [h for h in headings if h.level == levels[0]] if headings else []
    if len(top) == 1 and top[0] is headings[0]:
        ranks = {id(h.tag): min(6, levels.index(h.level) + 1) for h in headings}
        return headings[0].text, False, ranks
    title = head_title or (headings[0].text if headings else "")
    ranks = {id(h.tag): min(6, levels.index(h.level) + 2) for h in headings}
    if headings and _clean(headings[0].text) == _clean(title):
        ranks[id(headings[0].tag)] = 0
    return title, bool(title), ranks


def html_to_markdown(html: str) -> tuple[str, str]:
    """(page title, main content as Markdown) of an HTML page."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    head_title = _clean(soup.title.get_text()) if soup.title else ""
    _strip_chrome(soup)
    root = _main_content(soup)
    probe = HtmlRenderer({})
    title, write_title, ranks = _rank_headings(_section_headings(root, probe), head_title)
    blocks = HtmlRenderer(ranks).blocks(root)
    if write_title:
        blocks.insert(0, f"# {title}")
    return title, "\n\n".join(blocks)


def load_html(path: Path, data: bytes | None = None, warnings: Warnings | None = None) -> list[Document]:
    from bs4.dammit import EncodingDetector

    data = read_bytes(path) if data is None else data
    charset = EncodingDetector.find_declared_encoding(data, is_html=True)
    title, text = html_to_markdown(decode_text(data, warnings, charset))
    if not text.strip():
        raise IngestError("no text in HTML")
    return [
        Document(page_content=text, metadata={"source": str(path), "page": None, "format": "markdown", "title": title})
    ]


# -------------------------------------------------------------------------------------- PDF


def ocr_unavailable(options: OcrOptions) -> str | None:
    """Why scanned pages cannot be OCRed here, with the fix; None when they can."""
    if not options.enabled:
        return "OCR is disabled (enable it with Settings ocr=True / GRAPHCRAFT_OCR=true)"
    if find_spec("pytesseract") is None:
        return "OCR needs pytesseract: pip install 'graphcraft[multimodal]'"
    if not tesseract_available():
        return "Tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng"
    return None


def _needs_ocr(page: pymupdf.Page, text: str) -> bool:
    """No (or almost no) text layer over something drawn: a scanned page."""
    from graphcraft.ingestion.pdf_multimodal import SCAN_MAX_TEXT_CHARS, is_scanned

    return len(text.strip()) < SCAN_MAX_TEXT_CHARS and is_scanned(page)


def _ocr_page_document(
    page: pymupdf.Page, source: str, options: OcrOptions, warnings: Warnings | None
) -> Document | None:
    """The OCRed text of a scanned page, or None with a warning saying why and how to fix it."""
    number = page.number + 1
    reason = ocr_unavailable(options)
    if reason is None:
        try:
            blocks = ocr_page(page, dpi=options.dpi, lang=options.lang, min_confidence=options.min_confidence)
        except OcrError as exc:
            reason = str(exc)
        else:
            if not blocks:
                reason = "OCR found no text on it"
    if reason is not None:
        _warn(warnings, number, f"page {number} has no text layer (scanned?) and was not indexed: {reason}")
        return None
    confidence = OcrBlock([w for b in blocks for w in b.words], options.min_confidence).mean_confidence
    if confidence < options.min_confidence:
        _warn(warnings, number, f"page {number} was OCRed with low confidence ({confidence:.0f}/100): check the scan")
    text = "\n\n".join(block.text for block in blocks)
    return Document(
        page_content=text,
        metadata={
            "source": source,
            "page": number,
            "format": "text",
            "ocr": True,
            "ocr_confidence": round(confidence, 1),
        },
    )


def load_pdf(
    path: Path, data: bytes | None = None, ocr: OcrOptions | None = None, warnings: Warnings | None = None
) -> list[Document]:
    """One Document per page with text; scanned pages are OCRed (or reported in `warnings`)."""
    import pymupdf

    data = read_bytes(path) if data is None else data
    ocr = ocr or OcrOptions()
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - PyMuPDF raises several types for damage
        raise IngestError(f"corrupt or unreadable PDF ({str(exc).splitlines()[0][:120]})") from exc
    page_warnings: Warnings = []
    with doc:
        if doc.needs_pass:
            raise IngestError("encrypted PDF (password required)")
        if doc.page_count == 0:
            raise IngestError("PDF has no pages")
        pages = []
        try:
            for page in doc.pages():
                text = page.get_text("text", sort=True)
                ocred = _ocr_page_document(page, str(path), ocr, page_warnings) if _needs_ocr(page, text) else None
                if ocred is not None:
                    pages.append(ocred)
                elif text.strip():
                    meta = {"source": str(path), "page": page.number + 1, "format": "text"}
                    pages.append(Document(page_content=text, metadata=meta))
        except Exception as exc:  # noqa: BLE001
            raise IngestError(f"damaged PDF page ({str(exc).splitlines()[0][:120]})") from exc
    if not pages:
        reason = page_warnings[0].warning.split(": ", 1)[-1] if page_warnings else "blank pages"
        raise IngestError(f"PDF has no text layer ({reason})")
    if warnings is not None:
        warnings.extend(page_warnings)
    return pages


def load_file(
    path: Path, data: bytes | None = None, ocr: OcrOptions | None = None, warnings: Warnings | None = None
) -> list[Document]:
    """Page-level Documents for one file; raises IngestError with a one-line reason.

    `data` are the file's bytes when the caller has already read them (read once: the content
    hash and the text then describe the same bytes). Content skipped or decoded by a guess is
    appended to `warnings`.
    """
    data = read_bytes(path) if data is None else data
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES or (suffix not in HTML_SUFFIXES and data.startswith(b"%PDF")):
        return load_pdf(path, data, ocr, warnings)
    if suffix in HTML_SUFFIXES:
        return load_html(path, data, warnings)
    return load_text(path, data, warnings)
