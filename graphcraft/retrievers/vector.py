"""Dense retrieval over a ChunkStore (cosine similarity of MiniLM embeddings)."""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from graphcraft.stores.vector import ChunkStore


def with_score(doc: Document, score: float, retriever: str) -> Document:
    """A copy of `doc` with its retrieval score, leaving the stored chunk untouched."""
    return Document(page_content=doc.page_content, id=doc.id, metadata={**doc.metadata, "score": round(float(score), 6), "retriever": retriever})


class VectorRetriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: ChunkStore
    k: int = 5

    def search(self, query: str, k: int | None = None) -> list[Document]:
        vector = self.store.embeddings.embed_query(query)
        return [with_score(doc, score, "vector") for doc, score in self.store.search_by_vector(vector, k or self.k)]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)
