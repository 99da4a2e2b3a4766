"""Turn one file into page-level Documents (text + source/page metadata), or fail clearly.

Every failure is an IngestError with a one-line reason, so a folder ingest can report the bad
file and go on with the rest.
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.documents import Document

from graphcraft.errors import IngestError

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".log", ".py", ".yaml", ".yml"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


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


def decode_text(data: bytes) -> str:
    """UTF-8 (with BOM) or UTF-16 text; anything with NUL bytes or invalid UTF-8 is binary."""
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
        # Latin-1 decodes anything; accept it only when the bytes look like text.
        sample = data[:8192]
        printable = sum(32 <= b < 127 or b in (9, 10, 13) or b >= 160 for b in sample)
        if printable / max(1, len(sample)) < 0.95:
            raise IngestError("binary file (not text)") from None
        return data.decode("latin-1")


def load_text(path: Path, data: bytes | None = None) -> list[Document]:
    text = decode_text(read_bytes(path) if data is None else data)
    if not text.strip():
        raise IngestError("empty file")
    return [Document(page_content=text, metadata={"source": str(path), "page": None, "format": "markdown" if path.suffix.lower() in {".md", ".markdown"} else "text"})]


def load_html(path: Path, data: bytes | None = None) -> list[Document]:
    from bs4 import BeautifulSoup

    html = decode_text(read_bytes(path) if data is None else data)
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    # Headings become markdown headings so the markdown splitter can keep sections.
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for block in soup.find_all(["p", "li", "tr", "div", "br"]):
        block.append("\n")
    text = "\n".join(line.strip() for line in soup.get_text().splitlines())
    text = "\n".join(part for part in text.split("\n\n\n") if part.strip())
    if not text.strip():
        raise IngestError("no text in HTML")
    title = soup.title.get_text(strip=True) if soup.title else ""
    return [Document(page_content=text, metadata={"source": str(path), "page": None, "format": "markdown", "title": title})]


def load_pdf(path: Path, data: bytes | None = None) -> list[Document]:
    import pymupdf

    data = read_bytes(path) if data is None else data
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - PyMuPDF raises several types for damage
        raise IngestError(f"corrupt or unreadable PDF ({str(exc).splitlines()[0][:120]})") from exc
    with doc:
        if doc.needs_pass:
            raise IngestError("encrypted PDF (password required)")
        if doc.page_count == 0:
            raise IngestError("PDF has no pages")
        pages = []
        try:
            for page in doc:
                text = page.get_text("text", sort=True)
                if text.strip():
                    pages.append(Document(page_content=text, metadata={"source": str(path), "page": page.number + 1, "format": "text"}))
        except Exception as exc:  # noqa: BLE001
            raise IngestError(f"damaged PDF page ({str(exc).splitlines()[0][:120]})") from exc
    if not pages:
        raise IngestError("PDF has no text layer (scanned? use the multimodal ingest with OCR)")
    return pages


def load_file(path: Path, data: bytes | None = None) -> list[Document]:
    """Page-level Documents for one file; raises IngestError with a one-line reason.

    `data` are the file's bytes when the caller has already read them (read once: the content
    hash and the text then describe the same bytes).
    """
    data = read_bytes(path) if data is None else data
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return load_pdf(path, data)
    if suffix in HTML_SUFFIXES:
        return load_html(path, data)
    if data.startswith(b"%PDF"):
        return load_pdf(path, data)
    return load_text(path, data)
