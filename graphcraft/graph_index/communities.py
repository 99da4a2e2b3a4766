"""Hierarchical communities of the entity graph (Louvain) and their summaries.

`louvain_levels` returns nested partitions, finest first: networkx's Louvain yields one
partition per aggregation pass, each merging communities of the previous one. When it stops
after a single pass, the connected components are added as the coarser level, so there is
always more than one level. Communities of one entity are not kept.

Summaries are what global search reads. Offline, a community's summary is extractive: the
sentences of the chunks that mention its members, restricted to sentences naming a member,
picked by centroid similarity (the same extractive summariser as hierarchical indexing, using
the sentence vectors stored at ingestion: no embedding call); with a chat model, one call per
community (up to a bound) writes an abstractive summary from the same sentences.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel

from graphcraft.chains.summarize import summarize
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage


def louvain_levels(
    graph: nx.Graph, seed: int = 42, resolution: float = 1.0, max_levels: int = 3
) -> list[list[set[str]]]:
    """Nested partitions of the graph's nodes, finest first (at least two when the graph has edges)."""
    if graph.number_of_nodes() == 0:
        return []
    levels = [
        list(map(set, p))
        for p in nx.community.louvain_partitions(graph, weight="weight", resolution=resolution, seed=seed)
    ]
    levels = levels[:max_levels] or [[{n} for n in graph.nodes]]
    components = [set(c) for c in nx.connected_components(graph)]
    if len(levels) < 2 and len(components) < len(levels[-1]):
        levels.append(components)
    return [sorted(level, key=lambda c: (-len(c), sorted(c)[0])) for level in levels]


@dataclass
class Community:
    id: str
    level: int
    members: list[str]  # entity ids
    parent: str | None = None
    title: str = ""
    summary: str = ""
    chunk_ids: list[str] = field(default_factory=list)
    rank: float = 0.0  # share of the graph's edge weight inside it: bigger = more central
    strategy: str = ""
    vector: list[float] | None = None  # mean of its summary sentences' stored vectors (no embedding call)
    names: list[str] = field(default_factory=list)  # its most mentioned entities, for titles and prompts

    def as_row(self) -> dict[str, Any]:
        return {
            "id": self.id, "level": self.level, "title": self.title, "summary": self.summary, "size": len(self.members),
            "rank": round(self.rank, 6), "chunk_ids": self.chunk_ids, "strategy": self.strategy,
            "entity_names": self.names, "entity_ids": self.members, "parent": self.parent,
        }  # fmt: skip


def detect_communities(graph: nx.Graph, seed: int = 42, min_size: int = 2) -> list[Community]:
    """Communities of every level with ids ``L<level>:<n>`` and parents one level up."""
    levels = louvain_levels(graph, seed=seed)
    total = graph.size(weight="weight") or 1.0
    out: list[Community] = []
    owner: list[dict[str, str]] = []
    for level, partition in enumerate(levels):
        index: dict[str, str] = {}
        for n, members in enumerate(partition):
            cid = f"L{level}:{n}"
            for m in members:
                index[m] = cid
            if len(members) >= min_size:
                inside = graph.subgraph(members).size(weight="weight")
                out.append(Community(id=cid, level=level, members=sorted(members), rank=inside / total))
        owner.append(index)
    for c in out:
        if c.level + 1 < len(owner):
            c.parent = owner[c.level + 1].get(c.members[0])
    kept = {c.id for c in out}
    for c in out:
        if c.parent not in kept:
            c.parent = None
    return out


def _member_sentences(
    c: Community,
    names: dict[str, str],
    aliases: dict[str, list[str]],
    mentions: dict[str, Counter],
    chunks: dict[str, Document],
    strips_of: Any,
    max_chunks: int,
) -> tuple[list[str], list[np.ndarray], list[str]]:
    """(sentences naming a member, their vectors, chunk ids used) from the chunks mentioning most members."""
    coverage: Counter = Counter()
    for e in c.members:
        for chunk_id in mentions.get(e, Counter()):
            coverage[chunk_id] += 1
    picked = [cid for cid, _ in sorted(coverage.items(), key=lambda kv: (-kv[1], kv[0]))[:max_chunks] if cid in chunks]
    surface = sorted({a.lower() for e in c.members for a in aliases.get(e, [names.get(e, e)])}, key=len, reverse=True)
    sentences: list[str] = []
    vectors: list[np.ndarray] = []
    used: list[str] = []
    for chunk_id in picked:
        texts, vecs = strips_of(chunks[chunk_id])
        for i, text in enumerate(texts):
            if len(text.split()) >= 4 and any(a in text.lower() for a in surface):
                sentences.append(text)
                if vecs is not None:
                    vectors.append(vecs[i])
                if chunk_id not in used:
                    used.append(chunk_id)
    return sentences, vectors, used


def summarise_communities(
    communities: Sequence[Community],
    names: dict[str, str],
    aliases: dict[str, list[str]],
    mentions: dict[str, Counter],
    chunks: dict[str, Document],
    strips_of: Any,
    model: BaseChatModel | None = None,
    max_llm_summaries: int = 50,
    max_chunks: int = 6,
    max_sentences: int = 4,
) -> Usage:
    """Fill title, summary and chunk_ids of each community; returns the LLM usage.

    names: entity id -> canonical name; aliases: entity id -> surface forms;
    mentions: entity id -> Counter(chunk id -> count); chunks: chunk id -> Document;
    strips_of(doc) -> (sentences, vectors or None) as stored by the chunk store.
    """
    usage = empty_usage()
    llm_used = 0
    for c in sorted(communities, key=lambda c: -c.rank):
        by_mentions = sorted(c.members, key=lambda e: (-sum(mentions.get(e, Counter()).values()), names.get(e, e)))
        c.title = ", ".join(names.get(e, e) for e in by_mentions[:3])
        sentences, vectors, used = _member_sentences(c, names, aliases, mentions, chunks, strips_of, max_chunks)
        use_llm = model is not None and llm_used < max_llm_summaries
        matrix = np.asarray(vectors) if vectors and len(vectors) == len(sentences) else None
        result = summarize(
            sentences,
            matrix,
            model if use_llm else None,
            kind="community of related entities",
            title=c.title,
            max_sentences=max_sentences,
            max_words=120,
        )
        llm_used += int(use_llm and bool(sentences))
        usage = add_usage(usage, result.usage)
        c.names = [names.get(e, e) for e in by_mentions[:10]]
        c.summary = result.text or f"Entities: {', '.join(c.names)}."
        c.chunk_ids = used
        if vectors:
            mean = np.asarray(vectors, dtype=np.float32).mean(axis=0)
            c.vector = [round(float(x), 6) for x in mean / max(float(np.linalg.norm(mean)), 1e-12)]
        c.strategy = result.strategy if sentences else "names_only"
    return usage


def build_nx_graph(entity_ids: Sequence[str], relations: Sequence[dict[str, Any]]) -> nx.Graph:
    """Undirected weighted entity graph (parallel relations of a pair add up)."""
    g = nx.Graph()
    g.add_nodes_from(entity_ids)
    weights: dict[tuple[str, str], float] = defaultdict(float)
    for r in relations:
        a, b = sorted((r["source"], r["target"]))
        weights[(a, b)] += float(r.get("weight", 1.0))
    g.add_weighted_edges_from((a, b, w) for (a, b), w in weights.items())
    return g
