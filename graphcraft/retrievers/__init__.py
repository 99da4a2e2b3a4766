"""Retrievers over a ChunkStore: vector, BM25 keyword, hybrid (RRF). Each is a LangChain BaseRetriever."""

from collections.abc import Callable
from typing import Any

from langchain_core.retrievers import BaseRetriever

from graphcraft.retrievers.fusion import rrf_fuse
from graphcraft.retrievers.hybrid import HybridRetriever
from graphcraft.retrievers.keyword import BM25Retriever
from graphcraft.retrievers.vector import StripRetriever, VectorRetriever
from graphcraft.stores.vector import ChunkStore

__all__ = ["BM25Retriever", "HybridRetriever", "StripRetriever", "VectorRetriever", "rrf_fuse", "make_retriever"]


def make_retriever(kind: str, store: ChunkStore, k: int = 5) -> Any:
    """A retriever over `store` by name.

    'vector' (alias 'semantic') | 'strip' (sentence level) | 'keyword' (alias 'bm25') | 'hybrid' | 'hierarchical'.
    Typed Any: callers use the chosen class's own methods (e.g. `search`).
    """
    from graphcraft.retrievers.hierarchical import HierarchicalRetriever

    kinds: dict[str, Callable[..., BaseRetriever]] = {
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
