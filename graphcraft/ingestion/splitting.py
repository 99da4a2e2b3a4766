"""Split page-level Documents into chunks with stable ids and content hashes.

Markdown keeps its section path (`section` metadata, used by hierarchical retrieval): `#` to
`######` lines open sections, except inside fenced code. The text of each section is kept
verbatim (LangChain's MarkdownHeaderTextSplitter strips every line, which loses the indentation
of code and the blank lines between paragraphs). Everything is then cut to size with the
RecursiveCharacterTextSplitter. A chunk id is derived from the file's content hash and the
chunk's position, so the same file always yields the same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

from graphcraft.ingestion.strips import split_strips

HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
SECTION_SEPARATOR = " > "


def sha256(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def _closes(fence: str, line: str) -> bool:
    match = FENCE.match(line)
    return match is not None and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)


def markdown_sections(text: str) -> list[tuple[str, str]]:
    """(section path, verbatim text) pairs in reading order.

    The path joins the enclosing headings ("Guide > Install > Linux"). Each section's text
    starts with its heading line; a heading with no text of its own (a title directly followed
    by a subsection) is carried into the next section rather than left as a chunk alone.
    """
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    carried = ""
    fence = ""

    def close_section() -> None:
        nonlocal carried
        section_text = "\n\n".join(part for part in (carried, "\n".join(lines).strip("\n")) if part)
        if _is_only_headings(section_text):
            carried = section_text
        else:
            sections.append((SECTION_SEPARATOR.join(title for _, title in path), section_text))
            carried = ""
        lines.clear()

    for line in text.split("\n"):
        if fence:
            fence = "" if _closes(fence, line) else fence
        elif (opening := FENCE.match(line)) is not None:
            fence = opening.group(1)
        elif (heading := HEADING.match(line)) is not None:
            close_section()
            level = len(heading.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, heading.group(2).strip())]
        lines.append(line)
    close_section()
    if carried:  # a document that is only headings keeps them
        sections.append((SECTION_SEPARATOR.join(title for _, title in path), carried))
    return sections


def _sections(doc: Document) -> list[Document]:
    if doc.metadata.get("format") != "markdown":
        return [doc]
    return [
        Document(page_content=text, metadata={**doc.metadata, "section": path})
        for path, text in markdown_sections(doc.page_content)
    ] or [doc]


def _is_only_headings(text: str) -> bool:
    return all(HEADING.match(line) or not line.strip() for line in text.split("\n"))


def _headings_with_their_text(pieces: list[Document]) -> list[Document]:
    """Join a piece that holds only a section's heading to the text after it (the cutter
    leaves the heading alone when the first paragraph is too long to share a chunk)."""
    if len(pieces) > 1 and _is_only_headings(pieces[0].page_content):
        joined = Document(
            page_content=f"{pieces[0].page_content}\n\n{pieces[1].page_content}", metadata=pieces[1].metadata
        )
        return [joined, *pieces[2:]]
    return pieces


# Paragraphs, lines, then sentence ends before words: a long paragraph is cut between sentences, so
# a chunk (and the overlap it shares with its neighbour) starts and ends on whole sentences.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", " ", ""]


def split_documents(
    pages: list[Document], file_hash: str, chunk_size: int = 800, chunk_overlap: int = 120
) -> list[Document]:
    """Chunks carrying source, page, section, chunk_id, content_hash, modality and position.

    Chunk ids derive from the file's path and content hash, so two files with the same content
    (a copied README) get distinct ids, and an unchanged file always gets the same ones.
    """
    return split_documents_bounded(pages, file_hash, chunk_size, chunk_overlap)[0]


def split_documents_bounded(
    pages: list[Document],
    file_hash: str,
    chunk_size: int = 800,
    chunk_overlap: int = 120,
    max_chunks: int | None = None,
) -> tuple[list[Document], bool]:
    """`split_documents` keeping at most `max_chunks` chunks, and whether the bound cut the file short.

    The text past what the first `max_chunks` chunks can hold is dropped before splitting, so a
    huge file costs time in proportion to the bound, not to its size."""
    cut = False
    if max_chunks is not None:
        pages, cut = _within(pages, (max_chunks + 2) * chunk_size)
    source = str(pages[0].metadata.get("source", "")) if pages else ""
    id_prefix = sha256(f"{source}\n{file_hash}")[:12]
    chunks: list[Document] = []
    for piece in _pieces(pages, chunk_size, chunk_overlap):
        text = piece.page_content.strip()
        if not text:
            continue
        if max_chunks is not None and len(chunks) >= max_chunks:
            return chunks, True
        index = len(chunks)
        meta = {k: v for k, v in piece.metadata.items() if k not in {"format", "start_index"}}
        meta.update(
            chunk_id=f"{id_prefix}-{index:05d}",
            content_hash=sha256(text),
            modality=meta.get("modality", "text"),
            chunk_index=index,
            doc_hash=file_hash,
            strips=[list(span) for span in split_strips(text)],
        )
        meta.setdefault("page", None)
        chunks.append(Document(page_content=text, metadata=meta, id=meta["chunk_id"]))
    return chunks, cut


def _pieces(pages: list[Document], chunk_size: int, chunk_overlap: int) -> Iterator[Document]:
    """The splitter's pieces, page by page and section by section, in reading order."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        add_start_index=True,
        separators=SEPARATORS,
        keep_separator="end",
    )
    for page in pages:
        for section in _sections(page):
            yield from _headings_with_their_text(splitter.split_documents([section]))


def _within(pages: list[Document], budget: int) -> tuple[list[Document], bool]:
    """The pages cut to `budget` characters in all, and whether anything was cut."""
    kept: list[Document] = []
    for page in pages:
        if budget <= 0:
            return kept, True
        if len(page.page_content) > budget:
            kept.append(Document(page_content=page.page_content[:budget], metadata=dict(page.metadata)))
            return kept, True
        kept.append(page)
        budget -= len(page.page_content)
    return kept, False
