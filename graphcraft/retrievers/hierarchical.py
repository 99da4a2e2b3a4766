"""Hierarchical retrieval over the summary tree of `ingest.hierarchy`.

- ``top_down``: rank documents by their summaries, then the sections of the best documents,
  then the chunks of the best sections. A document's score is the better of its summary's and
  its best section's similarity (a summary cannot mention every detail; its sections can),
  a chunk's score blends its own similarity with its section's and document's, so the
  tree's context breaks ties between look-alike chunks, and every selected document places its
  best chunk before the remaining ones compete on score.
- ``collapsed``: RAPTOR's collapsed tree: every node of every level (document summaries,
  sections, cluster summaries, chunks) ranked together by cosine similarity.

The hierarchy is built lazily on first use (extractive offline, or with `model`), and the
in-memory index is cached per hierarchy generation.

Access: the hierarchy is built from the whole store (one tree for every caller), and a caller
whose store is cleared (guards.access) sees only the summary nodes every chunk of which it may
see: a summary takes the highest classification of what it summarises, so one sentence from a
restricted chunk can never reach a lower clearance through a document, section or cluster summary.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from graphcraft.guards.access import visible_ids
from graphcraft.ingestion.hierarchy import ensure_hierarchy, tree_of
from graphcraft.stores.vector import ChunkStore

Mode = Literal["top_down", "collapsed"]
LEVELS = ("document", "section", "cluster")
CHUNK_WEIGHTS = (0.7, 0.2, 0.1)  # chunk, section, document similarity in a top-down chunk score


@dataclass
class HierarchyIndex:
    """Node documents and normalised vectors per level, and the tree's parent/child links."""

    nodes: dict[str, list[Document]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    by_id: dict[str, Document] = field(default_factory=dict)

    @classmethod
    def from_store(cls, hier: ChunkStore) -> HierarchyIndex:
        index = cls()
        docs = hier.documents()
        matrix = hier.vectorstore.index.reconstruct_n(0, len(docs)) if docs else np.zeros((0, 1), np.float32)
        clusters = tree_of(hier)["clusters"]
        for level in LEVELS:
            rows = [i for i, d in enumerate(docs) if d.metadata.get("level") == level]
            index.nodes[level] = [docs[i] for i in rows]
            index.vectors[level] = (
                np.asarray(matrix[rows], dtype=np.float32) if rows else np.zeros((0, matrix.shape[1]), np.float32)
            )
        for doc in docs:
            index.by_id[doc.metadata["chunk_id"]] = doc
            if doc.metadata.get("level") == "cluster" and doc.metadata["chunk_id"] in clusters:
                doc.metadata["children"] = list(clusters[doc.metadata["chunk_id"]]["members"])  # includes joined chunks
        return index

    def visible_to(self, chunk_ids: set[str]) -> HierarchyIndex:
        """The nodes whose every chunk is in `chunk_ids` (a document through its sections), same vectors."""
        below: dict[str, set[str]] = {}

        def chunks_of(node_id: str, depth: int = 0) -> set[str]:
            node = self.by_id.get(node_id)
            if node is None:  # a chunk id
                return {node_id}
            if node_id not in below:
                kids = node.metadata.get("children", []) if depth < 3 else []
                below[node_id] = set().union(*(chunks_of(str(c), depth + 1) for c in kids)) if kids else {node_id}
            return below[node_id]

        out = HierarchyIndex()
        for level, docs in self.nodes.items():
            keep = [i for i, d in enumerate(docs) if chunks_of(str(d.metadata["chunk_id"])) <= chunk_ids]
            out.nodes[level] = [docs[i] for i in keep]
            out.vectors[level] = self.vectors[level][keep]
            out.by_id.update({str(docs[i].metadata["chunk_id"]): docs[i] for i in keep})
        return out


_CACHE: dict[tuple[str, int, int], HierarchyIndex] = {}
_VISIBLE: dict[tuple[str, int, int, int], HierarchyIndex] = {}
_LOCK = threading.Lock()


def _scored(doc: Document, score: float, **extra: Any) -> Document:
    meta = {**doc.metadata, "score": round(float(score), 6), "retriever": "hierarchical", **extra}
    meta.setdefault("level", "chunk")
    return Document(page_content=doc.page_content, id=doc.id, metadata=meta)


class HierarchicalRetriever(BaseRetriever):
    """Top-down (documents -> sections -> chunks) or collapsed-tree retrieval over a ChunkStore."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: ChunkStore
    k: int = 5
    mode: Mode = "top_down"
    n_documents: int = 3
    n_sections: int = 4
    model: Any = None  # chat model for summaries if the hierarchy has to be built (None: extractive)
    settings: Any = None
    build_options: dict[str, Any] = {}

    # ------------------------------------------------------------------ index
    def index(self) -> HierarchyIndex:
        """The hierarchy's nodes this retriever's store may see (all of them for an uncleared store)."""
        base = getattr(self.store, "base", self.store)  # the tree is built over the whole store
        hier = ensure_hierarchy(base, self.settings, self.model, **self.build_options)
        key = (str(hier.path), id(hier), hier.generation)
        with _LOCK:
            if key not in _CACHE:
                _CACHE.clear()
                _VISIBLE.clear()
                _CACHE[key] = HierarchyIndex.from_store(hier)
            visible = visible_ids(self.store)
            if visible is None:
                return _CACHE[key]
            view_key = (*key, self.store.instance)
            if view_key not in _VISIBLE:
                while len(_VISIBLE) >= 8:
                    _VISIBLE.pop(next(iter(_VISIBLE)))
                _VISIBLE[view_key] = _CACHE[key].visible_to(visible)
            return _VISIBLE[view_key]

    def query_vector(self, query: str) -> np.ndarray:
        return np.asarray(self.store.embeddings.embed_query(query), dtype=np.float32)

    # ------------------------------------------------------------------ top-down steps
    def select_documents(self, qv: np.ndarray, n: int | None = None) -> list[Document]:
        """Documents ranked by max(summary similarity, best section similarity)."""
        idx = self.index()
        docs = idx.nodes["document"]
        if not docs:
            return []
        summary_sim = idx.vectors["document"] @ qv
        section_best: dict[str, float] = {}
        for node, sim in zip(idx.nodes["section"], idx.vectors["section"] @ qv, strict=False):
            parent = node.metadata.get("parent", "")
            section_best[parent] = max(section_best.get(parent, -1.0), float(sim))
        scores = [
            max(float(s), section_best.get(d.metadata["chunk_id"], -1.0))
            for d, s in zip(docs, summary_sim, strict=False)
        ]
        order = np.argsort(scores)[::-1][: n or self.n_documents]
        return [_scored(docs[i], scores[i], summary_score=round(float(summary_sim[i]), 6)) for i in order]

    def select_sections(self, qv: np.ndarray, documents: list[Document], n: int | None = None) -> list[Document]:
        """The best sections of the selected documents (a section keeps its document's score)."""
        idx = self.index()
        doc_scores = {d.metadata["chunk_id"]: d.metadata["score"] for d in documents}
        candidates = [
            (node, vec)
            for node, vec in zip(idx.nodes["section"], idx.vectors["section"], strict=False)
            if node.metadata.get("parent") in doc_scores
        ]
        if not candidates:
            return []
        sims = np.stack([v for _, v in candidates]) @ qv
        chosen: list[int] = []
        chunks = 0
        for i in np.argsort(sims)[::-1]:  # the n best, and more while they hold fewer than 2k chunks
            if len(chosen) >= (n or self.n_sections) and chunks >= 2 * self.k:
                break
            chosen.append(int(i))
            chunks += len(candidates[i][0].metadata.get("children", []))
        return [
            _scored(candidates[i][0], sims[i], document_score=doc_scores[candidates[i][0].metadata["parent"]])
            for i in chosen
        ]

    def select_chunks(self, qv: np.ndarray, sections: list[Document], k: int | None = None) -> list[Document]:
        """Chunks of the selected sections, scored by their own, their section's and their document's similarity."""
        w_chunk, w_section, w_doc = CHUNK_WEIGHTS
        scored: dict[str, tuple[float, Document, float, Document]] = {}
        for section in sections:
            for chunk in self.store.get(section.metadata.get("children", [])):
                cid = chunk.metadata["chunk_id"]
                vec = self.store.chunk_vector(cid)
                sim = float(vec @ qv) if vec is not None else 0.0
                score = (
                    w_chunk * sim + w_section * section.metadata["score"] + w_doc * section.metadata["document_score"]
                )
                if cid not in scored or score > scored[cid][0]:
                    scored[cid] = (score, chunk, sim, section)
        ranked = sorted(scored.values(), key=lambda item: item[0], reverse=True)
        # Each selected document contributes its best chunk first, then the rest by score: the
        # documents were chosen for a reason, and one strong document must not crowd them out.
        leaders: dict[str, int] = {}
        for position, item in enumerate(ranked):
            leaders.setdefault(str(item[3].metadata.get("parent")), position)
        order = sorted(leaders.values()) + [p for p in range(len(ranked)) if p not in set(leaders.values())]
        best = sorted((ranked[p] for p in order[: k or self.k]), key=lambda item: item[0], reverse=True)
        return [
            _scored(
                chunk,
                score,
                level="chunk",
                vector_score=round(sim, 6),
                section_node=section.metadata["chunk_id"],
                document_node=section.metadata.get("parent"),
            )
            for score, chunk, sim, section in best
        ]

    def top_down(self, query: str, k: int | None = None) -> list[Document]:
        qv = self.query_vector(query)
        return self.select_chunks(qv, self.select_sections(qv, self.select_documents(qv)), k)

    # ------------------------------------------------------------------ collapsed tree
    def collapsed(self, query: str, k: int | None = None) -> list[Document]:
        """Nodes of every level and chunks, ranked together by cosine similarity (RAPTOR)."""
        k = k or self.k
        qv = self.query_vector(query)
        idx = self.index()
        pool: list[tuple[float, Document]] = [(s, d) for d, s in self.store.search_by_vector(qv, k)]
        for level in LEVELS:
            if len(idx.nodes[level]):
                sims = idx.vectors[level] @ qv
                pool += [(float(sims[i]), idx.nodes[level][i]) for i in np.argsort(sims)[::-1][:k]]
        pool.sort(key=lambda item: item[0], reverse=True)
        return [_scored(doc, score) for score, doc in pool[:k]]

    # ------------------------------------------------------------------ retriever API
    def search(self, query: str, k: int | None = None) -> list[Document]:
        return self.collapsed(query, k) if self.mode == "collapsed" else self.top_down(query, k)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)
