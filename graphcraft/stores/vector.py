"""Persistent chunk store: FAISS vectors + chunk documents + manifest, crash-safe.

Layout of a store directory::

    CURRENT            name of the live generation (replaced atomically)
    gen-000007/        index.faiss, chunks.jsonl (one chunk per FAISS row), manifest.json,
                       strips.npy (float16 strip vectors, rows referenced from chunks.jsonl)

Each commit writes a complete new generation and then swaps CURRENT with `os.replace`, so a
process killed mid-ingest leaves the last committed generation intact: re-running skips the
files already committed (by content hash) and adds the rest, with no duplicate and no gap.
Chunks are stored as JSON, not pickle, so opening a store never executes code.

Search goes through LangChain's FAISS VectorStore (inner product on L2-normalised vectors,
i.e. cosine similarity).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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

MANIFEST_VERSION = 1
_INSTANCES = itertools.count(1)  # a process-unique token per opened store, for in-memory index caches


class ChunkStore:
    """One store directory: add/replace/remove a file's chunks, search, commit atomically."""

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
        }
        self.vectorstore = self._empty_faiss(dimension)
        self.strip_vectors: dict[str, np.ndarray] = {}
        self._row_of: dict[str, int] | None = None
        self._strip_terms: dict[str, list[set[str]]] = {}
        self._dirty = False

    # ------------------------------------------------------------------ open / save
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
        cls, path: str | Path, embeddings: Embeddings, model_name: str, dimension: int, create: bool = True
    ) -> ChunkStore:
        """Open (or create) the store at `path`; refuse one made with another embedding model."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise StoreError(f"store {path} is a file, not a directory: choose another --store")
        store = cls(path, embeddings, model_name, dimension)
        current = path / "CURRENT"
        if not current.exists():
            if not create:
                raise StoreError(f"no store at {path}: run `graphcraft ingest PATH --store {path}` first")
            return store
        try:
            gen_dir = path / current.read_text().strip()
            manifest = json.loads((gen_dir / "manifest.json").read_text())
            index = faiss.read_index(str(gen_dir / "index.faiss"))
            rows = [json.loads(line) for line in (gen_dir / "chunks.jsonl").read_text().splitlines() if line]
            strips = np.load(gen_dir / "strips.npy") if (gen_dir / "strips.npy").exists() else None
        except (OSError, ValueError, RuntimeError) as exc:
            raise StoreError(f"store {path} is unreadable or corrupt: {exc}".splitlines()[0]) from exc
        if manifest.get("embedding_model") != model_name or manifest.get("dimension") != dimension:
            raise StoreError(
                f"store {path} was built with {manifest.get('embedding_model')} "
                f"({manifest.get('dimension')} dims), not {model_name}: use another --store"
            )
        if index.ntotal != len(rows):
            raise StoreError(f"store {path} is inconsistent ({index.ntotal} vectors, {len(rows)} chunks)")
        docs = {r["id"]: Document(page_content=r["text"], metadata=r["metadata"], id=r["id"]) for r in rows}
        store.vectorstore = FAISS(
            embedding_function=embeddings,
            index=index,
            docstore=InMemoryDocstore(docs),
            index_to_docstore_id={i: r["id"] for i, r in enumerate(rows)},
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
            normalize_L2=False,
        )
        store.manifest = manifest
        if strips is not None:
            store.strip_vectors = {
                r["id"]: strips[r["strip_rows"][0] : r["strip_rows"][1]] for r in rows if "strip_rows" in r
            }
        return store

    def commit(self) -> None:
        """Write a new generation and atomically make it current; drop older generations."""
        if not self._dirty:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        generation = int(self.manifest.get("generation", 0)) + 1
        self.manifest["generation"] = generation
        self.manifest["updated"] = time.time()
        name = f"gen-{generation:06d}-{os.getpid()}"
        tmp = self.path / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        vs = self.vectorstore
        faiss.write_index(vs.index, str(tmp / "index.faiss"))
        strip_blocks: list[np.ndarray] = []
        row = 0
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for i in range(vs.index.ntotal):
                doc_id = vs.index_to_docstore_id[i]
                doc = self._doc(doc_id)
                record: dict[str, Any] = {"id": doc_id, "text": doc.page_content, "metadata": doc.metadata}
                block = self.strip_vectors.get(doc_id)
                if block is not None:
                    record["strip_rows"] = [row, row + len(block)]
                    strip_blocks.append(block.astype(np.float16))
                    row += len(block)
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        dim = int(self.manifest["dimension"])
        np.save(tmp / "strips.npy", np.concatenate(strip_blocks) if strip_blocks else np.zeros((0, dim), np.float16))
        (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        current = self.path / "CURRENT"
        previous = current.read_text().strip() if current.exists() else ""
        final = self.path / name
        if final.exists() and name != previous:  # our own leftover from a commit that crashed before the swap
            shutil.rmtree(final)
        tmp.rename(final)
        pointer = self.path / f".CURRENT.tmp-{os.getpid()}"
        pointer.write_text(name)
        os.replace(pointer, current)
        # Keep the previous generation one commit longer: a reader that read CURRENT just before
        # the swap can still load it. Older ones, and temp dirs of dead writers, go.
        for old in self.path.glob("gen-*"):
            if old.name not in (name, previous):
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.path.glob(".gen-*.tmp"):
            if not _pid_alive(stale.name.removesuffix(".tmp").rsplit("-", 1)[-1]):
                shutil.rmtree(stale, ignore_errors=True)
        self._dirty = False

    def mark_dirty(self) -> None:
        """Persist the manifest with the next commit even if no chunk changed (e.g. a tree kept in it)."""
        self._dirty = True

    # ------------------------------------------------------------------ files
    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    def file_hash(self, source: str) -> str | None:
        entry = self.files.get(source)
        return entry["hash"] if entry else None

    def remove_file(self, source: str) -> int:
        """Drop every chunk of `source`; returns how many were removed."""
        entry = self.files.pop(source, None)
        if not entry:
            return 0
        ids = [i for i in entry["chunk_ids"] if i in self._docstore_dict()]
        if ids:
            self.vectorstore.delete(ids)
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
    ) -> int:
        """Replace `source`'s chunks with `chunks` (vectors row-aligned, optional strip vectors per chunk)."""
        self.remove_file(source)
        ids = [c.metadata["chunk_id"] for c in chunks]
        if chunks:
            self.vectorstore.add_embeddings(
                list(zip([c.page_content for c in chunks], vectors.tolist(), strict=False)),
                metadatas=[c.metadata for c in chunks],
                ids=ids,
            )
        for chunk_id, block in zip(ids, strip_vectors or [], strict=False):
            self.strip_vectors[chunk_id] = np.asarray(block, dtype=np.float16)
        self._row_of = None
        self.files[source] = {"hash": file_hash, "chunk_ids": ids, "ingested": time.time()}
        self._dirty = True
        return len(chunks)

    # ------------------------------------------------------------------ reading
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
        """All chunks in FAISS row order (used to build keyword indexes)."""
        vs = self.vectorstore
        return [self._doc(vs.index_to_docstore_id[i]) for i in range(vs.index.ntotal)]

    def get(self, chunk_ids: Iterable[str]) -> list[Document]:
        found = self._docstore_dict()
        return [found[i] for i in chunk_ids if i in found]

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
        if len(self) == 0:
            return []
        vec = np.asarray(vector, dtype=np.float32).tolist()
        return self.vectorstore.similarity_search_with_score_by_vector(vec, k=min(k, len(self)))


def _pid_alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def write_lock(path: str | Path) -> Iterator[None]:
    """Exclusive writer lock on a store directory (ingest, remove): concurrent writers queue up."""
    import fcntl

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"store {path} is a file, not a directory: choose another --store")
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "LOCK", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_store(path: str | Path, settings: Any = None, create: bool = True) -> ChunkStore:
    """Open the store at `path` with the configured embeddings (see graphcraft.models)."""
    from graphcraft.config import get_settings
    from graphcraft.models import get_embeddings

    settings = settings or get_settings()
    emb = get_embeddings(settings)
    return ChunkStore.open(path, emb, emb.name, emb.dimension, create=create)
