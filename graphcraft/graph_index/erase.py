"""Erasing a subject from the entity graph and from the graph index's own files (see guards/erase.py).

In the graph: the chunk nodes of erased chunks, the entities whose name, aliases or keys name the
subject (descriptions that name it are blanked), relation evidence pointing at erased chunks
(relations left with none are deleted), entities no chunk mentions any more, and every community
summary drawn from an erased chunk or naming the subject (stale: `graphcraft graph build`
rebuilds communities from what remains). Then the database's own query log is deleted (FalkorDB
keeps recent queries with their parameters, which include chunk texts) and the backend is asked
to rewrite its files (FalkorDB: append-only file and snapshot).

Beside the store (``<store>/graph/``): cached extractions of erased chunks or naming the subject,
cached name vectors of such names, and the build fingerprint (cleared, so the next build runs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Matches = Callable[[str], bool]


def _names(row: dict[str, Any], keys: tuple[str, ...]) -> str:
    return json.dumps([row.get(k) for k in keys], ensure_ascii=False)


def erase_from_graph(graph: Any, chunk_ids: set[str], matches: Matches, dry_run: bool = False) -> dict[str, Any]:
    """Remove the subject and the erased chunks from `graph` (a GraphStore); counts of what was removed."""
    entities = graph.query("MATCH (e:Entity) RETURN e.id AS id, e.name AS name, e.aliases AS aliases, "
                           "e.keys AS keys, e.description AS description")  # fmt: skip
    named = sorted(r["id"] for r in entities if matches(_names(r, ("name", "aliases", "keys"))))
    described = sorted(r["id"] for r in entities if r["id"] not in named and matches(str(r.get("description") or "")))
    relations = graph.query(
        "MATCH (a:Entity)-[r:RELATED]->(b:Entity) RETURN a.id AS a, b.id AS b, r.type AS type, r.chunk_ids AS chunks"
    )
    changed = [
        {"a": r["a"], "b": r["b"], "type": r["type"], "chunks": [c for c in r["chunks"] or [] if c not in chunk_ids]}
        for r in relations
        if set(r["chunks"] or []) & chunk_ids
    ]
    communities = graph.query("MATCH (c:Community) RETURN c.id AS id, c.title AS title, c.summary AS summary, "
                              "c.chunk_ids AS chunk_ids, c.entity_names AS entity_names")  # fmt: skip
    stale = sorted(
        r["id"]
        for r in communities
        if set(r["chunk_ids"] or []) & chunk_ids or matches(_names(r, ("title", "summary", "entity_names")))
    )
    present = {
        r["id"] for r in graph.query("MATCH (c:Chunk) WHERE c.id IN $ids RETURN c.id AS id", {"ids": sorted(chunk_ids)})
    }
    report: dict[str, Any] = {
        "chunks": len(present),
        "entities_named": len(named),
        "descriptions_blanked": len(described),
        "relations_deleted": sum(1 for r in changed if not r["chunks"]),
        "relations_trimmed": sum(1 for r in changed if r["chunks"]),
        "communities_stale": len(stale),
    }
    if dry_run:
        return report
    graph.delete_chunks(sorted(present))
    graph.write("MATCH (e:Entity) WHERE e.id IN $ids DETACH DELETE e", {"ids": named})
    graph.write("MATCH (e:Entity) WHERE e.id IN $ids SET e.description = ''", {"ids": described})
    graph.write(
        "UNWIND $rows AS row MATCH (a:Entity {id: row.a})-[r:RELATED {type: row.type}]->(b:Entity {id: row.b}) "
        "WITH r, row WHERE size(row.chunks) = 0 DELETE r",
        {"rows": changed},
    )
    graph.write(
        "UNWIND $rows AS row MATCH (a:Entity {id: row.a})-[r:RELATED {type: row.type}]->(b:Entity {id: row.b}) "
        "WITH r, row WHERE size(row.chunks) > 0 SET r.chunk_ids = row.chunks",
        {"rows": changed},
    )
    graph.write("MATCH (c:Community) WHERE c.id IN $ids DETACH DELETE c", {"ids": stale})
    report["entities_orphaned"] = graph.delete_orphan_entities()
    report["query_log_records"] = graph.forget_query_log()  # it holds the parameters of the writes above too
    report["files"] = graph.persist_deletions()
    return report


def erase_from_index_state(state_dir: Path, chunk_ids: set[str], matches: Matches, dry_run: bool = False) -> dict:
    """Drop the erased chunks and the subject's names from the graph index's caches; force the next build."""
    report = {"extractions": 0, "name_vectors": 0}
    extractions = state_dir / "extractions.jsonl"
    if extractions.exists():
        lines = extractions.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and not _erased_row(line, chunk_ids, matches)]
        report["extractions"] = sum(1 for line in lines if line.strip()) - len(kept)
        if not dry_run and report["extractions"]:
            _replace(extractions, ("\n".join(kept) + "\n" if kept else "").encode("utf-8"))
    vectors = state_dir / "name_vectors.npz"
    if vectors.exists():
        with np.load(vectors, allow_pickle=False) as data:
            names, matrix = data["names"].tolist(), data["vectors"]
        keep = [i for i, name in enumerate(names) if not matches(str(name))]
        report["name_vectors"] = len(names) - len(keep)
        if not dry_run and report["name_vectors"]:
            tmp = vectors.with_name(f".{vectors.stem}.tmp-{os.getpid()}.npz")
            np.savez(tmp, names=np.asarray([names[i] for i in keep], dtype=str), vectors=matrix[keep])
            os.replace(tmp, vectors)
    state = state_dir / "state.json"
    if state.exists() and not dry_run and (report["extractions"] or chunk_ids):
        _replace(state, json.dumps({"fingerprint": "", "counts": {}, "chunk_ids": []}).encode())
    return report


def _erased_row(line: str, chunk_ids: set[str], matches: Matches) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        return matches(line)
    return row.get("chunk_id") in chunk_ids or matches(line)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
