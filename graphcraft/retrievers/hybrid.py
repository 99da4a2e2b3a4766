"""Hybrid retrieval: dense + BM25 fused by reciprocal rank fusion."""

from __future__ import annotations

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from graphcraft.retrievers.fusion import rrf_fuse
from graphcraft.retrievers.keyword import BM25Retriever
from graphcraft.retrievers.vector import VectorRetriever
from graphcraft.stores.vector import ChunkStore


class HybridRetriever(BaseRetriever):
    """Each side fetches `fetch_k` candidates; RRF keeps the best `k`. Vector scores stay in metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: ChunkStore
    k: int = 5
    fetch_k: int = 20
    rrf_k: int = 60
    _dense: VectorRetriever = PrivateAttr()
    _sparse: BM25Retriever = PrivateAttr()

    def model_post_init(self, __context: object) -> None:
        self._dense = VectorRetriever(store=self.store)
        self._sparse = BM25Retriever(store=self.store)

    def search(
        self, query: str, k: int | None = None, vector: list[float] | np.ndarray | None = None
    ) -> list[Document]:
        """The best `k` chunks; `vector` is the query's embedding when the caller already has it (batched)."""
        dense = self._dense.search(query, self.fetch_k, vector=vector)
        sparse = self._sparse.search(query, self.fetch_k)
        fused = rrf_fuse([dense, sparse], k=self.rrf_k, limit=k or self.k, names=["vector", "bm25"])
        cosine = {d.metadata["chunk_id"]: d.metadata["score"] for d in dense}
        for doc in fused:
            doc.metadata["retriever"] = "hybrid"
            if doc.metadata["chunk_id"] in cosine:
                doc.metadata["vector_score"] = cosine[doc.metadata["chunk_id"]]
        return fused

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)
