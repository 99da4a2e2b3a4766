"""One store per modality (text, table, image) and retrieval across them.

The sub-stores live under ``<store>/multimodal/<modality>/``, each an ordinary ChunkStore, so
each modality has its own FAISS and BM25 indexes: a table's markdown never competes for a
rank with prose in the same list. Each store is searched with the hybrid (dense + BM25)
retriever and the per-modality lists are fused by weighted reciprocal rank fusion, the weights
coming from query analysis.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from graphcraft.errors import StoreError
from graphcraft.retrievers.fusion import rrf_fuse
from graphcraft.retrievers.hybrid import HybridRetriever
from graphcraft.stores.generations import was_ingested
from graphcraft.stores.vector import ChunkStore, open_store

MODALITIES = ("text", "table", "image")


def modality_store_path(store: str | Path, modality: str) -> Path:
    """Where one modality's chunks are stored inside a graphcraft store directory."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; one of {MODALITIES}")
    return Path(store) / "multimodal" / modality


def open_modality_stores(store: str | Path, settings: Any = None, create: bool = False) -> dict[str, ChunkStore]:
    """The modality stores under ``store``; without ``create``, only those that exist.

    For reading (no ``create``) each store is cleared to ``settings.clearance`` (guards.access):
    a caller never searches a chunk above it. Ingestion (``create``) gets the stores themselves."""
    from graphcraft.guards.access import cleared

    stores: dict[str, ChunkStore] = {}
    clearance = str(getattr(settings, "clearance", "restricted"))
    for modality in MODALITIES:
        path = modality_store_path(store, modality)
        if create or was_ingested(path):
            opened = open_store(path, settings, create=create)
            stores[modality] = opened if create else cleared(opened, clearance)
    return stores


class MultimodalRetriever(BaseRetriever):
    """Hybrid search in each modality store, fused by RRF with per-modality weights."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    stores: dict[str, ChunkStore]
    k: int = 5
    fetch_k: int = 20
    rrf_k: int = 60
    weights: dict[str, float] = {"text": 1.0, "table": 1.0, "image": 1.0}

    def search_each(
        self, query: str, modalities: list[str] | None = None, k: int | None = None
    ) -> dict[str, list[Document]]:
        """Ranked hits per modality (modalities without a store or with weight 0 are skipped)."""
        wanted = modalities or [m for m in MODALITIES if self.weights.get(m, 0) > 0]
        hits: dict[str, list[Document]] = {}
        for modality in wanted:
            store = self.stores.get(modality)
            if store is None or len(store) == 0:
                continue
            retriever = HybridRetriever(store=store, k=k or self.k, fetch_k=self.fetch_k, rrf_k=self.rrf_k)
            hits[modality] = retriever.search(query, k or self.k)
        return hits

    def fuse(
        self, hits: Mapping[str, list[Document]], weights: Mapping[str, float] | None = None, k: int | None = None
    ) -> list[Document]:
        """Weighted RRF over the per-modality lists; each hit keeps its in-modality score."""
        weights = weights or self.weights
        names = [m for m in hits if weights.get(m, 0) > 0]
        for modality in names:
            for doc in hits[modality]:
                doc.metadata["modality_score"] = doc.metadata.get("score")
        fused = rrf_fuse(
            [hits[m] for m in names], k=self.rrf_k, weights=[weights[m] for m in names], limit=k or self.k, names=names
        )
        for doc in fused:
            doc.metadata["retriever"] = "multimodal"
        return fused

    def search(self, query: str, k: int | None = None, weights: Mapping[str, float] | None = None) -> list[Document]:
        weights = dict(weights or self.weights)
        return self.fuse(self.search_each(query, [m for m in MODALITIES if weights.get(m, 0) > 0], k), weights, k)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)


def require_modality_stores(store: str | Path, settings: Any = None) -> dict[str, ChunkStore]:
    """The modality stores, or a StoreError that says how to build them."""
    stores = open_modality_stores(store, settings)
    if not any(len(getattr(s, "base", s)) for s in stores.values()):  # ingested, even if nothing is cleared
        raise StoreError(
            f"no multimodal chunks in {store}: run `graphcraft ingest PATH --multimodal --store {store}` first"
        )
    return stores
