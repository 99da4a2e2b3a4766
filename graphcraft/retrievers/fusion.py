"""Reciprocal rank fusion (Cormack et al. 2009), shared by every retriever that merges lists."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.documents import Document


def doc_key(doc: Document) -> str:
    return str(doc.metadata.get("chunk_id") or doc.id or hash(doc.page_content))


def rrf_fuse(
    ranked_lists: Sequence[Sequence[Document]],
    k: int = 60,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
    names: Sequence[str] | None = None,
) -> list[Document]:
    """Fuse ranked lists: score(d) = sum_i w_i / (k + rank_i(d)). Keeps each input's rank in metadata."""
    weights = list(weights) if weights is not None else [1.0] * len(ranked_lists)
    names = list(names) if names is not None else [f"list{i}" for i in range(len(ranked_lists))]
    scores: dict[str, float] = {}
    first: dict[str, Document] = {}
    ranks: dict[str, dict[str, int]] = {}
    for docs, weight, name in zip(ranked_lists, weights, names, strict=False):
        for rank, doc in enumerate(docs, start=1):
            key = doc_key(doc)
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            first.setdefault(key, doc)
            ranks.setdefault(key, {})[name] = rank
    ordered = sorted(scores, key=lambda key: scores[key], reverse=True)[:limit]
    return [
        Document(
            page_content=first[key].page_content,
            id=first[key].id,
            metadata={**first[key].metadata, "score": round(scores[key], 6), "ranks": ranks[key]},
        )
        for key in ordered
    ]
