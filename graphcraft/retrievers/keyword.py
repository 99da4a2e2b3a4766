"""BM25 keyword retrieval with bm25s (sparse-matrix BM25, fast to build and query).

The index is built from the store's chunks on first use and cached per store generation, so a
new ingest is picked up and an unchanged store is never re-indexed.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import bm25s
import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from graphcraft.chains.terms import STOP, content_terms, stemmer
from graphcraft.guards.nodes import screen_retrieved
from graphcraft.retrievers.vector import with_score
from graphcraft.stores.vector import ChunkStore

_CACHE: dict[tuple[str, int, int], tuple[Any, list[Document]]] = {}
_LOCK = threading.Lock()


_MAX_CACHED = 8  # a multimodal question searches several stores; older generations fall out


def _evict(cache: dict) -> None:
    while len(cache) >= _MAX_CACHED:
        cache.pop(next(iter(cache)))


def _tokenize(texts: list[str]) -> Any:
    return bm25s.tokenize(texts, stopwords=list(STOP), stemmer=stemmer(), show_progress=False)


def bm25_index(store: ChunkStore) -> tuple[Any, list[Document]]:
    key = (str(store.path), store.instance, store.generation)
    with _LOCK:
        if key not in _CACHE:
            docs = store.documents()
            index = bm25s.BM25()
            if docs:
                index.index(_tokenize([d.page_content for d in docs]), show_progress=False)
            _evict(_CACHE)
            _CACHE[key] = (index, docs)
        return _CACHE[key]


_IDF: dict[tuple[str, int, int], Callable[[str], float]] = {}


def idf_function(store: ChunkStore) -> Callable[[str], float]:
    """Smoothed inverse document frequency of content terms over the store's chunks (cached)."""
    key = (str(store.path), store.instance, store.generation)
    with _LOCK:
        if key not in _IDF:
            docs = store.documents()
            df: Counter[str] = Counter()
            for doc in docs:
                df.update(set(content_terms(doc.page_content)))
            n = max(1, len(docs))
            top = math.log(1 + n / 0.5)

            def idf(term: str, _df: Counter[str] = df) -> float:
                return math.log(1 + n / (_df.get(term, 0) + 0.5)) / top  # in (0, 1]; unseen terms -> 1

            _evict(_IDF)
            _IDF[key] = idf
        return _IDF[key]


class BM25Retriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: ChunkStore
    k: int = 5

    def search(self, query: str, k: int | None = None) -> list[Document]:
        index, docs = bm25_index(self.store)
        if not docs:
            return []
        tokens = _tokenize([query])
        if not tokens.vocab:  # only stopwords: nothing to match
            return []
        k = min(k or self.k, len(docs))
        ids, scores = index.retrieve(tokens, k=k, show_progress=False)
        hits = [
            with_score(docs[int(i)], float(s), "bm25")
            for i, s in zip(np.ravel(ids), np.ravel(scores), strict=False)
            if s > 0
        ]
        return screen_retrieved(hits)  # the run's guards (injection quarantine), if any

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)
