"""Erasure of a data subject (GDPR art. 17): every chunk that mentions them, and what was derived from it.

`erase_subject(store, "Jane Doe")` finds the subject case-insensitively as whole words (``Jane
Doe``, ``JANE DOE``, ``jane_doe`` in a file name; an e-mail address as itself) and removes:

- chunks: from the store's vector index and chunk records, and so from the keyword (BM25) and
  strip indexes, which are built from them. A file whose every chunk (or whose path) names the
  subject is removed; another keeps its remaining chunks (same content hash, so an unchanged file
  is not ingested again). The generation the erasure replaced is deleted too, so no older
  generation on disk still holds the text. The same in each multimodal store.
- summaries: the summary hierarchy's document and section nodes of every file touched, and every
  cluster that summarised an erased chunk (they are rebuilt from what remains on next use).
- the entity graph (graph_index/erase.py): erased chunks, entities naming the subject, relation
  evidence, stale community summaries; the graph database rewrites its files.
- the LLM response cache (SQLite) and the conversation checkpoints (SQLite): entries and
  threads holding the subject are deleted, then the file is vacuumed so the freed pages go too.
  A Redis cache or a PostgreSQL checkpointer is reported as not searched.
- the audit trail: fields naming the subject become tombstones; the chain still verifies
  (guards/audit.py), and an erasure entry, without the subject, records what was redacted.
- adaptive RAG's run log (feedback.sqlite): runs and feedback whose question names the subject.

The source files themselves are not touched: delete or correct them, or the next ingest of a
changed file brings the subject back.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graphcraft.config import Settings, cache_file, get_settings
from graphcraft.errors import GraphcraftError
from graphcraft.stores.vector import PARTIAL, ChunkStore

Matches = Callable[[str], bool]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ErasureError(GraphcraftError):
    """The subject cannot be searched for as given (empty, too short)."""


def subject_pattern(subject: str) -> re.Pattern[str]:
    """The subject as a case-insensitive whole-word pattern; words may be joined by spaces, _ . or -."""
    text = " ".join(subject.split())
    if len(text) < 3:
        raise ErasureError(f"subject {subject!r} is too short to erase safely: give a full name or an e-mail address")
    if _EMAIL.match(text):
        return re.compile(rf"(?<![\w.+-]){re.escape(text)}(?![\w-])", re.IGNORECASE)
    words = [re.escape(w) for w in text.split(" ")]
    return re.compile(r"(?<![^\W_])" + r"[\s_.\-]+".join(words) + r"(?![^\W_])", re.IGNORECASE)


@dataclass
class ErasureReport:
    """What was (or, with dry_run, would be) removed, per store."""

    subject_found: bool = False
    dry_run: bool = False
    chunks: dict[str, Any] = field(default_factory=dict)  # per chunk store: main, multimodal/<modality>
    hierarchy: dict[str, int] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    llm_cache: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, Any] = field(default_factory=dict)
    feedback: dict[str, int] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ chunk stores


def _chunk_names(doc: Any, matches: Matches) -> bool:
    meta = doc.metadata
    return matches(doc.page_content) or any(
        matches(str(meta.get(k) or "")) for k in ("source", "section", "title", "caption")
    )


def erase_chunks(store: ChunkStore, matches: Matches, dry_run: bool = False) -> tuple[dict[str, int], set[str]]:
    """Remove the chunks naming the subject (whole files when every chunk or the path does); counts and ids."""
    erased: set[str] = set()
    counts = {"files_removed": 0, "files_rewritten": 0, "chunks_removed": 0}
    for source, entry in list(store.files.items()):
        docs = store.get(entry.get("chunk_ids", []))
        hits = {str(d.metadata["chunk_id"]) for d in docs if _chunk_names(d, matches)}
        if matches(source):
            hits = {str(d.metadata["chunk_id"]) for d in docs}
        if not hits:
            continue
        erased |= hits
        counts["chunks_removed"] += len(hits)
        keep = [d for d in docs if str(d.metadata["chunk_id"]) not in hits]
        counts["files_rewritten" if keep else "files_removed"] += 1
        if dry_run:
            continue
        if not keep:
            store.remove_file(source)
            continue
        _rewrite(store, source, entry, keep)
    if erased and not dry_run:
        _commit_and_purge(store, matches)
    return counts, erased


def _rewrite(store: ChunkStore, source: str, entry: dict[str, Any], keep: list[Any]) -> None:
    """Replace a file's chunks with `keep`, reusing their stored vectors (no re-embedding)."""
    ids = [str(d.metadata["chunk_id"]) for d in keep]
    vectors = [store.chunk_vector(i) for i in ids]
    strips = [store.strip_vectors.get(i) for i in ids]
    file_hash = str(entry.get("hash", ""))
    info = {k: v for k, v in entry.items() if k not in ("hash", "chunk_ids", "ingested")}
    store.replace_file(
        source,
        file_hash.removeprefix(PARTIAL),
        keep,
        np.stack([np.asarray(v, dtype=np.float32) for v in vectors if v is not None]),
        None if any(s is None for s in strips) else [s for s in strips if s is not None],
        complete=not file_hash.startswith(PARTIAL),
        info=info,
    )


def _commit_and_purge(store: ChunkStore, matches: Matches) -> None:
    """Commit, then commit again so the generation holding the subject is deleted as superseded;
    any other generation folder that still names the subject is deleted as well."""
    from graphcraft.stores.generations import generation_names, read_current, write_lock

    store.commit()
    store.mark_dirty()
    store.commit()
    with write_lock(store.path):
        current = read_current(store.path)
        for name in generation_names(store.path):
            if name != current and _folder_names(store.path / name, matches):
                shutil.rmtree(store.path / name, ignore_errors=True)


def _folder_names(folder: Path, matches: Matches) -> bool:
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in {".jsonl", ".json"}:
            if matches(path.read_text(encoding="utf-8", errors="replace")):
                return True
    return False


# ------------------------------------------------------------------------------ derived stores


def erase_hierarchy(store: ChunkStore, touched: set[str], erased: set[str], matches: Matches, dry_run: bool) -> dict:
    """Drop the summary nodes of touched files and the clusters of erased chunks (rebuilt on next use)."""
    from graphcraft.ingestion.hierarchy import hierarchy_path, open_hierarchy, tree_of
    from graphcraft.stores.generations import was_ingested

    if not was_ingested(hierarchy_path(store)):
        return {}
    hier = open_hierarchy(store, create=False)
    tree = tree_of(hier)
    documents = [s for s in tree["documents"] if s in touched or matches(json.dumps(tree["documents"][s]))]
    clusters = [
        c
        for c, entry in tree["clusters"].items()
        if set(entry.get("members", [])) & erased or any(_chunk_names(d, matches) for d in hier.get([c]))
    ]
    report = {"documents_stale": len(documents), "clusters_removed": len(clusters), "nodes_removed": 0}
    if dry_run or not (documents or clusters):
        return report
    for key in [*documents, *clusters]:
        report["nodes_removed"] += hier.remove_file(key)
    for source in documents:
        del tree["documents"][source]
    for cid in clusters:
        del tree["clusters"][cid]
    tree["unclustered_new"] = sorted(set(tree.get("unclustered_new", [])) - erased)
    hier.mark_dirty()
    _commit_and_purge(hier, matches)
    return report


def erase_sqlite_rows(path: Path, table: str, columns: list[str], matches: Matches, dry_run: bool) -> int:
    """Delete the rows of `table` in which any of `columns` names the subject, then VACUUM; rows deleted."""
    if not path.exists():
        return 0
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        known = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if table not in known:
            return 0
        cols = ", ".join(f'"{c}"' for c in columns)
        rows = conn.execute(f'SELECT rowid, {cols} FROM "{table}"').fetchall()  # noqa: S608 - fixed names
        doomed = [r[0] for r in rows if any(matches(_text(v)) for v in r[1:])]
        if doomed and not dry_run:
            conn.executemany(f'DELETE FROM "{table}" WHERE rowid = ?', [(r,) for r in doomed])  # noqa: S608
            conn.commit()
            _vacuum(conn)
    return len(doomed)


def _vacuum(conn: sqlite3.Connection) -> None:
    """Deleted rows otherwise stay readable in free pages and in the write-ahead log."""
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def erase_checkpoints(path: Path, matches: Matches, dry_run: bool) -> dict[str, int]:
    """Delete every conversation thread whose checkpoints or pending writes name the subject."""
    if not path.exists():
        return {"threads": 0}
    threads: set[str] = set()
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        known = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in (("checkpoints", "checkpoint"), ("checkpoints", "metadata"), ("writes", "value")):
            if table in known:
                for thread, blob in conn.execute(f'SELECT thread_id, "{column}" FROM "{table}"'):  # noqa: S608
                    if matches(_text(blob)):
                        threads.add(str(thread))
        if threads and not dry_run:
            for table in ("checkpoints", "writes"):
                if table in known:
                    conn.executemany(f'DELETE FROM "{table}" WHERE thread_id = ?', [(t,) for t in threads])  # noqa: S608
            conn.commit()
            _vacuum(conn)
    return {"threads": len(threads)}


def erase_subject(
    store: str | Path | ChunkStore,
    subject: str,
    *,
    settings: Settings | None = None,
    dry_run: bool = False,
    graph_store: Any = None,
) -> ErasureReport:
    """Erase `subject` from every store under the store directory; see the module docstring."""
    from graphcraft.stores.generations import was_ingested
    from graphcraft.stores.vector import open_store

    pattern = subject_pattern(subject)
    matches: Matches = lambda text: pattern.search(text) is not None  # noqa: E731
    chunk_store = store if isinstance(store, ChunkStore) else None
    root = store.path if isinstance(store, ChunkStore) else Path(store)
    settings = settings or get_settings(store=root)
    report = ErasureReport(dry_run=dry_run)
    erased: set[str] = set()
    if chunk_store is not None or was_ingested(root):
        chunk_store = getattr(chunk_store, "base", chunk_store) or open_store(root, settings, create=False)
        before = dict(chunk_store.files)
        report.chunks["main"], erased = erase_chunks(chunk_store, matches, dry_run)
        touched = {s for s, e in before.items() if set(e.get("chunk_ids", [])) & erased}
        report.hierarchy = erase_hierarchy(chunk_store, touched, erased, matches, dry_run)
    erased |= _erase_multimodal(root, settings, matches, dry_run, report)
    report.graph = _erase_graph(root, settings, erased, matches, dry_run, graph_store)
    _erase_side_stores(root, settings, matches, dry_run, report)
    from graphcraft.guards.audit import redact

    redaction = redact(root, matches, dry_run=dry_run)
    report.audit = {"entries": redaction.entries, "fields": redaction.fields, "erasure_entry": redaction.erasure_seq}
    report.subject_found = bool(
        erased or redaction.entries or any(report.graph.get(k) for k in ("entities_named", "descriptions_blanked"))
        or any(report.llm_cache.values()) or report.checkpoints.get("threads") or any(report.feedback.values())
    )  # fmt: skip
    return report


def _erase_multimodal(root: Path, settings: Settings, matches: Matches, dry_run: bool, report: ErasureReport) -> set:
    from graphcraft.retrievers.multimodal import MODALITIES, modality_store_path
    from graphcraft.stores.generations import was_ingested
    from graphcraft.stores.vector import open_store

    erased: set[str] = set()
    for modality in MODALITIES:
        path = modality_store_path(root, modality)
        if was_ingested(path):
            counts, ids = erase_chunks(open_store(path, settings, create=False), matches, dry_run)
            report.chunks[f"multimodal/{modality}"] = counts
            erased |= ids
    return erased


def _erase_graph(
    root: Path, settings: Settings, erased: set[str], matches: Matches, dry_run: bool, graph: Any
) -> dict[str, Any]:
    """The entity graph, when the store has one (a FalkorDB folder, a given graph store, or Neo4j)."""
    from graphcraft.graph_index.build import STATE_DIR
    from graphcraft.graph_index.erase import erase_from_graph, erase_from_index_state

    state_dir = root / STATE_DIR
    if graph is None and not settings.neo4j_uri and not (root / "falkordb").exists():
        return {}
    own = graph is None
    if own:
        from graphcraft.stores.graph import open_graph_store

        graph = open_graph_store(root, settings=settings)
    try:
        result = erase_from_graph(graph, erased, matches, dry_run)
    finally:
        if own:
            graph.close()
    result["index_cache"] = erase_from_index_state(state_dir, erased, matches, dry_run)
    return result


def _erase_side_stores(root: Path, settings: Settings, matches: Matches, dry_run: bool, report: ErasureReport) -> None:
    """LLM cache, checkpoints and adaptive RAG's run log."""
    from graphcraft.memory.checkpoints import DEFAULT_FILE
    from graphcraft.memory.feedback import FEEDBACK_FILE

    cache = cache_file(settings) or root / "llm_cache.sqlite"
    report.llm_cache = {"entries": erase_sqlite_rows(cache, "full_llm_cache", ["prompt", "response"], matches, dry_run)}
    if settings.redis_url:
        report.notes.append("the Redis LLM cache was not searched: flush it (FLUSHDB) to be sure")
    report.checkpoints = erase_checkpoints(root / DEFAULT_FILE, matches, dry_run)
    if settings.postgres_uri:
        report.notes.append("PostgreSQL checkpoints were not searched: delete the subject's threads there")
    feedback = root / FEEDBACK_FILE
    report.feedback = {
        table: erase_sqlite_rows(feedback, table, ["question"], matches, dry_run) for table in ("runs", "feedback")
    }
    report.notes.append("source files are not touched: delete or correct them before the next ingest")
