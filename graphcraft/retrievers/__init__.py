"""Retrievers over a ChunkStore: vector, BM25 keyword, hybrid (RRF). Each is a LangChain BaseRetriever."""

from graphcraft.retrievers.fusion import rrf_fuse
from graphcraft.retrievers.hybrid import HybridRetriever
from graphcraft.retrievers.keyword import BM25Retriever
from graphcraft.retrievers.vector import StripRetriever, VectorRetriever

__all__ = ["BM25Retriever", "HybridRetriever", "StripRetriever", "VectorRetriever", "rrf_fuse", "make_retriever"]


def make_retriever(kind: str, store, k: int = 5):  # type: ignore[no-untyped-def]
    """'vector' (alias 'semantic') | 'strip' (sentence level) | 'keyword' (alias 'bm25') | 'hybrid' | 'hierarchical'."""
    from graphcraft.retrievers.hierarchical import HierarchicalRetriever

    kinds = {
        "vector": VectorRetriever,
        "semantic": VectorRetriever,
        "keyword": BM25Retriever,
        "bm25": BM25Retriever,
        "hybrid": HybridRetriever,
        "hierarchical": HierarchicalRetriever,
        "strip": StripRetriever,
    }
    if kind not in kinds:
        raise ValueError(f"unknown retriever {kind!r}; choose one of {sorted(kinds)}")
    return kinds[kind](store=store, k=k)
