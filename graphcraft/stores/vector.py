"""Persistent chunk store: FAISS vectors + chunk documents + manifest, crash-safe and verified.

Layout of a store directory::

    CURRENT            name of the live generation (replaced atomically)
    gen-000007-<pid>/  index.faiss, chunks.jsonl (one chunk per FAISS row), manifest.json,
                       strips.npy (float16 strip vectors, rows referenced from chunks.jsonl)
    LOCK               the writers' lock

Each commit writes a complete new generation and then swaps CURRENT with `os.replace`, so a
process killed mid-ingest leaves the last committed generation intact: re-running skips the
files already committed (by content hash) and adds the rest, with no duplicate and no gap.
Opening verifies the generation (checksums, chunk ids in index order, dimensions), a commit
deletes only generations proven superseded, and a store without CURRENT recovers its newest
complete generation: see stores/generations.py for why each rule exists. Chunks are stored as
JSON, not pickle, so opening a store never executes code. Every failure is a one-line
StoreError naming the fix.

Search goes through LangChain's FAISS VectorStore (inner product on L2-normalised vectors,
i.e. cosine similarity). With ``vector_backend="milvus"`` the chunk vectors live in a Milvus
collection instead (stores/milvus_store.py, the same metric); the backend is recorded in the
manifest when the store is created, and opening it with the other one is a one-line error.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from graphcraft.errors import StoreError
from graphcraft.stores.generations import (
    MANIFEST_VERSION,
    CorruptGeneration,
    Generation,
    MissingGeneration,
    StoreWriteError,
    ancestors,
    fsync_dir,
    generation_names,
    generation_number,
    newest_complete,
    next_name,
    read_current,
    read_generation,
    remove_stale_temporaries,
    vector_backend,
    write_error,
    write_file,
    write_generation,
    write_lock,
)

__all__ = ["MANIFEST_VERSION", "ChunkStore", "StoreWriteError", "open_store", "write_lock"]

_INSTANCES = itertools.count(1)  # a process-unique token per opened store, for in-memory index caches
PARTIAL = "partial:"  # prefix of the hash of a file whose chunks are only partly committed


class ChunkStore:
    """One store directory: add/replace/remove a file's chunks, search, commit atomically.

    This class keeps the vectors in FAISS; the `_..._vectors` methods are what another vector
    backend overrides (see stores/milvus_store.py)."""

    backend = "faiss"

    def __init__(self, path: Path, embeddings: Embeddings, model_name: str, dimension: int) -> None:
        self.path = Path(path)
        self.instance = next(_INSTANCES)  # unlike id(), never reused by a later store object
        self.embeddings = embeddings
        self.manifest: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "embedding_model": model_name,
            "dimension": dimension,
            "files": {},
            "generation": 0,
            "vector_backend": self.backend,
        }
        self._init_vectors(dimension)
        self.strip_vectors: dict[str, np.ndarray] = {}
        self._row_of: dict[str, int] | None = None
        self._strip_terms: dict[str, list[set[str]]] = {}
        self._dirty = False
        self._current_at_open: str | None = None  # what CURRENT said when this store was read
        self._loaded: str | None = None  # the generation read (the parent of the next one)
        self.recovered: str | None = None  # why the store opened without a valid CURRENT, if it did

    # ------------------------------------------------------------------ open / save
    def _init_vectors(self, dimension: int) -> None:
        self.vectorstore = self._empty_faiss(dimension)

    def _empty_faiss(self, dimension: int) -> FAISS:
        return FAISS(
            embedding_function=self.embeddings,
            index=faiss.IndexFlatIP(dimension),
            docstore=InMemoryDocstore(),
            index_to_docstore_id={},
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
            normalize_L2=False,
        )

    @classmethod
    def open(
        cls,
        path: str | Path,
        embeddings: Embeddings,
        model_name: str,
        dimension: int,
        create: bool = True,
        backend: str = "faiss",
        milvus_uri: str = "",
    ) -> ChunkStore:
        """Open (or create) the store at `path`; refuse one made with another embedding model or backend.

        `backend` is where a new store keeps its vectors ("faiss" or "milvus" at `milvus_uri`,
        default <store>/milvus.db); an existing store must have been created with the same one."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise StoreError(f"store {path} is a file, not a directory: choose another --store")
        store = _new_store(path, embeddings, model_name, dimension, backend, milvus_uri)
        pointer, gen = _read_live(path)
        if gen is None:
            gen = _recover(path, pointer)
            if gen is None:
                if not create:
                    raise StoreError(f"no store at {path}: run `graphcraft ingest PATH --store {path}` first")
                store._current_at_open = pointer
                return store
            store.recovered = (
                f"CURRENT named {pointer}, which is missing" if pointer else "CURRENT was missing"
            ) + f": opened {gen.name}, the newest complete generation"
        manifest = gen.manifest
        if manifest["embedding_model"] != model_name or manifest["dimension"] != dimension:
            raise StoreError(
                f"store {path} was built with {manifest.get('embedding_model')} "
                f"({manifest.get('dimension')} dims), not {model_name}: use another --store"
            )
        if vector_backend(manifest) != store.backend:
            raise StoreError(_backend_mismatch(path, vector_backend(manifest), store.backend))
        store._load(gen)
        store._current_at_open, store._loaded = pointer, gen.name
        return store

    def _load(self, gen: Generation) -> None:
        """Take a verified generation's chunks, index and strip vectors as this store's state."""
        rows = gen.rows
        docs = {r["id"]: Document(page_content=r["text"], metadata=r["metadata"], id=r["id"]) for r in rows}
        self.manifest = gen.manifest
        self._load_vectors(gen, docs)
        if gen.strips is not None:
            strips = gen.strips
            self.strip_vectors = {
                r["id"]: strips[r["strip_rows"][0] : r["strip_rows"][1]] for r in rows if "strip_rows" in r
            }

    def _load_vectors(self, gen: Generation, docs: dict[str, Document]) -> None:
        """Take the generation's chunks (in index order) and its vectors."""
        self.vectorstore = FAISS(
            embedding_function=self.embeddings,
            index=gen.index,
            docstore=InMemoryDocstore(docs),
            index_to_docstore_id=dict(enumerate(docs)),
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
            normalize_L2=False,
        )

    def commit(self) -> None:
        """Write a new generation and atomically make it current; delete the generations it supersedes.

        Takes the writer lock (re-entrant), refuses if another writer committed since this store
        was opened (its work would be silently dropped), and on any write failure removes the
        temporary folder and raises a one-line StoreError; the last committed generation stays."""
        if not self._dirty:
            return
        with write_lock(self.path):
            self._refuse_if_stale()
            grandparent = self.manifest.get("parent")
            name = self._write_and_swap()
            self._after_swap()
            for old in ancestors(self.path, grandparent):  # keep the one replaced: a reader may be loading it
                shutil.rmtree(self.path / old, ignore_errors=True)
            remove_stale_temporaries(self.path)
        self._current_at_open = self._loaded = name
        self.recovered = None
        self._dirty = False

    def _refuse_if_stale(self) -> None:
        """Another writer's commit since we read the store: committing would drop its work."""
        now = read_current(self.path)
        if now == self._current_at_open:
            return
        number = generation_number(self._loaded or "") or 0
        newer = [n for n in generation_names(self.path) if (generation_number(n) or 0) > number]
        if now is None and not newer:  # CURRENT was deleted meanwhile, nothing newer: ours is the newest
            return
        raise StoreError(
            f"store {self.path} was changed by another writer since it was opened (CURRENT is now {now}): "
            "re-run to apply these changes on top (files already committed are skipped)"
        )

    def _write_and_swap(self) -> str:
        """Write the generation into a temporary folder, rename it, point CURRENT at it; its name."""
        number, name = next_name(self.path, self.generation)
        manifest = {**self.manifest, "generation": number, "updated": time.time(), "parent": self._loaded}
        manifest.update(self._manifest_extras())
        records, strips = self._records()
        tmp, final = self.path / f".{name}.tmp", self.path / name
        pointer = self.path / f".CURRENT.tmp-{os.getpid()}"
        swapped = False
        try:
            tmp.mkdir()
            written = write_generation(tmp, manifest, self._index_to_write(), records, strips)
            tmp.rename(final)
            write_file(pointer, [name.encode()])
            os.replace(pointer, self.path / "CURRENT")
            swapped = True
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            pointer.unlink(missing_ok=True)
            if not swapped:  # never became current: a generation nobody can have read
                shutil.rmtree(final, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, StoreError):
                raise StoreWriteError(write_error(self.path, exc)) from exc
            raise
        fsync_dir(self.path)
        self.manifest.update({k: written[k] for k in ("generation", "updated", "parent", "version", "checksums")})
        self.manifest["ids_sha256"] = written["ids_sha256"]
        return name

    def _manifest_extras(self) -> dict[str, Any]:
        """Fields a vector backend adds to the manifest of the generation being written."""
        return {}

    def _index_to_write(self) -> Any:
        """The FAISS index saved in the generation (None for a backend that keeps vectors elsewhere)."""
        return self.vectorstore.index

    def _after_swap(self) -> None:
        """Called under the writer lock once the new generation is current."""

    def _records(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        """chunks.jsonl records in index row order, and the strip vectors they point into."""
        records: list[dict[str, Any]] = []
        blocks: list[np.ndarray] = []
        row = 0
        for doc_id in self._ordered_ids():
            doc = self._doc(doc_id)
            record: dict[str, Any] = {"id": doc_id, "text": doc.page_content, "metadata": doc.metadata}
            block = self.strip_vectors.get(doc_id)
            if block is not None:
                record["strip_rows"] = [row, row + len(block)]
                blocks.append(block.astype(np.float16))
                row += len(block)
            records.append(record)
        dim = int(self.manifest["dimension"])
        return records, np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float16)

    def mark_dirty(self) -> None:
        """Persist the manifest with the next commit even if no chunk changed (e.g. a tree kept in it)."""
        self._dirty = True

    # ------------------------------------------------------------------ files
    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    def file_hash(self, source: str) -> str | None:
        """The content hash `source` was ingested at ("partial:<hash>" while only part of it is committed)."""
        entry = self.files.get(source)
        return entry["hash"] if entry else None

    def remove_file(self, source: str) -> int:
        """Drop every chunk of `source`; returns how many were removed."""
        entry = self.files.pop(source, None)
        if not entry:
            return 0
        ids = [i for i in entry["chunk_ids"] if i in self._docstore_dict()]
        if ids:
            self._delete_vectors(ids)
        for chunk_id in ids:
            self.strip_vectors.pop(chunk_id, None)
        self._row_of = None
        self._dirty = True
        return len(ids)

    def replace_file(
        self,
        source: str,
        file_hash: str,
        chunks: list[Document],
        vectors: np.ndarray,
        strip_vectors: list[np.ndarray] | None = None,
        *,
        complete: bool = True,
        info: dict[str, Any] | None = None,
    ) -> int:
        """Replace `source`'s chunks with `chunks` (vectors row-aligned, optional strip vectors per chunk).

        `complete=False` records the file as partly committed (a big file committed in batches):
        its hash is then "partial:<hash>", so nothing takes it as ingested until `extend_file`
        adds its last chunks. `info` is kept in the file's entry (how it was chunked, bounds)."""
        self.remove_file(source)
        self.files[source] = {"hash": "", "chunk_ids": [], **(info or {})}
        return self.extend_file(source, file_hash, chunks, vectors, strip_vectors, complete=complete)

    def extend_file(
        self,
        source: str,
        file_hash: str,
        chunks: list[Document],
        vectors: np.ndarray,
        strip_vectors: list[np.ndarray] | None = None,
        *,
        complete: bool = True,
    ) -> int:
        """Append chunks to a partly committed file (see `replace_file`); `complete` marks its last batch."""
        entry = self.files.get(source)
        if entry is None:
            raise ValueError(f"{source} has no entry to extend: call replace_file first")
        ids = [c.metadata["chunk_id"] for c in chunks]
        if chunks:
            self._add_vectors(chunks, vectors, ids)
        for chunk_id, block in zip(ids, strip_vectors or [], strict=False):
            self.strip_vectors[chunk_id] = np.asarray(block, dtype=np.float16)
        self._row_of = None
        entry.update(
            hash=file_hash if complete else PARTIAL + file_hash,
            chunk_ids=[*entry["chunk_ids"], *ids],
            ingested=time.time(),
        )
        self._dirty = True
        return len(chunks)

    def _add_vectors(self, chunks: list[Document], vectors: np.ndarray, ids: list[str]) -> None:
        self.vectorstore.add_embeddings(
            list(zip([c.page_content for c in chunks], vectors.tolist(), strict=False)),
            metadatas=[c.metadata for c in chunks],
            ids=ids,
        )

    def _delete_vectors(self, ids: list[str]) -> None:
        self.vectorstore.delete(ids)

    # ------------------------------------------------------------------ reading
    def _ordered_ids(self) -> list[str]:
        """Chunk ids in index row order."""
        vs = self.vectorstore
        return [vs.index_to_docstore_id[i] for i in range(vs.index.ntotal)]

    def _docstore_dict(self) -> dict[str, Document]:
        """The chunks by id (the docstore is always an InMemoryDocstore, see `_empty_faiss` and `open`)."""
        return cast(InMemoryDocstore, self.vectorstore.docstore)._dict  # noqa: SLF001

    def _doc(self, doc_id: str) -> Document:
        """The chunk stored under `doc_id`, an id taken from the FAISS index, so always present."""
        doc = self.vectorstore.docstore.search(doc_id)
        assert isinstance(doc, Document), doc  # search returns a message string only for an unknown id
        return doc

    def __len__(self) -> int:
        return int(self.vectorstore.index.ntotal)

    def documents(self) -> list[Document]:
        """All chunks in index row order (used to build keyword indexes)."""
        return [self._doc(doc_id) for doc_id in self._ordered_ids()]

    def get(self, chunk_ids: Iterable[str]) -> list[Document]:
        """The chunks with these ids, as the run's guards let them through (graphcraft/guards/nodes.py)."""
        from graphcraft.guards.nodes import screen_retrieved

        found = self._docstore_dict()
        return screen_retrieved([found[i] for i in chunk_ids if i in found])

    def strips(self, doc: Document) -> tuple[list[str], np.ndarray | None]:
        """The knowledge strips of a chunk and their stored vectors (None if not stored)."""
        from graphcraft.ingestion.strips import strip_spans

        texts = [doc.page_content[s:e] for s, e in strip_spans(doc)]
        block = self.strip_vectors.get(str(doc.metadata.get("chunk_id")))
        if block is None or len(block) != len(texts):
            return texts, None
        return texts, block.astype(np.float32)

    def chunk_vector(self, chunk_id: str) -> np.ndarray | None:
        """The stored (normalised) vector of a chunk, or None if the chunk is not in this store."""
        rows = self._rows()
        row = rows.get(chunk_id)
        return None if row is None else self.vectorstore.index.reconstruct(row)

    def _rows(self) -> dict[str, int]:
        if self._row_of is None:  # reset by every mutation
            self._row_of = {doc_id: row for row, doc_id in self.vectorstore.index_to_docstore_id.items()}
        return self._row_of

    def strip_terms(self, doc: Document) -> list[set[str]]:
        """Content terms of each strip of a stored chunk (memoised: a stored chunk never changes)."""
        from graphcraft.chains.terms import content_terms

        key = str(doc.metadata.get("chunk_id"))
        cached = self._strip_terms.get(key)
        if cached is None:
            cached = [set(content_terms(t)) for t in self.strips(doc)[0]]
            self._strip_terms[key] = cached
        return cached

    @property
    def generation(self) -> int:
        return int(self.manifest.get("generation", 0))

    def search_by_vector(self, vector: list[float] | np.ndarray, k: int) -> list[tuple[Document, float]]:
        """The k nearest chunks, as the run's guards let them through: every retriever, chain and graph
        reads chunks through here or `get`, so a quarantined chunk reaches none of them. When the guards
        hold some back, the search looks twice as far once, so k chunks still come back when there are."""
        from graphcraft.guards.nodes import screen_scored

        if len(self) == 0:
            return []
        hits = self._nearest(vector, min(k, len(self)))
        kept = screen_scored(hits)
        if len(kept) < len(hits) and len(hits) < len(self):
            kept = screen_scored(self._nearest(vector, min(2 * k, len(self))))[:k]
        return kept

    def _nearest(self, vector: list[float] | np.ndarray, k: int) -> list[tuple[Document, float]]:
        """The k nearest chunks by inner product (a backend's own search; `search_by_vector` screens them)."""
        vec = np.asarray(vector, dtype=np.float32).tolist()
        return self.vectorstore.similarity_search_with_score_by_vector(vec, k=k)


def _new_store(
    path: Path, embeddings: Embeddings, model_name: str, dimension: int, backend: str, milvus_uri: str
) -> ChunkStore:
    """An empty store object keeping its vectors in `backend`."""
    if backend == "faiss":
        return ChunkStore(path, embeddings, model_name, dimension)
    if backend == "milvus":
        from graphcraft.stores.milvus_store import MilvusChunkStore

        return MilvusChunkStore(path, embeddings, model_name, dimension, milvus_uri=milvus_uri)
    raise StoreError(f"unknown vector backend {backend!r}: set GRAPHCRAFT_VECTOR_BACKEND to faiss or milvus")


def _backend_mismatch(path: Path, recorded: str, requested: str) -> str:
    """One line: the store keeps its vectors elsewhere, and how to open it (or move it)."""
    return (
        f"store {path} keeps its vectors in {recorded}, not {requested}: set GRAPHCRAFT_VECTOR_BACKEND={recorded} "
        f"to open it, or re-ingest its files into a new --store with GRAPHCRAFT_VECTOR_BACKEND={requested}"
    )


def _read_live(path: Path) -> tuple[str | None, Generation | None]:
    """(what CURRENT names, that generation verified), None for a generation that is missing.

    A generation deleted while we read it means a writer moved CURRENT on: read again."""
    for _ in range(5):
        pointer = read_current(path)
        if pointer is None:
            return None, None
        try:
            return pointer, read_generation(path / pointer)
        except MissingGeneration:
            if read_current(path) == pointer:
                return pointer, None
        except CorruptGeneration as exc:
            if read_current(path) == pointer:
                raise StoreError(_corrupt_message(path, pointer, str(exc))) from None
    raise StoreError(f"store {path} keeps changing under this reader: retry when its writers are done")


def _corrupt_message(path: Path, live: str, problem: str) -> str:
    """One line: what is wrong, and the way back (the previous complete generation, if there is one)."""
    fallback, _ = newest_complete(path)
    if fallback is not None and fallback.name != live:
        fix = f"write {fallback.name} into {path / 'CURRENT'} to go back to the previous complete generation"
    else:
        fix = "restore it from a backup or re-ingest into a new --store"
    return f"store {path} is corrupt: {problem}: {fix}"


def _recover(path: Path, pointer: str | None) -> Generation | None:
    """The newest complete generation of a store without a valid CURRENT; None for a new store.

    Generations that exist but none verifies: stop, and delete nothing."""
    if not path.is_dir() or not generation_names(path):
        return None
    gen, problems = newest_complete(path)
    if gen is None:
        why = f"CURRENT names {pointer}, which is missing" if pointer else "it has no CURRENT"
        raise StoreError(
            f"store {path} cannot be opened: {why} and no generation is complete ({'; '.join(problems)[:300]}): "
            "restore CURRENT or the store from a backup, or re-ingest into a new --store (nothing was deleted)"
        )
    return gen


def open_store(path: str | Path, settings: Any = None, create: bool = True) -> ChunkStore:
    """Open the store at `path` with the configured embeddings (see graphcraft.models)."""
    from graphcraft.config import get_settings
    from graphcraft.models import get_embeddings

    settings = settings or get_settings()
    emb = get_embeddings(settings)
    return ChunkStore.open(
        path,
        emb,
        emb.name,
        emb.dimension,
        create=create,
        backend=settings.vector_backend,
        milvus_uri=settings.milvus_uri,
    )
