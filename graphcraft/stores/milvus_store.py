"""A chunk store whose chunk vectors live in a Milvus collection instead of a FAISS index.

The chunks, the manifest and the strip vectors stay in the store's generations (see
stores/generations.py), so ingest, incremental re-ingest, removal and commit work exactly as
with FAISS; only where chunk vectors are kept and searched changes. Consistency between the
committed generation and the collection, and why it holds after a crash at any point:

* Rows are immutable (key = digest of chunk id and text) and written *before* the generation
  that names them is committed, so a committed generation never names a row that was not
  written, and a row is never changed under a generation that uses it.
* Search keeps only rows of this store's view (the loaded generation plus uncommitted work),
  so rows left by a writer that died before its commit, or by superseded generations, are
  never returned.
* Rows are deleted only after the commit that drops them, and only those in neither the new
  generation nor the one it replaced (a reader may still be on that one).
* A sync record in Milvus names the generation whose rows are all present. Opening a
  generation it does not name (a crash after the commit, another server, a collection
  deleted) checks every row and re-embeds the missing ones from the chunk texts.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from graphcraft.stores.generations import Generation
from graphcraft.stores.milvus_index import MAX_LIMIT, MilvusIndex, MilvusStoreError, resolve_uri, row_key
from graphcraft.stores.vector import ChunkStore

log = logging.getLogger(__name__)
CACHE_SIZE = 20_000  # chunk vectors kept in memory by chunk_vector (about 30 MB at 384 dims)
SEARCH_ROUNDS = 6  # widening rounds when rows outside this store's view crowd the top-k


class MilvusChunkStore(ChunkStore):
    """ChunkStore with its chunk vectors in Milvus (Milvus Lite file or server), same metric as FAISS."""

    backend = "milvus"

    def __init__(self, path: Path, embeddings: Embeddings, model_name: str, dimension: int, milvus_uri: str = ""):
        super().__init__(path, embeddings, model_name, dimension)
        self.milvus_uri = resolve_uri(milvus_uri, Path(path))
        self.manifest["milvus_collection"] = "graphcraft_" + uuid.uuid4().hex[:20]
        self._index: MilvusIndex | None = None
        self.milvus_warning: str | None = None  # a commit whose Milvus clean-up failed (the next one redoes it)

    def _init_vectors(self, dimension: int) -> None:
        self._docs: dict[str, Document] = {}  # chunk id -> chunk, in row order
        self._keys: dict[str, str] = {}  # chunk id -> row key, for this store's view
        self._chunk_of: dict[str, str] = {}  # row key -> chunk id, for this store's view
        self._parent_keys: set[str] = set()  # keys of the loaded (last committed) generation
        self._parent_generation = 0  # its number
        self._retired: list[str] = []  # keys the loaded generation dropped from its parent
        self._session_keys: set[str] = set()  # keys written since the last load or commit
        self._session: str | None = None  # token in the sync record while this store has uncommitted rows
        self._clean_base = False  # the sync record named our parent, clean, when this session began
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._position: dict[str, int] | None = None  # chunk id -> row, to break score ties as FAISS does

    @property
    def index(self) -> MilvusIndex:
        name = str(self.manifest["milvus_collection"])
        if self._index is None or self._index.collection != name:
            self._index = MilvusIndex(self.milvus_uri, name, int(self.manifest["dimension"]))
        return self._index

    # ------------------------------------------------------------------ open
    def _load_vectors(self, gen: Generation, docs: dict[str, Document]) -> None:
        self._init_vectors(int(self.manifest["dimension"]))
        self._docs = docs
        for chunk_id, doc in docs.items():
            self._remember(chunk_id, row_key(chunk_id, doc.page_content))
        self._parent_keys = set(self._chunk_of)
        self._parent_generation = self.generation
        self._retired = list(self.manifest.get("milvus_retired", []))
        if docs:
            self._reconcile(gen.name)

    def _sync_record(self, clean: bool, session: str | None = None) -> str:
        record = {"generation": self.generation, "ids": self.manifest.get("ids_sha256"), "clean": clean}
        return json.dumps({**record, "session": session} if session else record, sort_keys=True)

    def _names_this_generation(self, record: str | None) -> bool:
        if record is None:
            return False
        data = json.loads(record)
        return bool(data.get("generation") == self.generation and data.get("ids") == self.manifest.get("ids_sha256"))

    def _reconcile(self, gen_name: str) -> None:
        """Make sure every row of the opened generation is in Milvus (fast when the sync record says so)."""
        index = self.index
        if index.exists() and self._names_this_generation(index.read_sync()) and index.count() >= len(self._docs):
            return
        index.ensure()
        keys = list(self._chunk_of)
        present = index.present(keys)
        missing = [k for k in keys if k not in present]
        if missing:
            from graphcraft.models import embed_texts

            docs = [self._docs[self._chunk_of[k]] for k in missing]
            vectors = embed_texts(self.embeddings, [d.page_content for d in docs])
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            index.upsert([self._row(d, k, v) for d, k, v in zip(docs, missing, vectors, strict=True)])
            self.recovered = (
                f"Milvus collection {index.collection} lacked {len(missing)} of {len(keys)} chunk vectors "
                f"of {gen_name}: re-embedded them from the chunk texts"
            )
        index.write_sync(self._sync_record(clean=False))  # rows of other generations may be left: sweep at commit

    # ------------------------------------------------------------------ writing
    def _row(self, doc: Document, key: str, vector: np.ndarray) -> dict[str, Any]:
        chunk_id = str(doc.metadata.get("chunk_id", doc.id))
        source = str(doc.metadata.get("source", ""))[:4000]
        return {"key": key, "chunk_id": chunk_id[:1024], "source": source, "vector": np.asarray(vector).tolist()}

    def _remember(self, chunk_id: str, key: str) -> None:
        old = self._keys.get(chunk_id)
        if old is not None and old != key:  # the same id with another text: only the new row is in the view
            self._chunk_of.pop(old, None)
        self._keys[chunk_id] = key
        self._chunk_of[key] = chunk_id

    def _begin_session(self) -> None:
        """Before the first row of uncommitted work: mark the sync record dirty (an orphan may follow)."""
        index = self.index
        index.ensure()
        record = index.read_sync()
        data = json.loads(record) if record else {}
        self._clean_base = bool(data.get("clean")) and self._names_this_generation(record)
        self._session = uuid.uuid4().hex
        if record:
            index.write_sync(json.dumps({**data, "clean": False, "session": self._session}, sort_keys=True))

    def _add_vectors(self, chunks: list[Document], vectors: np.ndarray, ids: list[str]) -> None:
        if self._session is None:
            self._begin_session()
        keys = [row_key(i, c.page_content) for i, c in zip(ids, chunks, strict=True)]
        self.index.upsert([self._row(c, k, v) for c, k, v in zip(chunks, keys, vectors, strict=True)])
        for chunk_id, key, chunk, vector in zip(ids, keys, chunks, vectors, strict=True):
            self._docs.pop(chunk_id, None)  # a re-added id moves to the end, as in FAISS
            self._docs[chunk_id] = Document(page_content=chunk.page_content, metadata=chunk.metadata, id=chunk_id)
            self._remember(chunk_id, key)
            self._session_keys.add(key)
            self._position = None
            self._cache_put(key, np.asarray(vector, dtype=np.float32))

    def _delete_vectors(self, ids: list[str]) -> None:
        """Drop from this store's view only; the rows go after the commit (see `_after_swap`)."""
        self._position = None
        for chunk_id in ids:
            self._docs.pop(chunk_id, None)
            key = self._keys.pop(chunk_id, None)
            if key is not None:
                self._chunk_of.pop(key, None)

    def _index_to_write(self) -> Any:
        return None

    def _manifest_extras(self) -> dict[str, Any]:
        return {
            "milvus_collection": self.manifest["milvus_collection"],
            "milvus_retired": sorted(self._parent_keys - set(self._chunk_of)),
        }

    def _after_swap(self) -> None:
        """The new generation is current: delete rows nobody can use, then record the sync."""
        new_keys = set(self._chunk_of)
        try:
            self._sweep(new_keys)
        except MilvusStoreError as exc:  # committed all the same: the next open or commit redoes this
            self.milvus_warning = f"{exc} (the commit stands; the next commit cleans Milvus up)"
            log.warning(self.milvus_warning)
        self._retired = sorted(self._parent_keys - new_keys)
        self._parent_keys, self._parent_generation = new_keys, self.generation
        self._session_keys, self._session, self._clean_base = set(), None, False

    def _sweep(self, new_keys: set[str]) -> None:
        index = self.index
        index.ensure()
        ours = self._session is not None and self._record_session(index.read_sync()) == self._session
        if ours and self._clean_base:  # nobody else left rows since our parent was in sync: incremental
            stale = (set(self._retired) | self._session_keys) - new_keys - self._parent_keys
        elif self._session is None and self._names_parent_clean(index.read_sync()):
            stale = set(self._retired) - new_keys - self._parent_keys
        else:  # a crash, a reader's repair or another session since: look at every row
            stale = set(index.all_keys()) - new_keys - self._parent_keys
        index.delete(stale)
        index.write_sync(self._sync_record(clean=True))
        index.seal()

    @staticmethod
    def _record_session(record: str | None) -> str | None:
        return json.loads(record).get("session") if record else None

    def _names_parent_clean(self, record: str | None) -> bool:
        """The record is clean and names the generation this commit replaced."""
        if record is None:
            return False
        data = json.loads(record)
        return bool(data.get("clean")) and data.get("generation") == self._parent_generation

    # ------------------------------------------------------------------ reading
    def _ordered_ids(self) -> list[str]:
        return list(self._docs)

    def _docstore_dict(self) -> dict[str, Document]:
        return self._docs

    def _doc(self, doc_id: str) -> Document:
        return self._docs[doc_id]

    def __len__(self) -> int:
        return len(self._docs)

    def chunk_vector(self, chunk_id: str) -> np.ndarray | None:
        key = self._keys.get(chunk_id)
        if key is None:
            return None
        vector = self._cache.get(key)
        if vector is None:
            vector = self.index.vectors([key]).get(key)
            if vector is None:
                return None
            self._cache_put(key, vector)
        self._cache.move_to_end(key)
        return vector

    def _cache_put(self, key: str, vector: np.ndarray) -> None:
        self._cache[key] = vector
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _nearest(self, vector: list[float] | np.ndarray, k: int) -> list[tuple[Document, float]]:
        """The k nearest chunks of this store's view; widens the Milvus top-k while other rows crowd it.

        Equal scores (the same text in two files) put the later row first, as FAISS's heap does
        (it breaks ties by id), so both backends return the same top-k in the same order."""
        want = min(k, len(self))
        if want == 0:
            return []
        query = np.asarray(vector, dtype=np.float32).tolist()
        limit = min(MAX_LIMIT, 2 * want + 16)
        found: list[tuple[str, float]] = []
        for _ in range(SEARCH_ROUNDS):
            hits = self.index.search(query, limit)
            found = [(self._chunk_of[key], score) for key, score, _ in hits if key in self._chunk_of]
            if len(found) >= want or len(hits) < limit or limit >= MAX_LIMIT:
                break
            limit = min(MAX_LIMIT, limit * 4)
        for key, _, stored in hits:
            if key in self._chunk_of:
                self._cache_put(key, stored)
        position = self._positions()
        found.sort(key=lambda hit: (-hit[1], -position[hit[0]]))
        return [(self._docs[chunk_id], score) for chunk_id, score in found[:want]]

    def _positions(self) -> dict[str, int]:
        if self._position is None:
            self._position = {chunk_id: row for row, chunk_id in enumerate(self._docs)}
        return self._position
