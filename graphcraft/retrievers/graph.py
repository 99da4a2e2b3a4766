"""Graph retrieval (local search): question entities -> k-hop neighbourhood -> chunks, fused with vectors.

1. Link the question to entities: the longest word n-grams whose normalised form is an alias
   key of an entity, then, for names the question spells differently, the entity whose name
   embedding is closest to a noun phrase of the question (above a threshold).
2. Expand hop by hop with parameterised Cypher (one query per hop, the strongest
   ``fanout`` relations of each node kept), recording every path.
3. Bridge the two hops: neighbours that share a chunk with a seed (or are related to it) are
   bridge candidates, ranked by how similar their connecting chunk is to the question; for
   the best bridges, the chunks mentioning the bridge but not the seed are the second hop,
   ranked by similarity to the question with the seed's name replaced by the bridge's
   ("... where Halvard Robotics has its head office" -> "... where Ferrowharf ...").
4. Fuse with the vector (or hybrid) retriever's list by reciprocal rank fusion.

Each returned document keeps in its metadata the graph paths that led to it.

Access: when the chunk store is cleared (guards.access), the graph is read through
guards.access_graph.cleared_graph, so entities, relations and chunks known only from chunks
above the caller's clearance are never linked, walked or returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from graphcraft.chains.terms import content_terms, coverage, salient_terms
from graphcraft.graph_index.resolve import normalise
from graphcraft.guards.access import visible_ids
from graphcraft.retrievers.fusion import rrf_fuse

_WORD = re.compile(r"[\w'’.&-]+")
_STOP_KEYS = {"the", "a", "an", "what", "which", "who", "when", "where", "how", "in", "of", "is", "was"}


@dataclass
class GraphPath:
    """Seed -> ... -> entity, with the relation types and the chunks that evidence each step."""

    names: list[str]
    ids: list[str]
    types: list[str]
    forward: list[bool]  # relation direction along the path
    chunk_ids: list[list[str]]
    weight: float

    def __str__(self) -> str:
        parts = [self.names[0]]
        for name, rel, fwd in zip(self.names[1:], self.types, self.forward, strict=False):
            parts.append(f"-[{rel}]->" if fwd else f"<-[{rel}]-")
            parts.append(name)
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self), "entities": self.names, "relations": self.types, "chunk_ids": self.chunk_ids}


@dataclass
class GraphRetrieval:
    documents: list[Document]
    seeds: list[dict[str, Any]] = field(default_factory=list)
    paths: list[GraphPath] = field(default_factory=list)
    graph_documents: list[Document] = field(default_factory=list)
    vector_documents: list[Document] = field(default_factory=list)


class GraphRetriever(BaseRetriever):
    """Local graph search fused with a vector/hybrid retriever (a LangChain BaseRetriever)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    graph_store: Any
    chunk_store: Any = None  # ChunkStore: vectors for the similarity blend and the fused retriever
    embeddings: Any = None
    k: int = 5
    hops: int = 2
    fanout: int = 12
    max_seeds: int = 5
    fetch_k: int = 20
    rrf_k: int = 60
    base: str = "vector"  # the retriever fused with the graph: "vector", "hybrid" or "" (graph only)
    link_threshold: float = 0.75
    max_bridges: int = 3
    lexical_weight: float = 0.3
    graph_weight: float = 1.0
    _entities: list[dict[str, Any]] | None = PrivateAttr(default=None)
    _keys: dict[str, str] | None = PrivateAttr(default=None)
    _matrix: np.ndarray | None = PrivateAttr(default=None)

    def model_post_init(self, __context: object) -> None:
        from graphcraft.guards.access_graph import cleared_graph

        self.graph_store = cleared_graph(self.graph_store, self.chunk_store)

    # ------------------------------------------------------------------ entity linking
    def _load_entities(self) -> None:
        rows = self.graph_store.query(
            "MATCH (e:Entity) RETURN e.id AS id, e.name AS name, e.keys AS keys, e.mentions AS mentions, "
            "e.embedding AS embedding"
        )
        self._entities = rows
        keys: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: -(r.get("mentions") or 0)):
            for key in [*(row.get("keys") or []), normalise(row.get("name") or "")]:
                if key and key not in _STOP_KEYS:
                    keys.setdefault(key, row["id"])
        self._keys = keys
        vectors = [r.get("embedding") for r in rows]
        if rows and all(v is not None for v in vectors):
            self._matrix = np.asarray(vectors, dtype=np.float32)

    def link_entities(self, question: str) -> list[dict[str, Any]]:
        """Entities the question names: [{"id", "name", "score", "how"}], best first."""
        if self._entities is None:
            self._load_entities()
        assert self._keys is not None and self._entities is not None
        by_id = {e["id"]: e for e in self._entities}
        words = _WORD.findall(question)
        found: dict[str, dict[str, Any]] = {}
        used = [False] * len(words)
        for n in range(min(6, len(words)), 0, -1):
            for i in range(len(words) - n + 1):
                if any(used[i : i + n]):
                    continue
                gram = words[i : i + n]
                if n == 1 and not (gram[0][:1].isupper() or any(c.isdigit() for c in gram[0])):
                    continue  # single lower-case words are rarely names
                eid = self._keys.get(normalise(" ".join(gram)))
                if eid:
                    used[i : i + n] = [True] * n
                    found.setdefault(eid, {"id": eid, "name": by_id[eid]["name"], "score": 1.0, "how": "alias"})
        if self._matrix is not None and self.embeddings is not None:
            for phrase in self._noun_phrases(question, words, used):
                vec = np.asarray(self.embeddings.embed_query(phrase), dtype=np.float32)
                sims = self._matrix @ vec
                best = int(np.argmax(sims))
                if float(sims[best]) >= self.link_threshold:
                    eid = self._entities[best]["id"]
                    found.setdefault(
                        eid,
                        {
                            "id": eid,
                            "name": self._entities[best]["name"],
                            "score": round(float(sims[best]), 4),
                            "how": "embedding",
                        },
                    )
        return sorted(found.values(), key=lambda e: -e["score"])[: self.max_seeds]

    @staticmethod
    def _noun_phrases(question: str, words: list[str], used: list[bool]) -> list[str]:
        """Runs of capitalised words the alias match did not take (cheap, no parser)."""
        phrases, run = [], []
        for i, w in enumerate(words):
            if not used[i] and i > 0 and w[:1].isupper():
                run.append(w)
            else:
                if run:
                    phrases.append(" ".join(run))
                run = []
        if run:
            phrases.append(" ".join(run))
        return phrases

    # ------------------------------------------------------------------ k-hop expansion
    def neighbourhood(self, seed_ids: list[str], hops: int | None = None) -> tuple[dict[str, int], list[GraphPath]]:
        """({entity id: hop distance}, paths from the seeds), one parameterised query per hop."""
        hops = self.hops if hops is None else hops
        names = {
            r["id"]: r["name"]
            for r in self.graph_store.query(
                "MATCH (e:Entity) WHERE e.id IN $ids RETURN e.id AS id, e.name AS name", {"ids": seed_ids}
            )
        }
        distance = {s: 0 for s in seed_ids if s in names}
        paths: dict[str, GraphPath] = {s: GraphPath([names[s]], [s], [], [], [], 1.0) for s in distance}
        frontier = list(distance)
        all_paths: list[GraphPath] = []
        for hop in range(1, hops + 1):
            if not frontier:
                break
            rows = self.graph_store.query(
                "MATCH (a:Entity)-[r:RELATED]->(b:Entity) WHERE a.id IN $ids OR b.id IN $ids "
                "RETURN a.id AS a, a.name AS an, b.id AS b, b.name AS bn, r.type AS type, r.weight AS weight, "
                "r.chunk_ids AS chunks",
                {"ids": frontier},
            )
            edges: dict[str, list[tuple[float, str, str, dict]]] = {}
            for row in rows:
                for here, there, there_name, fwd in (
                    (row["a"], row["b"], row["bn"], True),
                    (row["b"], row["a"], row["an"], False),
                ):
                    if here in frontier and there not in distance:
                        typed = 1.5 if row["type"] != "MENTIONED_WITH" else 1.0
                        edges.setdefault(here, []).append(
                            (float(row["weight"] or 0) * typed, there, there_name, {**row, "fwd": fwd})
                        )
            next_frontier: list[str] = []
            for here, options in edges.items():
                for weight, there, there_name, row in sorted(options, key=lambda t: (-t[0], t[1]))[: self.fanout]:
                    base = paths[here]
                    path = GraphPath(
                        base.names + [there_name],
                        base.ids + [there],
                        base.types + [row["type"]],
                        base.forward + [row["fwd"]],
                        base.chunk_ids + [list(row["chunks"] or [])],
                        base.weight * weight / (1.0 + weight),
                    )
                    if there not in distance:
                        distance[there] = hop
                        paths[there] = path
                        next_frontier.append(there)
                    all_paths.append(path)
            frontier = next_frontier
        all_paths.sort(key=lambda p: (-p.weight, str(p)))
        return distance, all_paths

    # ------------------------------------------------------------------ chunks
    def graph_documents(
        self,
        question: str,
        distance: dict[str, int],
        paths: list[GraphPath],
        limit: int,
        seeds: list[dict[str, Any]] | None = None,
    ) -> list[Document]:
        """Bridge retrieval over the neighbourhood: the chunks that connect a seed to a neighbour
        (ranked by their similarity to the question) name the bridge entities; for the best
        bridges, the chunks that mention the bridge but not the seed are the second hop, ranked
        by their similarity to the question with the seed's name replaced by the bridge's."""
        seed_ids = [e for e, d in distance.items() if d == 0]
        if not seed_ids or self.chunk_store is None:
            return []
        search = _BridgeSearch(self, question, seed_ids, {s["id"]: s.get("name", "") for s in seeds or []})
        for bridge in (e for e, d in distance.items() if d > 0):  # related by the parser, never in one chunk
            search.names.setdefault(bridge, bridge)
        related = {p.ids[1] for p in paths if len(p.ids) > 1}
        for evidence, seed, bridge, best in search.bridges(related)[: self.max_bridges]:
            # the chunk joining seed and bridge often holds the answer itself ("X, chaired by Y")
            search.offer(best, evidence, f"evidence:{seed}->{bridge}", f"{question} {search.names.get(bridge, '')}")
            search.second_hop(seed, bridge)
        for cids in search.seed_chunks.values():  # the seeds' own chunks, last
            for cid in cids:
                search.scored.setdefault(cid, (search.sim(cid) - 0.1, "seed"))
        # Bridge evidence and second-hop chunks: what a search for the question alone does not
        # reach. The seeds' other chunks are the fused retriever's job (listing them here would
        # only double-count them in the fusion); they are used when there is no bridge at all.
        scored = search.scored
        pool = [c for c in scored if scored[c][1] != "seed"] or list(scored)
        ordered = sorted(pool, key=lambda c: (-scored[c][0], c))[:limit]
        via: dict[str, set[str]] = {}
        for path in paths:
            for chunk_ids in path.chunk_ids:
                for cid in chunk_ids:
                    via.setdefault(cid, set()).add(str(path))
        return [search.annotate(doc, via) for doc in self._documents(ordered)]

    def _documents(self, chunk_ids: list[str]) -> list[Document]:
        """The chunks by id from the chunk store, else (a graph built from another store) the graph's Chunk nodes."""
        if self.chunk_store is not None:
            found = {str(d.metadata.get("chunk_id")): d for d in self.chunk_store.get(chunk_ids)}
            if len(found) == len(chunk_ids) or visible_ids(self.chunk_store) is not None:
                return [found[c] for c in chunk_ids if c in found]  # a cleared store: what it lacks is hidden
        rows = self.graph_store.query(
            "MATCH (c:Chunk) WHERE c.id IN $ids RETURN c.id AS id, c.text AS text, c.source AS source, c.page AS page",
            {"ids": chunk_ids},
        )
        by_id = {r["id"]: r for r in rows}
        return [
            Document(
                page_content=by_id[c]["text"] or "",
                id=c,
                metadata={"chunk_id": c, "source": by_id[c]["source"], "page": by_id[c]["page"]},
            )
            for c in chunk_ids
            if c in by_id
        ]

    # ------------------------------------------------------------------ public
    def retrieve(self, question: str, k: int | None = None) -> GraphRetrieval:
        k = k or self.k
        seeds = self.link_entities(question)
        distance, paths = self.neighbourhood([s["id"] for s in seeds]) if seeds else ({}, [])
        graph_docs = self.graph_documents(question, distance, paths, self.fetch_k, seeds)
        vector_docs: list[Document] = []
        if self.base and self.chunk_store is not None and len(self.chunk_store):
            from graphcraft.retrievers import make_retriever

            vector_docs = make_retriever(self.base, self.chunk_store, self.fetch_k).search(question, self.fetch_k)
        if vector_docs:
            fused = rrf_fuse([graph_docs, vector_docs], k=self.rrf_k, limit=k, names=["graph", self.base])
            graph_meta = {str(d.metadata.get("chunk_id")): d.metadata for d in graph_docs}
            for doc in fused:
                extra = graph_meta.get(str(doc.metadata.get("chunk_id")), {})
                doc.metadata["graph_paths"] = extra.get("graph_paths", [])
                if "graph_query" in extra:
                    doc.metadata["graph_query"] = extra["graph_query"]
                doc.metadata["retriever"] = "graph+" + self.base
        else:
            fused = graph_docs[:k]
        used_chunks = {str(d.metadata.get("chunk_id")) for d in fused}
        relevant = [p for p in paths if any(c in used_chunks for step in p.chunk_ids for c in step)]
        return GraphRetrieval(fused, seeds, relevant or paths[:5], graph_docs, vector_docs)

    def search(self, query: str, k: int | None = None) -> list[Document]:
        return self.retrieve(query, k).documents

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.search(query)


class _BridgeSearch:
    """One bridge retrieval: the seeds' co-mentions, the chunks scored so far and why (see graph_documents)."""

    def __init__(self, retriever: Any, question: str, seed_ids: list[str], seed_names: dict[str, str]) -> None:
        self.retriever, self.question, self.seed_ids, self.seed_names = retriever, question, seed_ids, seed_names
        self.store = retriever.chunk_store
        rows = retriever.graph_store.query(
            "MATCH (s:Entity)<-[:MENTIONS]-(c:Chunk)-[:MENTIONS]->(t:Entity) WHERE s.id IN $ids AND t.id <> s.id "
            "RETURN s.id AS s, s.aliases AS sa, c.id AS c, t.id AS t, t.name AS name, t.aliases AS ta",
            {"ids": seed_ids},
        )
        self.names: dict[str, str] = {r["t"]: r["name"] for r in rows}
        self.aliases = {r["t"]: [a.lower() for a in r["ta"] or [r["name"]]] for r in rows}
        self.aliases.update({r["s"]: [a.lower() for a in r["sa"] or []] for r in rows})
        self.seed_chunks: dict[str, set[str]] = {}
        self.pair_chunks: dict[tuple[str, str], set[str]] = {}
        for r in rows:
            self.seed_chunks.setdefault(r["s"], set()).add(r["c"])
            self.pair_chunks.setdefault((r["s"], r["t"]), set()).add(r["c"])
        self.qv = np.asarray(self.store.embeddings.embed_query(question), dtype=np.float32)
        self.asked = salient_terms(question)
        pair_ids = sorted({c for cs in self.pair_chunks.values() for c in cs})
        self.docs_by_id = {str(d.metadata.get("chunk_id")): d for d in self.store.get(pair_ids)}
        self.scored: dict[str, tuple[float, str]] = {}  # chunk id -> (score, why)
        self.rewritten_for: dict[str, str] = {}  # chunk id -> the question as asked of it
        self._sims: dict[str, float] = {}

    def sim(self, cid: str, vec: np.ndarray | None = None) -> float:
        """Cosine of a stored chunk and the question (memoised), or another query vector."""
        if vec is None and cid in self._sims:
            return self._sims[cid]
        v = self.store.chunk_vector(cid)
        value = float(v @ (self.qv if vec is None else vec)) if v is not None else 0.0
        if vec is None:
            self._sims[cid] = value
        return value

    def sentence_evidence(self, cid: str, seed: str, bridge: str) -> float:
        """How well the best stored sentence naming both entities matches the question
        (similarity plus the share of the question's words it contains)."""
        best = self.sim(cid) - 0.15  # same chunk, no shared sentence: weaker evidence
        doc = self.docs_by_id.get(cid)
        if doc is None:
            return best
        texts, vecs = self.store.strips(doc)
        for i, text in enumerate(texts):
            low = text.lower()
            if any(a in low for a in self.aliases.get(seed, [])) and any(
                a in low for a in self.aliases.get(bridge, [])
            ):
                semantic = float(vecs[i] @ self.qv) if vecs is not None else self.sim(cid)
                lexical = self.retriever.lexical_weight * coverage(self.asked, set(content_terms(text)))
                best = max(best, semantic + lexical)
        return best

    def bridges(self, related: set[str]) -> list[tuple[float, str, str, str]]:
        """(evidence, seed, bridge, best chunk) for every co-mentioned entity, strongest first."""
        found = []
        for (seed, bridge), chunks in self.pair_chunks.items():
            if bridge in self.seed_ids:
                continue
            evidences = {c: self.sentence_evidence(c, seed, bridge) for c in chunks}
            best = max(evidences, key=lambda c: evidences[c])
            found.append((evidences[best] + (0.05 if bridge in related else 0.0), seed, bridge, best))
        return sorted(found, key=lambda b: (-b[0], b[2]))

    def offer(self, cid: str, score: float, why: str, query: str) -> None:
        """Keep a chunk's best score, the step that found it and the query that reached it."""
        if score > self.scored.get(cid, (-1.0, ""))[0]:
            self.scored[cid] = (score, why)
            self.rewritten_for[cid] = query

    def second_hop(self, seed: str, bridge: str) -> None:
        """Score the chunks that mention the bridge but not the seed, asking with the bridge in the seed's place."""
        hop2 = self.retriever.graph_store.query(
            "MATCH (c:Chunk)-[:MENTIONS]->(b:Entity {id: $b}) WHERE NOT (c)-[:MENTIONS]->(:Entity {id: $s}) "
            "RETURN c.id AS c",
            {"b": bridge, "s": seed},
        )
        if not hop2:
            return
        seed_name, bridge_name = self.seed_names.get(seed, ""), self.names[bridge]
        question = self.question
        rewritten = re.sub(re.escape(seed_name), bridge_name, question, flags=re.IGNORECASE) if seed_name else question
        if rewritten == question:
            rewritten = f"{question} {bridge_name}"
        bv = np.asarray(self.store.embeddings.embed_query(rewritten), dtype=np.float32)
        wanted = salient_terms(rewritten)
        texts = {str(d.metadata.get("chunk_id")): d.page_content for d in self.store.get([r["c"] for r in hop2])}
        for row in hop2:
            # tables and lists embed poorly: the question's words in the chunk count too
            lexical = self.retriever.lexical_weight * coverage(wanted, set(content_terms(texts.get(row["c"], ""))))
            self.offer(row["c"], self.sim(row["c"], bv) + lexical, f"hop2:{seed}->{bridge}", rewritten)

    def annotate(self, doc: Document, via: dict[str, set[str]]) -> Document:
        """The chunk with its score, the step that found it and the graph paths that lead to it."""
        cid = str(doc.metadata.get("chunk_id"))
        score, why = self.scored[cid]
        hops = why.split(":", 1)[1].split("->") if ":" in why else []
        trail = (
            [f"{self.seed_names.get(hops[0], self.names.get(hops[0], hops[0]))} -> {self.names.get(hops[1], hops[1])}"]
            if len(hops) == 2
            else []
        )
        meta = {**doc.metadata, "score": round(score, 6), "retriever": "graph", "graph_step": why.split(":")[0],
                "graph_paths": trail + sorted(via.get(cid, set()))[:4]}  # fmt: skip
        if cid in self.rewritten_for:
            meta["graph_query"] = self.rewritten_for[cid]  # the question as asked of the second hop
        return Document(page_content=doc.page_content, id=doc.id, metadata=meta)
