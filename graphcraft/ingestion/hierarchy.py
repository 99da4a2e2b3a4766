"""A summary hierarchy over a chunk store: document summary -> section -> chunk (+ RAPTOR clusters).

Layout: the hierarchy lives beside the chunks, in ``<store>/hierarchy/``, as its own ChunkStore
(same embedding model, same crash-safe generations). Its nodes are Documents with
``metadata["level"]`` in {"document", "section", "cluster"}; the tree itself (which sections
belong to which document, which chunks to which section or cluster) is kept in that store's
manifest under ``"tree"``, so nodes and tree are committed together, atomically.

- Document and section nodes are keyed by the file's content hash: a document whose hash is
  unchanged is never summarised again; a changed file is rebuilt; a removed file is dropped.
- Sections are the markdown sections recorded at ingest (``section`` metadata), else PDF pages,
  else runs of ``section_group`` consecutive chunks.
- Clusters (RAPTOR, Sarthi et al. 2024, one layer): chunks are clustered by cosine
  (agglomerative, average linkage) and every cluster spanning at least two documents becomes a
  summary node (same-document clusters would repeat its sections). Incremental rule: a new chunk
  close to an existing cluster's centroid joins it WITHOUT re-summarising it (it is, by that
  test, already described by the summary); the remaining new chunks form new clusters. A cluster
  that loses a summarised member (file changed or removed) is dropped and its chunks re-clustered;
  one that loses only joined members keeps its summary.

Summaries come from `chains.summarize` (chat model when given, else extractive from the stored
strip vectors). `build_hierarchy(store, settings, model)` updates it explicitly;
`ensure_hierarchy` does so lazily, the first time a hierarchical retriever needs it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel

from graphcraft.chains.summarize import Summary, summarize
from graphcraft.config import Settings, get_settings
from graphcraft.ingestion.splitting import sha256
from graphcraft.ingestion.strips import embed_chunks, split_strips
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.stores.vector import ChunkStore

HIERARCHY_DIR = "hierarchy"
TREE_VERSION = 1

Summarizer = Callable[..., Summary]


@dataclass
class HierarchyReport:
    documents: int = 0  # documents in the hierarchy after the update
    built: int = 0  # documents (re)summarised in this update
    unchanged: int = 0
    removed: int = 0
    sections: int = 0  # section nodes written in this update
    summaries: int = 0  # summarise calls made in this update
    clusters_new: int = 0
    clusters_kept: int = 0
    clusters_dropped: int = 0
    chunks_joined: int = 0  # new chunks attached to an existing cluster without re-summarising it
    unclustered: int = 0
    strategy: str = "extractive"
    usage: Usage = field(default_factory=empty_usage)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------- opening


def hierarchy_path(store: ChunkStore) -> Path:
    return Path(store.path) / HIERARCHY_DIR


def open_hierarchy(store: ChunkStore, create: bool = True) -> ChunkStore:
    """The hierarchy store of `store` (same embedding model), empty if never built."""
    manifest = store.manifest
    return ChunkStore.open(
        hierarchy_path(store), store.embeddings, manifest["embedding_model"], int(manifest["dimension"]), create=create
    )


def tree_of(hier: ChunkStore) -> dict[str, Any]:
    """The tree kept in the hierarchy manifest: documents -> sections -> chunks, and clusters."""
    tree = hier.manifest.setdefault("tree", {})
    tree.setdefault("version", TREE_VERSION)
    tree.setdefault("documents", {})
    tree.setdefault("clusters", {})
    tree.setdefault("source_generation", -1)
    return tree


def is_current(store: ChunkStore, hier: ChunkStore) -> bool:
    """True when every stored file is summarised at its current content hash, and no other."""
    docs = tree_of(hier)["documents"]
    return {s: e["hash"] for s, e in store.files.items()} == {s: e["hash"] for s, e in docs.items()}


# ------------------------------------------------------------------------------- sections


def section_groups(chunks: list[Document], group: int = 4) -> list[tuple[str, list[Document]]]:
    """(title, chunks) in reading order: markdown sections, else pages, else runs of `group` chunks."""
    groups: list[tuple[str, list[Document]]] = []
    for chunk in chunks:
        meta = chunk.metadata
        if meta.get("section"):
            key = str(meta["section"])
        elif meta.get("page") is not None:
            key = f"page {meta['page']}"
        else:
            key = f"part {int(meta.get('chunk_index', 0)) // max(1, group) + 1}"
        if groups and groups[-1][0] == key:
            groups[-1][1].append(chunk)
        else:
            groups.append((key, [chunk]))
    return groups


def _strips_of(store: ChunkStore, chunks: list[Document]) -> tuple[list[str], np.ndarray | None]:
    texts: list[str] = []
    blocks: list[np.ndarray] = []
    complete = True
    for chunk in chunks:
        strips, vecs = store.strips(chunk)
        texts += strips
        if vecs is None:
            complete = False
        else:
            blocks.append(vecs)
    return texts, (np.concatenate(blocks) if complete and blocks else None)


def _title(source: str, groups: list[tuple[str, list[Document]]]) -> str:
    first = groups[0][0] if groups else ""
    if first and not first.startswith(("page ", "part ")):
        return first.split(" > ")[0].lstrip("# ").strip()
    return Path(source).stem.replace("_", " ")


def _node(text: str, node_id: str, level: str, source: str, **meta: Any) -> Document:
    metadata = {
        "source": source,
        "chunk_id": node_id,
        "page": None,
        "modality": "text",
        "content_hash": sha256(text),
        "level": level,
        "strips": [list(s) for s in split_strips(text)],
        **meta,
    }
    return Document(page_content=text, metadata=metadata, id=node_id)


# ------------------------------------------------------------------------------- building


class _Builder:
    """One update of the hierarchy; counts the summaries it makes."""

    def __init__(
        self,
        store: ChunkStore,
        hier: ChunkStore,
        model: BaseChatModel | None,
        summarizer: Summarizer,
        report: HierarchyReport,
        section_group: int,
        max_sentences: int,
    ) -> None:
        self.store, self.hier, self.model, self.summarizer = store, hier, model, summarizer
        self.report, self.section_group, self.max_sentences = report, section_group, max_sentences
        self.pending: list[tuple[str, str, list[Document]]] = []
        self.tree_changed = False  # a tree edit that writes no node (members joining or leaving a cluster)

    def summary(
        self, sentences: list[str], vectors: np.ndarray | None, kind: str, title: str, max_sentences: int | None = None
    ) -> str:
        from graphcraft.models import embed_texts

        result = self.summarizer(
            sentences,
            vectors,
            self.model,
            kind=kind,
            title=title,
            max_sentences=max_sentences or self.max_sentences,
            embed=lambda texts: embed_texts(self.store.embeddings, texts),
        )
        self.report.summaries += 1
        self.report.usage = add_usage(self.report.usage, result.usage)
        if result.strategy != "extractive":
            self.report.strategy = result.strategy
        return result.text

    def write(self, key: str, key_hash: str, nodes: list[Document]) -> None:
        """Queue a file's nodes; `flush` embeds every queued node in one batched pass."""
        self.pending.append((key, key_hash, nodes))

    def flush(self) -> None:
        nodes = [n for _, _, group in self.pending for n in group]
        if not nodes:
            return
        vectors, strip_vectors = embed_chunks(
            self.store.embeddings, [n.page_content for n in nodes], [n.metadata["strips"] for n in nodes]
        )
        offset = 0
        for key, key_hash, group in self.pending:
            end = offset + len(group)
            self.hier.replace_file(key, key_hash, group, vectors[offset:end], strip_vectors[offset:end])
            offset = end
        self.pending = []

    def document(self, source: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Summarise one document and its sections; returns its tree entry."""
        file_hash = entry["hash"]
        chunks = sorted(self.store.get(entry["chunk_ids"]), key=lambda c: int(c.metadata.get("chunk_index", 0)))
        groups = section_groups(chunks, self.section_group)
        title = _title(source, groups)
        doc_id = f"doc:{file_hash[:16]}"
        sections: list[Document] = []
        for i, (name, members) in enumerate(groups):
            sentences, vectors = _strips_of(self.store, members)
            text = self.summary(sentences, vectors, "section", name)
            sec_title = name.split(" > ")[-1].lstrip("# ").strip()
            sections.append(
                _node(
                    f"{sec_title}: {text}" if text else sec_title,
                    f"sec:{file_hash[:16]}:{i:03d}",
                    "section",
                    source,
                    title=name,
                    parent=doc_id,
                    children=[c.metadata["chunk_id"] for c in members],
                    doc_hash=file_hash,
                )
            )
        if len(sections) == 1:
            doc_text = sections[0].page_content
        elif self.model is not None:  # abstractive: summarise the section summaries (RAPTOR-like, fewer tokens)
            doc_text = self.summary([s.page_content for s in sections], None, "document", title)
        else:  # extractive: the document's central sentences, from the stored strip vectors
            sentences, vectors = _strips_of(self.store, chunks)
            doc_text = self.summary(sentences, vectors, "document", title, self.max_sentences + 1)
        doc = _node(
            f"{title}: {doc_text}",
            doc_id,
            "document",
            source,
            title=title,
            children=[s.metadata["chunk_id"] for s in sections],
            doc_hash=file_hash,
        )
        self.write(source, file_hash, [doc, *sections])
        self.report.sections += len(sections)
        return {
            "hash": file_hash,
            "node": doc_id,
            "title": title,
            "sections": [
                {"node": s.metadata["chunk_id"], "title": s.metadata["title"], "chunks": s.metadata["children"]}
                for s in sections
            ],
        }

    # --------------------------------------------------------------- RAPTOR clusters
    def clusters(
        self, fresh: set[str], join_threshold: float, cluster_threshold: float, min_sources: int, max_size: int
    ) -> None:
        """Update the cluster layer for the chunks in `fresh` (new or changed files); see module docstring."""
        tree = tree_of(self.hier)
        live = set(self._chunk_ids())
        for cid, cluster in list(tree["clusters"].items()):
            joined = set(cluster.get("joined", []))
            if not set(cluster["members"]) - joined <= live:  # a summarised member changed or left: re-cluster the rest
                self.hier.remove_file(cid)
                del tree["clusters"][cid]
                fresh |= set(cluster["members"]) & live
                self.report.clusters_dropped += 1
            elif not joined <= live:  # only unsummarised members left: the summary still holds
                cluster["members"] = [m for m in cluster["members"] if m in live]
                cluster["joined"] = [m for m in cluster["joined"] if m in live]
                self.tree_changed = True
        assigned = {m for c in tree["clusters"].values() for m in c["members"]}
        fresh = {c for c in fresh if c in live and c not in assigned}
        unclustered = [c for c in self._chunk_ids() if c not in assigned]
        vectors: dict[str, np.ndarray] = {}
        for cid in unclustered:
            vector = self.store.chunk_vector(cid)
            assert vector is not None, cid  # every chunk id the store's files list has a row in its index
            vectors[cid] = vector
        if tree["clusters"] and fresh:  # new chunks close to an existing cluster join it, unsummarised
            ids = list(tree["clusters"])
            centroids = np.stack([self._centroid(tree["clusters"][c]["members"]) for c in ids])
            for chunk_id in sorted(fresh):
                sims = centroids @ vectors[chunk_id]
                best = int(np.argmax(sims))
                if sims[best] >= join_threshold and len(tree["clusters"][ids[best]]["members"]) < max_size:
                    tree["clusters"][ids[best]]["members"].append(chunk_id)
                    tree["clusters"][ids[best]].setdefault("joined", []).append(chunk_id)
                    fresh.discard(chunk_id)
                    self.report.chunks_joined += 1
                    self.tree_changed = True
        self.report.clusters_kept = len(tree["clusters"])
        joined = {m for c in tree["clusters"].values() for m in c.get("joined", [])}
        candidates = [c for c in unclustered if c not in joined]
        for members in self._cluster(candidates, vectors, cluster_threshold, max_size) if fresh else []:
            if not fresh & set(members):  # an old grouping that was already rejected: nothing new to say
                continue
            docs = self.store.get(members)
            if len({d.metadata.get("source") for d in docs}) < min_sources:
                continue
            key = sha256("\n".join(sorted(d.metadata["content_hash"] for d in docs)))
            cid = f"cluster:{key[:16]}"
            sentences, vecs = _strips_of(self.store, docs)
            text = self.summary(sentences, vecs, "group of related passages", "")
            sources = Counter(str(d.metadata.get("source")) for d in docs)
            node = _node(text, cid, "cluster", sources.most_common(1)[0][0], sources=sorted(sources), children=members)
            self.write(cid, key, [node])
            tree["clusters"][cid] = {"members": members, "sources": sorted(sources)}
            self.report.clusters_new += 1
        clustered = {m for c in tree["clusters"].values() for m in c["members"]}
        self.report.unclustered = sum(1 for c in self._chunk_ids() if c not in clustered)

    def _chunk_ids(self) -> list[str]:
        return [cid for entry in self.store.files.values() for cid in entry["chunk_ids"]]

    def _centroid(self, members: list[str]) -> np.ndarray:
        vecs = np.stack([v for v in (self.store.chunk_vector(m) for m in members) if v is not None])
        mean = vecs.mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    @staticmethod
    def _cluster(ids: list[str], vectors: dict[str, np.ndarray], threshold: float, max_size: int) -> list[list[str]]:
        """Groups of at least two chunks whose average cosine distance is under `threshold`."""
        if len(ids) < 2:
            return []
        from sklearn.cluster import AgglomerativeClustering

        matrix = np.stack([vectors[i] for i in ids])
        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
        ).fit_predict(matrix)
        groups: dict[int, list[str]] = {}
        for chunk_id, label in zip(ids, labels, strict=False):
            groups.setdefault(int(label), []).append(chunk_id)
        out = []
        for members in groups.values():  # oversized groups are cut in reading order, never dropped
            out += [
                members[i : i + max_size]
                for i in range(0, len(members), max_size)
                if len(members[i : i + max_size]) >= 2
            ]
        return out


_LOCK = threading.Lock()


def _update_documents(
    store: ChunkStore, hier: Any, tree: dict[str, Any], builder: Any, report: HierarchyReport, commit_every: int
) -> set[str]:
    """Drop removed files' trees, summarise new or changed files; returns the chunk ids summarised now."""
    for source in [s for s in tree["documents"] if s not in store.files]:
        hier.remove_file(source)
        del tree["documents"][source]
        report.removed += 1
    fresh: set[str] = set()
    for source, entry in store.files.items():
        if tree["documents"].get(source, {}).get("hash") == entry["hash"]:
            report.unchanged += 1
            continue
        tree["documents"][source] = builder.document(source, entry)
        fresh |= set(entry["chunk_ids"])
        report.built += 1
        if len(builder.pending) >= commit_every:  # nodes and their tree entries land together
            tree["unclustered_new"] = sorted(fresh | set(tree.get("unclustered_new", [])))
            builder.flush()
            hier.commit()
    return fresh


def build_hierarchy(
    store: ChunkStore,
    settings: Settings | None = None,
    model: BaseChatModel | None = None,
    *,
    summarizer: Summarizer | None = None,
    clusters: bool | None = None,
    section_group: int = 4,
    max_sentences: int = 3,
    join_threshold: float | None = None,
    cluster_threshold: float | None = None,
    min_cluster_sources: int = 2,
    max_cluster_size: int = 8,
    commit_every: int = 8,
) -> HierarchyReport:
    """Bring `<store>/hierarchy/` up to date with the store; only new or changed files are summarised.

    model: chat model for abstractive summaries (None: extractive). summarizer: replaces
    `chains.summarize.summarize` (same signature), e.g. to count or cache calls.
    clusters: build the RAPTOR cluster layer (default True). cluster_threshold: cosine distance
    under which chunks cluster (0.5); join_threshold: cosine to a cluster centroid above which a
    new chunk joins that cluster (0.6). Unset values come from Settings fields hierarchy_* when
    they exist. Work is committed every `commit_every` documents, so an interrupted build resumes.
    """
    settings = settings or get_settings()
    clusters = bool(getattr(settings, "hierarchy_clusters", True)) if clusters is None else clusters
    join_threshold = getattr(settings, "hierarchy_join_threshold", 0.6) if join_threshold is None else join_threshold
    cluster_threshold = (
        getattr(settings, "hierarchy_cluster_threshold", 0.5) if cluster_threshold is None else cluster_threshold
    )
    store = getattr(store, "base", store)  # a cleared view (guards.access): the tree covers the whole store
    started = time.perf_counter()
    report = HierarchyReport(strategy="llm" if model is not None else "extractive")
    with _LOCK:
        hier = open_hierarchy(store)
        tree = tree_of(hier)
        builder = _Builder(store, hier, model, summarizer or summarize, report, section_group, max_sentences)
        fresh = _update_documents(store, hier, tree, builder, report, commit_every)
        fresh |= set(tree.pop("unclustered_new", []))  # new chunks of an interrupted build, committed but not clustered
        if clusters:
            builder.clusters(fresh, join_threshold, cluster_threshold, min_cluster_sources, max_cluster_size)
        elif tree["clusters"]:
            for cid in list(tree["clusters"]):
                hier.remove_file(cid)
            report.clusters_dropped = len(tree["clusters"])
            tree["clusters"] = {}
        builder.flush()
        report.documents = len(tree["documents"])
        if tree.get("source_generation") != store.generation or builder.tree_changed:
            tree["source_generation"] = store.generation
            hier.mark_dirty()  # the tree lives in the manifest; persist it with the next generation
        hier.commit()
        _CACHE.pop(str(hierarchy_path(store)), None)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


# ------------------------------------------------------------------------------- lazy use

_CACHE: dict[str, tuple[tuple[int, int], ChunkStore]] = {}


def update_if_stale(
    store: ChunkStore, settings: Settings | None = None, model: BaseChatModel | None = None, **options: Any
) -> HierarchyReport | None:
    """Build or update the hierarchy when the store changed since; None when it was current.

    Given a cleared view (guards.access), the tree is built over the whole store, extractively:
    a run with a lowered clearance never sends a chunk above it to a model, not even to summarise."""
    if getattr(store, "base", None) is not None:
        store, model = store.base, None  # type: ignore[attr-defined]
    cached = _CACHE.get(str(hierarchy_path(store)))
    if cached is not None and cached[0] == (store.instance, store.generation):
        return None
    if is_current(store, open_hierarchy(store)):
        return None
    return build_hierarchy(store, settings, model, **options)


def ensure_hierarchy(
    store: ChunkStore, settings: Settings | None = None, model: BaseChatModel | None = None, **options: Any
) -> ChunkStore:
    """The up-to-date hierarchy store of `store`, built or updated first if needed (cached per generation)."""
    if getattr(store, "base", None) is not None:  # a cleared view: see update_if_stale
        store, model = store.base, None  # type: ignore[attr-defined]
    key = str(hierarchy_path(store))
    cached = _CACHE.get(key)
    stamp = (store.instance, store.generation)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    update_if_stale(store, settings, model, **options)
    hier = open_hierarchy(store)
    _CACHE[key] = (stamp, hier)
    return hier
