"""Incremental ingestion: files and folders -> chunks -> embeddings -> ChunkStore.

A file is identified by its absolute path and its content hash. Unchanged files are skipped,
changed files replace their old chunks, and files that fail are reported with the reason while
the rest of the batch goes on. Inside a file that did ingest, content that was skipped or read
with a guess (a scanned page that could not be OCRed, invalid UTF-8 bytes) is reported as a
warning with its file and page, so nothing is lost without a word. Work is committed in
batches, each commit atomic (see stores.vector), so an interrupted ingest resumes where it
stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.documents import Document

from graphcraft.config import Settings, get_settings
from graphcraft.errors import IngestError
from graphcraft.ingestion.loaders import LoadWarning, OcrOptions, load_file, read_bytes
from graphcraft.ingestion.splitting import sha256, split_documents
from graphcraft.ingestion.strips import embed_chunks
from graphcraft.stores.vector import ChunkStore, open_store

ProgressFn = Callable[[int, int, str], None]


@dataclass
class IngestReport:
    files: int = 0
    added: int = 0
    skipped: int = 0
    removed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)  # {"path", "page" (None: whole file), "warning"}

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "added": self.added,
            "skipped": self.skipped,
            "removed": self.removed,
            "failed": self.failed,
            "warnings": self.warnings,
        }


def expand_paths(paths: Iterable[str | Path], exclude: Path | None = None) -> tuple[list[Path], list[dict[str, str]]]:
    """Files under the given paths (folders recursively, hidden entries skipped) + missing paths."""
    files: list[Path] = []
    missing: list[dict[str, str]] = []
    excluded = exclude.resolve() if exclude else None
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                rel = f.relative_to(path).parts
                if any(part.startswith(".") for part in rel) or not f.is_file():
                    continue
                if excluded and (excluded == f.resolve() or excluded in f.resolve().parents):
                    continue
                files.append(f.resolve())
        elif path.is_file():
            files.append(path.resolve())
        else:
            missing.append({"path": str(raw), "error": "no such file or directory"})
    seen: set[Path] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]
    return unique, missing


def ocr_options(settings: Settings) -> OcrOptions:
    """How scanned PDF pages are read, from the `ocr*` settings."""
    return OcrOptions(
        enabled=settings.ocr, dpi=settings.ocr_dpi, lang=settings.ocr_lang, min_confidence=settings.ocr_min_confidence
    )


def warning_record(path: Path, warning: LoadWarning) -> dict:
    """A loader warning as the ingest report lists it."""
    return {"path": str(path), "page": warning.page, "warning": warning.warning}


def prepare_file(
    path: Path, settings: Settings, data: bytes | None = None, warnings: list[dict] | None = None
) -> tuple[str, list[Document]]:
    """(content hash, chunks) for one file (its bytes, if already read); IngestError on bad input.

    Warnings about content skipped or guessed at are appended to `warnings` (report records)
    only when the file ingests: a failed file is reported by its error alone.
    """
    data = read_bytes(path) if data is None else data
    file_hash = sha256(data)
    load_warnings: list[LoadWarning] = []
    pages = load_file(path, data, ocr_options(settings), load_warnings)
    chunks = split_documents(pages, file_hash, settings.chunk_size, settings.chunk_overlap)
    if not chunks:
        raise IngestError("no text to index")
    if warnings is not None:
        warnings.extend(warning_record(path, w) for w in load_warnings)
    return file_hash, chunks


def ingest_paths(
    paths: Iterable[str | Path],
    store: ChunkStore | str | Path | None = None,
    settings: Settings | None = None,
    on_progress: ProgressFn | None = None,
    commit_every: int = 512,
) -> IngestReport:
    """Ingest files/folders into a store; see the module docstring for the guarantees."""
    settings = settings or get_settings()
    if not isinstance(store, ChunkStore):
        store = open_store(store or settings.store, settings)
    files, failed = expand_paths(paths, exclude=store.path)
    report = IngestReport(files=len(files), failed=list(failed))
    emb = store.embeddings
    pending: list[tuple[str, str, list[Document]]] = []
    pending_chunks = 0

    def flush() -> None:
        nonlocal pending, pending_chunks
        if not pending:
            return
        all_chunks = [c for _, _, chunks in pending for c in chunks]
        vectors, strip_vectors = embed_chunks(
            emb, [c.page_content for c in all_chunks], [c.metadata["strips"] for c in all_chunks]
        )
        offset = 0
        for source, file_hash, chunks in pending:
            end = offset + len(chunks)
            report.added += store.replace_file(
                source, file_hash, chunks, vectors[offset:end], strip_vectors[offset:end]
            )
            offset = end
        store.commit()
        pending, pending_chunks = [], 0

    for done, path in enumerate(files, start=1):
        source = str(path)
        if on_progress:
            on_progress(done - 1, len(files), path.name)
        try:
            data = read_bytes(path)
            if store.file_hash(source) == sha256(data):
                report.skipped += 1
                continue
            file_hash, chunks = prepare_file(path, settings, data, report.warnings)
        except IngestError as exc:
            report.failed.append({"path": source, "error": str(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must never stop the batch
            report.failed.append(
                {"path": source, "error": f"unexpected {type(exc).__name__}: {exc}".splitlines()[0][:300]}
            )
            continue
        pending.append((source, file_hash, chunks))
        pending_chunks += len(chunks)
        if pending_chunks >= commit_every:
            flush()
    flush()
    if on_progress:
        on_progress(len(files), len(files), "")
    return report


def remove_paths(
    paths: Iterable[str | Path],
    store: ChunkStore | str | Path | None = None,
    settings: Settings | None = None,
    missing_only: bool = False,
) -> IngestReport:
    """Remove the chunks of the given files (or of every stored file under given folders).

    With `missing_only`, only files that no longer exist on disk are removed (prune).
    """
    settings = settings or get_settings()
    if not isinstance(store, ChunkStore):
        store = open_store(store or settings.store, settings, create=False)
    report = IngestReport()
    targets = [Path(p).expanduser().resolve() for p in paths]
    for source in list(store.files):
        src = Path(source)
        if not any(src == t or t in src.parents for t in targets):
            continue
        if missing_only and src.exists():
            continue
        report.files += 1
        report.removed += store.remove_file(source)
    store.commit()
    return report
