"""The entity graph as a cleared caller sees it (see guards.access for classification and clearance).

The entity graph is built from the whole store, so its nodes carry text derived from chunks a
caller may not see: the chunks themselves, entity names and descriptions, relation evidence,
community summaries. `cleared_graph(graph, chunk_store)` wraps a GraphStore so that every row a
query returns is checked against what the cleared chunk store shows:

- a chunk the caller may not see is hidden, and so is everything derived from it alone: an entity
  no visible chunk mentions (its id, name, description), a community whose summary drew on any
  hidden chunk (its id, title, summary);
- a row that carries a hidden value anywhere (a column, a node's property, an item of a list) is
  dropped, except relation evidence (a ``chunks`` list), which keeps its visible chunks and is
  dropped only when none is left;
- an entity mentioned in both visible and hidden chunks stays, with its description blanked
  (it may have been written from a hidden chunk).

Values a query computes (``substring(c.text, 0, 9)``, ``count(*)``) cannot be traced back to their
node, so untrusted Cypher (Text2Cypher) should not run on a cleared graph; graphcraft's own
queries return whole properties, which this filter sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphcraft.guards.access import visible_ids

EVIDENCE_KEYS = frozenset({"chunks"})  # relation evidence lists: filtered rather than dropped


class ClearedGraph:
    """Read access to a GraphStore restricted to what a set of visible chunk ids supports."""

    def __init__(self, graph: Any, visible: set[str]) -> None:
        self.graph, self.visible = graph, visible
        self.hidden: set[str] | None = None  # every hidden id and text, computed on first query
        self.hidden_chunks: set[str] = set()
        self.tainted: set[str] = set()  # entities also mentioned by hidden chunks

    def __getattr__(self, name: str) -> Any:
        if name in {"write", "upsert_chunks", "upsert_entities", "upsert_relations", "upsert_mentions"}:
            raise AttributeError(f"a cleared graph is read-only: {name} is not available")
        return getattr(self.graph, name)  # counts, location, schema, close ...

    def _load(self) -> set[str]:
        run = self.graph.query
        chunks = run("MATCH (c:Chunk) RETURN c.id AS id, c.text AS text")
        self.hidden_chunks = {r["id"] for r in chunks if r["id"] not in self.visible}
        hidden = set(self.hidden_chunks) | {r["text"] for r in chunks if r["id"] in self.hidden_chunks and r["text"]}
        mentions = run(
            "MATCH (e:Entity) OPTIONAL MATCH (c:Chunk)-[:MENTIONS]->(e) "
            "RETURN e.id AS id, e.name AS name, e.description AS description, collect(c.id) AS chunks"
        )
        for row in mentions:
            seen = [c for c in row["chunks"] if c in self.visible]
            if not seen:
                hidden |= {v for v in (row["id"], row["name"], row["description"]) if v}
            elif len(seen) < len(row["chunks"]):
                self.tainted.add(row["id"])
        communities = run("MATCH (c:Community) RETURN c.id AS id, c.title AS title, c.summary AS summary, "
                          "c.chunk_ids AS chunk_ids")  # fmt: skip
        for row in communities:
            if set(row["chunk_ids"] or []) & self.hidden_chunks or not row["chunk_ids"]:
                hidden |= {v for v in (row["id"], row["title"], row["summary"]) if v}
        return hidden

    def query(self, cypher: str, params: Mapping[str, Any] | None = None, **options: Any) -> list[dict]:
        """The rows of a read query, without any row that carries a hidden value (see the module docstring)."""
        if self.hidden is None:
            self.hidden = self._load()
        out = []
        for row in self.graph.query(cypher, params, **options):
            kept = self._row(row)
            if kept is not None:
                out.append(kept)
        return out

    def _row(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        kept: dict[str, Any] = {}
        for key, value in row.items():
            if key in EVIDENCE_KEYS and isinstance(value, list):
                value = [v for v in value if v not in self.hidden_chunks]
                if not value:
                    return None
            elif self._carries_hidden(value):
                return None
            kept[key] = value
        if kept.get("id") in self.tainted and kept.get("description"):
            kept["description"] = ""
        return kept

    def _carries_hidden(self, value: Any, depth: int = 0) -> bool:
        assert self.hidden is not None
        if isinstance(value, str):
            return value in self.hidden
        if depth > 4:  # bounded: rows are shallow (nodes as dicts, lists of ids)
            return False
        if isinstance(value, Mapping):
            if value.get("id") in self.tainted and value.get("description"):
                return True  # a whole node whose description may come from a hidden chunk
            return any(self._carries_hidden(v, depth + 1) for v in value.values())
        if isinstance(value, list | tuple):
            return any(self._carries_hidden(v, depth + 1) for v in value)
        return False


def cleared_graph(graph: Any, chunk_store: Any) -> Any:
    """`graph` restricted to what `chunk_store` (a store from guards.access.cleared) shows; itself when
    that store is not restricted."""
    if graph is None or isinstance(graph, ClearedGraph):
        return graph
    visible = visible_ids(chunk_store) if chunk_store is not None else None
    return graph if visible is None else ClearedGraph(graph, visible)
