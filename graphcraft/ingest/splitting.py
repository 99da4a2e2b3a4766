"""Split page-level Documents into chunks with stable ids and content hashes.

Markdown keeps its section path (`section` metadata, used by hierarchical retrieval) via
LangChain's MarkdownHeaderTextSplitter; everything is then cut to size with the
RecursiveCharacterTextSplitter. A chunk id is derived from the file's content hash and the
chunk's position, so the same file always yields the same ids.
"""

from __future__ import annotations

import hashlib

from langchain_core.documents import Document
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from graphcraft.ingest.strips import split_strips

HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]


def sha256(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def _sections(doc: Document) -> list[Document]:
    if doc.metadata.get("format") != "markdown":
        return [doc]
    parts = MarkdownHeaderTextSplitter(HEADERS, strip_headers=False).split_text(doc.page_content)
    out = []
    for part in parts:
        path = " > ".join(part.metadata[k] for _, k in HEADERS if k in part.metadata)
        meta = {**doc.metadata, "section": path}
        out.append(Document(page_content=part.page_content, metadata=meta))
    return out or [doc]


def split_documents(pages: list[Document], file_hash: str, chunk_size: int = 800, chunk_overlap: int = 120) -> list[Document]:
    """Chunks carrying source, page, section, chunk_id, content_hash, modality and position.

    Chunk ids derive from the file's path and content hash, so two files with the same content
    (a copied README) get distinct ids, and an unchanged file always gets the same ones.
    """
    source = str(pages[0].metadata.get("source", "")) if pages else ""
    id_prefix = sha256(f"{source}\n{file_hash}")[:12]
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True)
    chunks: list[Document] = []
    for page in pages:
        for section in _sections(page):
            for piece in splitter.split_documents([section]):
                text = piece.page_content.strip()
                if not text:
                    continue
                index = len(chunks)
                meta = {k: v for k, v in piece.metadata.items() if k not in {"format", "start_index"}}
                meta.update(chunk_id=f"{id_prefix}-{index:05d}", content_hash=sha256(text),
                            modality=meta.get("modality", "text"), chunk_index=index, doc_hash=file_hash,
                            strips=[list(span) for span in split_strips(text)])
                meta.setdefault("page", None)
                chunks.append(Document(page_content=text, metadata=meta, id=meta["chunk_id"]))
    return chunks
