"""Multimodal ingestion: PDFs and images -> text/table/image chunks -> one store per modality.

``ingest_multimodal`` is ``ingest_paths`` for the multimodal loader. Chunks go to
``<store>/multimodal/<modality>/`` (see retrievers.multimodal); with ``mirror=True`` (default)
they also go to the main store, so the text-only graphs (crag ...) see OCR'd scanned pages
and table markdown too. Other files in the folder (markdown, HTML, text) go through the
ordinary loader into the text store. Guarantees are those of the ordinary pipeline: a file is
identified by absolute path + content hash, unchanged files are skipped, changed files replace
their chunks, a file that fails is reported and the rest go on, and every commit is atomic
per store (a file counts as ingested only once every store holds its current hash).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel

from graphcraft.config import Settings, get_settings
from graphcraft.errors import IngestError
from graphcraft.guards.access import classify_chunks, rules_digest, rules_for
from graphcraft.ingestion.pdf_multimodal import (
    IMAGE_SUFFIXES,
    PDF_SUFFIXES,
    MultimodalLoad,
    MultimodalOptions,
    load_image_multimodal,
    load_pdf_multimodal,
)
from graphcraft.ingestion.pipeline import IngestReport, ProgressFn, list_files, prepare_file, read_listed
from graphcraft.ingestion.splitting import sha256
from graphcraft.ingestion.strips import embed_chunks, split_strips
from graphcraft.retrievers.multimodal import MODALITIES, open_modality_stores
from graphcraft.stores.vector import ChunkStore, open_store

# Settings fields (GRAPHCRAFT_OCR, GRAPHCRAFT_OCR_DPI ...) -> loader options, read when present.
_SETTING_FOR_OPTION = {"ocr": "ocr", "dpi": "ocr_dpi", "lang": "ocr_lang", "min_confidence": "ocr_min_confidence"}


MultimodalIngestReport = IngestReport  # the same report: warnings include embedded images OCR could not read


def vision_model_from_settings(settings: Settings) -> BaseChatModel | None:
    """A chat model for image descriptions from ``settings.vision_model`` ('provider:model'),
    served like the chat model (same base_url / api_key); None when unset (offline)."""
    spec = str(getattr(settings, "vision_model", "") or "").strip()
    if not spec:
        return None
    from graphcraft.models import get_chat_model

    return get_chat_model(settings.model_copy(update={"chat_model": spec}))


def multimodal_options(settings: Settings, **overrides: object) -> MultimodalOptions:
    """Loader options from Settings (chunk size, OCR and vision fields when present) + overrides."""
    values: dict[str, object] = {
        "chunk_size": settings.chunk_size,
        "vision_model": vision_model_from_settings(settings),
    }
    for option, name in _SETTING_FOR_OPTION.items():
        if getattr(settings, name, None) is not None:
            values[option] = getattr(settings, name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return MultimodalOptions(**values)  # type: ignore[arg-type]


def load_any(
    path: Path,
    file_hash: str,
    settings: Settings,
    options: MultimodalOptions,
    load: MultimodalLoad,
    data: bytes | None = None,
    warnings: list[dict] | None = None,
) -> list[Document]:
    """Multimodal chunks of a PDF or image; other files through the ordinary loader (as text).

    `data` are the file's bytes when already read; the text loader's warnings go to `warnings`.
    """
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        docs = load_pdf_multimodal(path, options, load=load, data=data)
    elif suffix in IMAGE_SUFFIXES:
        docs = load_image_multimodal(path, options, data=data)
    else:
        _, docs = prepare_file(path, settings, data, warnings)
        for doc in docs:
            doc.metadata.setdefault("bbox", None)
    for doc in docs:
        doc.metadata["doc_hash"] = file_hash
        doc.metadata.setdefault("strips", [list(span) for span in split_strips(doc.page_content)])
        doc.id = doc.metadata["chunk_id"]
    if not docs:
        raise IngestError(f"{path}: nothing to index (no text, table or readable image)")
    if suffix in PDF_SUFFIXES or suffix in IMAGE_SUFFIXES:  # text files were classified by prepare_file
        classify_chunks(path, docs, rules_for(settings))  # text, tables and image descriptions in reading order
    return docs


def _is_current(stores: Iterable[ChunkStore], source: str, file_hash: str, digest: str) -> bool:
    """Every store holds the file at this content, classified under the current rules."""
    return all(
        store.file_hash(source) == file_hash and store.files[source].get("classified_by") == digest for store in stores
    )


def _commit(
    pending: list[tuple[str, str, list[Document]]],
    stores: dict[str, ChunkStore],
    main: ChunkStore | None,
    info: dict[str, str] | None = None,
) -> int:
    """Embed the pending files' chunks in one batch, write them per modality (and to the main store), commit.

    Returns the number of chunks written.
    """
    if not pending:
        return 0
    chunks = [c for _, _, docs in pending for c in docs]
    vectors, strip_vectors = embed_chunks(
        stores["text"].embeddings, [c.page_content for c in chunks], [c.metadata["strips"] for c in chunks]
    )
    offset = 0
    for source, file_hash, docs in pending:
        rows = range(offset, offset + len(docs))
        offset += len(docs)
        for modality in MODALITIES:
            picked = [i for i in rows if chunks[i].metadata["modality"] == modality]
            stores[modality].replace_file(
                source,
                file_hash,
                [chunks[i] for i in picked],
                vectors[picked],
                [strip_vectors[i] for i in picked],
                info=info,
            )
        if main is not None:
            main.replace_file(
                source,
                file_hash,
                docs,
                vectors[rows.start : rows.stop],
                strip_vectors[rows.start : rows.stop],
                info=info,
            )
    for target in [*stores.values(), *([main] if main is not None else [])]:
        target.commit()
    return len(chunks)


def ingest_multimodal(
    paths: Iterable[str | Path],
    store: str | Path | None = None,
    settings: Settings | None = None,
    options: MultimodalOptions | None = None,
    *,
    mirror: bool = True,
    on_progress: ProgressFn | None = None,
    commit_every: int = 256,
) -> MultimodalIngestReport:
    """Ingest files/folders into the modality stores under ``store`` (and the main store when
    ``mirror``). The report is ``ingest_paths``'s plus ``warnings``: embedded images OCR could
    not read, in files that were otherwise ingested."""
    settings = settings or get_settings()
    root = Path(store or settings.store)
    options = options or multimodal_options(settings)
    stores = open_modality_stores(root, settings, create=True)
    main = open_store(root, settings) if mirror else None
    targets = list(stores.values()) + ([main] if main is not None else [])
    listing = list_files(paths, exclude=root, follow_links=settings.follow_links)
    files = listing.files
    report = MultimodalIngestReport(files=len(files), failed=list(listing.missing))
    report.warnings.extend({"path": s["path"], "page": None, "warning": s["reason"]} for s in listing.skipped)
    pending: list[tuple[str, str, list[Document]]] = []
    digest = rules_digest(rules_for(settings))  # a bad rules file stops here, before any file is read
    info = {"classified_by": digest}
    for done, listed in enumerate(files):
        path, source = listed.path, str(listed.path)
        if on_progress:
            on_progress(done, len(files), path.name)
        try:
            data = read_listed(listed)
            file_hash = sha256(data)
            if _is_current(targets, source, file_hash, digest):
                report.skipped += 1
                continue
            load = MultimodalLoad()
            docs = load_any(path, file_hash, settings, options, load, data, report.warnings)
        except IngestError as exc:
            report.failed.append({"path": source, "error": str(exc)})
            continue
        report.warnings.extend({"path": source, "warning": w} for w in load.warnings)
        pending.append((source, file_hash, docs))
        if sum(len(d) for _, _, d in pending) >= commit_every:
            report.added += _commit(pending, stores, main, info)
            pending = []
    report.added += _commit(pending, stores, main, info)
    if on_progress:
        on_progress(len(files), len(files), "")
    return report
