"""Incremental ingestion: files and folders -> chunks -> embeddings -> ChunkStore.

A file is identified by its absolute path and its content hash. Unchanged files are skipped,
changed files replace their old chunks, and files that fail are reported with the reason while
the rest of the batch goes on. Inside a file that did ingest, content that was skipped or read
with a guess (a scanned page that could not be OCRed, invalid UTF-8 bytes, the chunks past
`max_chunks_per_file`) is reported as a warning with its file and page, so nothing is lost
without a word.

Work is committed in batches, each commit atomic (see stores.vector), so an interrupted ingest
resumes where it stopped. A file bigger than a batch is committed in several, marked partial
until its last one: a re-run continues it from its first uncommitted chunk. Batches grow with
the store (a commit rewrites the whole generation, so fixed batches would make a big ingest
quadratic).

Symbolic links that lead out of the given folders are not followed (they are reported as
skipped): a link to /etc/passwd in a shared folder must not put the password file into the
store. The `follow_links` setting allows them. Each file is opened without following a link
and must still be the file that was listed, so swapping a file or a folder above it for a link
while the ingest runs does not help either.

Every document is classified (public / internal / confidential / restricted) from its path and
markings by guards.access and every chunk carries the level in ``classification``. A file is
ingested again when the classification rules changed since it was (its entry records a digest of
the rules), so a changed rule never leaves old labels behind.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from graphcraft.config import Settings, get_settings
from graphcraft.errors import IngestError
from graphcraft.guards.access import classify_document, rules_digest, rules_for, stamp
from graphcraft.ingestion.loaders import LoadWarning, OcrOptions, load_file, read_bytes
from graphcraft.ingestion.splitting import sha256, split_documents_bounded
from graphcraft.ingestion.strips import embed_chunks
from graphcraft.stores.vector import PARTIAL, ChunkStore, open_store

ProgressFn = Callable[[int, int, str], None]
FOLLOW_HINT = "set GRAPHCRAFT_FOLLOW_LINKS=true to follow links"


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


# ------------------------------------------------------------------------------ listing


@dataclass(frozen=True)
class Listed:
    """A file to ingest: its real path, and its identity when listed (checked again when read)."""

    path: Path
    device: int
    inode: int


@dataclass
class Listing:
    files: list[Listed] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"}: given paths not found
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}: links not followed


class _Walker:
    """Walks folders without following links out of the roots (unless asked), once per real folder."""

    def __init__(self, roots: list[Path], exclude: Path | None, follow: bool, listing: Listing) -> None:
        self.roots, self.exclude, self.follow, self.listing = roots, exclude, follow, listing
        self.visited: set[Path] = set()

    def inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.roots)

    def hidden(self, real: Path) -> bool:
        """Inside a root, under a name starting with a dot."""
        for root in self.roots:
            if root in real.parents and any(part.startswith(".") for part in real.relative_to(root).parts):
                return True
        return False

    def excluded(self, real: Path) -> bool:
        return self.exclude is not None and (real == self.exclude or self.exclude in real.parents)

    def walk(self, root: Path) -> list[tuple[Path, Path]]:
        """(path as found, real path) of the regular files under `root`, hidden entries skipped."""
        found: list[tuple[Path, Path]] = []
        stack, self.visited = [root], self.visited | {root}
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                self.listing.missing.append({"path": str(folder), "error": f"cannot list: {exc.strerror or exc}"})
                continue
            for entry in entries:
                path = Path(entry.path)
                if entry.name.startswith(".") or self.excluded(path):
                    continue
                if entry.is_symlink():
                    self.link(path, stack, found)
                elif entry.is_dir(follow_symlinks=False) and path not in self.visited:
                    self.visited.add(path)
                    stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found.append((path, path))
        return found

    def link(self, path: Path, stack: list[Path], found: list[tuple[Path, Path]]) -> None:
        """Follow a link found in a folder only to where the policy allows; report it otherwise."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):  # dangling, or a loop of links
            self.listing.skipped.append({"path": str(path), "reason": "skipped: broken symbolic link"})
            return
        if not self.inside(real) and not self.follow:
            reason = f"skipped: symbolic link to {real} leads out of the ingested folders ({FOLLOW_HINT})"
            self.listing.skipped.append({"path": str(path), "reason": reason})
            return
        if self.hidden(real) and not self.follow:  # hidden entries (.env, .git) are not ingested, linked or not
            self.listing.skipped.append({"path": str(path), "reason": f"skipped: symbolic link to hidden {real}"})
            return
        if self.excluded(real):
            return
        if real.is_dir():
            if real not in self.visited and (self.follow or not self.inside(real)):
                self.visited.add(real)  # a folder inside the roots is walked where it really is
                stack.append(real)
        elif real.is_file():
            found.append((path, real))


def list_files(paths: Iterable[str | Path], exclude: Path | None = None, follow_links: bool = False) -> Listing:
    """The files under the given paths (folders recursively, hidden entries skipped), in path order
    per given path, each once; given paths that do not exist; links that were not followed."""
    listing = Listing()
    given = [(raw, Path(raw).expanduser()) for raw in paths]
    roots = [path.resolve() for _, path in given if path.exists()]
    walker = _Walker(roots, exclude.resolve() if exclude else None, follow_links, listing)
    candidates: list[Path] = []
    for raw, path in given:
        if path.is_dir():
            candidates.extend(real for _, real in sorted(walker.walk(path.resolve())))
        elif path.is_file():  # named explicitly: read even through a link
            candidates.append(path.resolve())
        else:
            listing.missing.append({"path": str(raw), "error": "no such file or directory"})
    seen: set[Path] = set()
    for real in candidates:
        if real in seen:
            continue
        seen.add(real)
        try:
            info = os.stat(real)
        except OSError as exc:
            listing.missing.append({"path": str(real), "error": f"cannot read: {exc.strerror or exc}"})
            continue
        listing.files.append(Listed(real, info.st_dev, info.st_ino))
    return listing


def expand_paths(
    paths: Iterable[str | Path], exclude: Path | None = None, follow_links: bool = False
) -> tuple[list[Path], list[dict[str, str]]]:
    """Files under the given paths + problems to report: missing paths, and links not followed
    (as {"path", "error"}, so a caller that only reports failures still reports them)."""
    listing = list_files(paths, exclude, follow_links)
    skipped = [{"path": s["path"], "error": s["reason"]} for s in listing.skipped]
    return [f.path for f in listing.files], listing.missing + skipped


def read_listed(listed: Listed) -> bytes:
    """The bytes of a listed file, if it is still that file: opened without following a link,
    and the same inode as when listed (a folder above it swapped for a link changes that)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(listed.path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IngestError("changed into a symbolic link since it was listed: not read (re-run the ingest)") from exc
        raise IngestError(_read_error(exc)) from exc
    with open(fd, "rb") as fh:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (listed.device, listed.inode) or not stat.S_ISREG(info.st_mode):
            raise IngestError("changed since it was listed (replaced, or moved behind a link): not read (re-run)")
        try:
            data = fh.read()
        except OSError as exc:
            raise IngestError(_read_error(exc)) from exc
    if not data.strip():
        raise IngestError("empty file")
    return data


def _read_error(exc: OSError) -> str:
    """The same short reasons `loaders.read_bytes` gives, so reports read alike."""
    reasons = {errno.ENOENT: "file not found", errno.EACCES: "permission denied", errno.EISDIR: "is a directory"}
    return reasons.get(exc.errno or 0, f"cannot read: {exc.strerror or exc}")


# ------------------------------------------------------------------------------ one file


def ocr_options(settings: Settings) -> OcrOptions:
    """How scanned PDF pages are read, from the `ocr*` settings."""
    return OcrOptions(
        enabled=settings.ocr, dpi=settings.ocr_dpi, lang=settings.ocr_lang, min_confidence=settings.ocr_min_confidence
    )


def warning_record(path: Path, warning: LoadWarning) -> dict:
    """A loader warning as the ingest report lists it."""
    return {"path": str(path), "page": warning.page, "warning": warning.warning}


def _prepare(
    path: Path, settings: Settings, data: bytes | None, warnings: list[dict] | None
) -> tuple[str, list[Document], bool]:
    """(content hash, chunks, whether max_chunks_per_file cut the file short); IngestError on bad input."""
    data = read_bytes(path) if data is None else data
    file_hash = sha256(data)
    load_warnings: list[LoadWarning] = []
    pages = load_file(path, data, ocr_options(settings), load_warnings)
    bound = settings.max_chunks_per_file
    chunks, cut = split_documents_bounded(pages, file_hash, settings.chunk_size, settings.chunk_overlap, bound)
    if not chunks:
        raise IngestError("no text to index")
    level = classify_document(path, "\n".join(p.page_content for p in pages), rules_for(settings))
    stamp(chunks, level)  # decided on the whole document, so a file cut short keeps its footer's marking
    if cut:
        load_warnings.append(
            LoadWarning(
                None,
                f"the file has more than {bound} chunks: only the first {bound} chunks were indexed; "
                "raise GRAPHCRAFT_MAX_CHUNKS_PER_FILE to index the rest",
            )
        )
    if warnings is not None:
        warnings.extend(warning_record(path, w) for w in load_warnings)
    return file_hash, chunks, cut


def prepare_file(
    path: Path, settings: Settings, data: bytes | None = None, warnings: list[dict] | None = None
) -> tuple[str, list[Document]]:
    """(content hash, chunks) for one file (its bytes, if already read); IngestError on bad input.

    Warnings about content skipped or guessed at are appended to `warnings` (report records)
    only when the file ingests: a failed file is reported by its error alone.
    """
    file_hash, chunks, _ = _prepare(path, settings, data, warnings)
    return file_hash, chunks


def _chunking(settings: Settings, cut: bool) -> list[Any]:
    """What decides a file's chunks: a partial file resumes only if it is cut the same way."""
    return [settings.chunk_size, settings.chunk_overlap, settings.max_chunks_per_file if cut else None]


def _unchanged(entry: dict[str, Any] | None, file_hash: str, settings: Settings) -> bool:
    """Ingested at this content and under these classification rules, and not cut short by a bound that
    has since been raised (a file ingested before classification existed is classified on its next ingest)."""
    if not entry or entry.get("hash") != file_hash:
        return False
    if entry.get("classified_by") != rules_digest(rules_for(settings)):
        return False
    cut_at = entry.get("truncated_at")
    return not (cut_at and settings.max_chunks_per_file > cut_at)


def _resume_point(entry: dict[str, Any] | None, file_hash: str, chunks: list[Document], chunking: list[Any]) -> int:
    """How many of `chunks` a partly committed entry already holds (0: start the file over)."""
    if not entry or entry.get("hash") != PARTIAL + file_hash or entry.get("chunking") != chunking:
        return 0
    done = list(entry.get("chunk_ids", []))
    if len(done) >= len(chunks) or done != [c.metadata["chunk_id"] for c in chunks[: len(done)]]:
        return 0
    return len(done)


# ------------------------------------------------------------------------------ batches


@dataclass
class _Piece:
    source: str
    file_hash: str
    chunks: list[Document]
    first: bool  # the file's first chunks: replace whatever the store holds for it
    complete: bool  # the file's last chunks
    info: dict[str, Any]


class _Batcher:
    """Embeds and commits pending chunks; a file larger than a batch is cut into several."""

    def __init__(self, store: ChunkStore, report: IngestReport, commit_every: int) -> None:
        self.store, self.report, self.commit_every = store, report, commit_every
        self.pending: list[_Piece] = []
        self.size = 0

    def limit(self) -> int:
        """Chunks per commit: at least commit_every, and a quarter of the store, since every
        commit rewrites the whole store (fixed batches would make a big ingest quadratic)."""
        return max(self.commit_every, len(self.store) // 4)

    def add(self, source: str, file_hash: str, chunks: list[Document], start: int, info: dict[str, Any]) -> None:
        """Queue a file's chunks from `start` (past those a partial entry holds), committing full batches."""
        if start == 0 and len(chunks) <= self.limit():  # a file that fits goes in one batch, as a whole
            self._append(_Piece(source, file_hash, chunks, True, True, info))
            return
        pos = start
        while pos < len(chunks):
            piece = chunks[pos : pos + max(1, self.limit() - self.size)]
            self._append(_Piece(source, file_hash, piece, pos == 0, pos + len(piece) == len(chunks), info))
            pos += len(piece)
        self.flush()  # commit the file's tail too: a partial entry only exists while we are inside the file

    def _append(self, piece: _Piece) -> None:
        self.pending.append(piece)
        self.size += len(piece.chunks)
        if self.size >= self.limit():
            self.flush()

    def flush(self) -> None:
        """Embed the pending chunks in one pass and commit them as one generation."""
        if not self.pending:
            return
        chunks = [c for piece in self.pending for c in piece.chunks]
        vectors, strip_vectors = embed_chunks(
            self.store.embeddings, [c.page_content for c in chunks], [c.metadata["strips"] for c in chunks]
        )
        offset = 0
        for p in self.pending:
            end = offset + len(p.chunks)
            args = (p.source, p.file_hash, p.chunks, vectors[offset:end], strip_vectors[offset:end])
            if p.first:
                self.report.added += self.store.replace_file(*args, complete=p.complete, info=p.info)
            else:
                self.report.added += self.store.extend_file(*args, complete=p.complete)
            offset = end
        self.store.commit()
        self.pending, self.size = [], 0


# ------------------------------------------------------------------------------ ingest / remove


def _recovery_warning(store: ChunkStore) -> list[dict]:
    """A store opened without a valid CURRENT says which generation it recovered."""
    return [{"path": str(store.path), "page": None, "warning": store.recovered}] if store.recovered else []


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
    listing = list_files(paths, exclude=store.path, follow_links=settings.follow_links)
    report = IngestReport(files=len(listing.files), failed=list(listing.missing), warnings=_recovery_warning(store))
    report.warnings.extend({"path": s["path"], "page": None, "warning": s["reason"]} for s in listing.skipped)
    batcher = _Batcher(store, report, commit_every)
    digest = rules_digest(rules_for(settings))  # a bad rules file stops here, before any file is read
    for done, listed in enumerate(listing.files, start=1):
        source = str(listed.path)
        if on_progress:
            on_progress(done - 1, len(listing.files), listed.path.name)
        entry = store.files.get(source)
        try:
            data = read_listed(listed)
            if _unchanged(entry, sha256(data), settings):
                report.skipped += 1
                continue
            file_hash, chunks, cut = _prepare(listed.path, settings, data, report.warnings)
        except IngestError as exc:
            report.failed.append({"path": source, "error": str(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must never stop the batch
            report.failed.append(
                {"path": source, "error": f"unexpected {type(exc).__name__}: {exc}".splitlines()[0][:300]}
            )
            continue
        info: dict[str, Any] = {"chunking": _chunking(settings, cut), "classified_by": digest}
        if cut:
            info["truncated_at"] = settings.max_chunks_per_file
        batcher.add(source, file_hash, chunks, _resume_point(entry, file_hash, chunks, info["chunking"]), info)
    batcher.flush()
    if on_progress:
        on_progress(len(listing.files), len(listing.files), "")
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
    report = IngestReport(warnings=_recovery_warning(store))
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
