"""Dense retrieval over a ChunkStore (cosine similarity of MiniLM embeddings)."""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from graphcraft.stores.vector import ChunkStore


def with_score(doc: Document, score: float, retriever: str) -> Document:
    """A copy of `doc` with its retrieval score, leaving the stored chunk untouched."""
    return Document(
        page_content=doc.page_content,
        id=doc.id,
        metadata={**doc.metadata, "score": round(float(score), 6), "retriever": retriever},
    )


class VectorRetriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: ChunkStore
    k: int = 5

    def search(
        self, query: str, k: int | None = None, vector: list[float] | np.ndarray | None = None
    ) -> list[Document]:
        """Nearest chunks; `vector` is the query's embedding when the caller already has it (batched)."""
        vector = self.store.embeddings.embed_query(query) if vector is None else vector
        return [with_score(doc, score, "vector") for doc, score in self.store.search_by_vector(vector, k or self.k)]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)


_STRIP_INDEX: dict[tuple[str, int, int], tuple[Any, list[str]]] = {}


def strip_index(store: ChunkStore) -> tuple[Any, list[str]]:
    """A FAISS index over every stored strip vector (built once per store generation) + its chunk ids."""
    import faiss

    key = (str(store.path), store.instance, store.generation)
    if key not in _STRIP_INDEX:
        ids: list[str] = []
        blocks = []
        for chunk_id, block in store.strip_vectors.items():
            ids.extend([chunk_id] * len(block))
            blocks.append(block)
        dim = int(store.manifest["dimension"])
        index = faiss.IndexFlatIP(dim)
        if blocks:
            index.add(np.ascontiguousarray(np.concatenate(blocks).astype(np.float32)))
        while len(_STRIP_INDEX) >= 8:
            _STRIP_INDEX.pop(next(iter(_STRIP_INDEX)))
        _STRIP_INDEX[key] = (index, ids)
    return _STRIP_INDEX[key]


class StripRetriever(BaseRetriever):
    """Dense retrieval at sentence level: chunks ranked by their best strip (late-chunked vectors).

    A fact stated in one sentence or table row of a long chunk is diluted in the chunk's
    vector; its strip vector is not. Costs no model call beyond the query embedding.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: ChunkStore
    k: int = 5

    def search(self, query: str, k: int | None = None) -> list[Document]:
        k = k or self.k
        index, ids = strip_index(self.store)
        if index.ntotal == 0:
            return []
        query_vec = np.asarray([self.store.embeddings.embed_query(query)], dtype=np.float32)
        scores, rows = index.search(query_vec, min(index.ntotal, 8 * k))
        best: dict[str, float] = {}
        for score, row in zip(scores[0], rows[0], strict=False):
            if row >= 0 and ids[row] not in best:
                best[ids[row]] = float(score)
            if len(best) == k:
                break
        docs = self.store.get(best)
        return [with_score(doc, best[doc.metadata["chunk_id"]], "strip") for doc in docs]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)
