"""Graph store: one interface, two backends (FalkorDB by default, Neo4j) running the same Cypher.

The entity graph has three node labels and four relationship types::

    (:Chunk {id, source, page, text, content_hash})
    (:Entity {id, name, type, aliases, description, embedding, ...})
    (:Community {id, level, title, summary, size, rank})
    (:Chunk)-[:MENTIONS {count}]->(:Entity)
    (:Entity)-[:RELATED {type, weight, chunk_ids}]->(:Entity)
    (:Entity)-[:IN_COMMUNITY]->(:Community)
    (:Community)-[:PARENT]->(:Community)

Relation types are a property rather than the relationship type so that every write stays a
parameterised query (Cypher cannot take a relationship type as a parameter).

Every write goes through the helpers below with ``UNWIND $rows`` parameters; nothing is
interpolated into Cypher text except labels read back from the database itself (quoted).
Queries from untrusted text (Text2Cypher) must go through :mod:`graphcraft.guards.cypher`
first; the store then runs them on the backend's read-only path (GRAPH.RO_QUERY on FalkorDB,
a READ access-mode transaction on Neo4j) as a second line of defence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from graphcraft.errors import StoreError
from graphcraft.stores.falkordb_server import GraphStoreUnavailableError

__all__ = [
    "GraphStore",
    "GraphQueryError",
    "GraphStoreUnavailableError",
    "open_graph_store",
    "COUNT_KEYS",
    "HIDDEN_PROPERTIES",
]

COUNT_KEYS = ("entities", "relations", "chunks", "communities")
HIDDEN_PROPERTIES = frozenset({"embedding"})  # too large for results and prompts
BATCH = 500
DEFAULT_TIMEOUT_MS = 10_000


class GraphQueryError(StoreError):
    """The database refused or failed a query (syntax error, timeout, read-only violation)."""


def _batches(rows: Sequence[dict], size: int = BATCH) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def _props(row: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """Row values that become node/edge properties: no None (a null property is no property)."""
    dropped = set(drop)
    return {k: v for k, v in row.items() if k not in dropped and v is not None}


def _quote_name(name: str) -> str | None:
    """A label/type read back from the database, quoted for Cypher; None when it cannot be quoted."""
    return None if "`" in name or not name else f"`{name}`"


class GraphStore(ABC):
    """What graph RAG needs from a graph database. Backends implement `_run`, `ensure_schema`, `close`."""

    backend: str = ""

    def __init__(self, default_timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self.default_timeout_ms = default_timeout_ms

    # -- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def _run(self, cypher: str, params: dict[str, Any], read_only: bool, timeout_ms: int | None) -> list[dict]:
        """Run one statement; rows as plain dicts (nodes/edges/paths converted)."""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the indexes the write helpers and retrievers rely on (idempotent)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (and stop a server this store started)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives, for messages."""

    # -- queries -------------------------------------------------------------------------
    def query(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        read_only: bool = True,
        timeout_ms: int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Run Cypher with parameters; read-only by default (the backend enforces it).

        ``limit`` caps the rows returned to the caller (the guard also rewrites LIMIT in
        the query so the database does not produce more). ``timeout_ms`` defaults to the
        store's default for read queries.
        """
        if read_only and timeout_ms is None:
            timeout_ms = self.default_timeout_ms
        rows = self._run(cypher, dict(params or {}), read_only, timeout_ms)
        return rows[:limit] if limit is not None else rows

    def write(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        """Run a parameterised write statement (for graphcraft's own code, never for model output)."""
        return self._run(cypher, dict(params or {}), False, None)

    def _scalar(self, cypher: str, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.query(cypher, params)
        return next(iter(rows[0].values())) if rows else None

    # -- write helpers -------------------------------------------------------------------
    def upsert_chunks(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Chunk nodes keyed by ``id`` (the chunk_id); other keys become properties."""
        data = [{"id": str(r["id"]), "props": _props(r, ["id"])} for r in rows]
        for batch in _batches(data):
            self.write("UNWIND $rows AS row MERGE (c:Chunk {id: row.id}) SET c += row.props", {"rows": batch})
        return len(data)

    def upsert_entities(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Entity nodes keyed by ``id``; name, type, aliases, description, embedding ... as properties."""
        data = [{"id": str(r["id"]), "props": _props(r, ["id"])} for r in rows]
        for batch in _batches(data):
            self.write("UNWIND $rows AS row MERGE (e:Entity {id: row.id}) SET e += row.props", {"rows": batch})
        return len(data)

    def upsert_relations(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """RELATED edges keyed by (source, target, type); weight, chunk_ids ... replace old values."""
        data = [
            {
                "s": str(r["source"]),
                "t": str(r["target"]),
                "type": str(r["type"]),
                "props": _props(r, ["source", "target", "type"]),
            }
            for r in rows
        ]
        for batch in _batches(data):
            self.write(
                "UNWIND $rows AS row MATCH (a:Entity {id: row.s}) MATCH (b:Entity {id: row.t}) "
                "MERGE (a)-[r:RELATED {type: row.type}]->(b) SET r += row.props",
                {"rows": batch},
            )
        return len(data)

    def upsert_mentions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """MENTIONS edges from chunk ``chunk_id`` to entity ``entity_id`` (with ``count``)."""
        data = [
            {"c": str(r["chunk_id"]), "e": str(r["entity_id"]), "props": _props(r, ["chunk_id", "entity_id"])}
            for r in rows
        ]
        for batch in _batches(data):
            self.write(
                "UNWIND $rows AS row MATCH (c:Chunk {id: row.c}) MATCH (e:Entity {id: row.e}) "
                "MERGE (c)-[m:MENTIONS]->(e) SET m += row.props",
                {"rows": batch},
            )
        return len(data)

    def replace_communities(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Drop every Community and write these: ``id, level, title, summary, size, rank``,
        ``entity_ids`` (linked by IN_COMMUNITY) and ``parent`` (a community id one level up)."""
        self.write("MATCH (c:Community) DETACH DELETE c")
        data: list[dict[str, Any]] = [
            {
                "id": str(r["id"]),
                "props": _props(r, ["id", "entity_ids", "parent"]),
                "entity_ids": [str(e) for e in r.get("entity_ids") or []],
                "parent": None if r.get("parent") is None else str(r["parent"]),
            }
            for r in rows
        ]
        for batch in _batches(data):
            self.write("UNWIND $rows AS row MERGE (c:Community {id: row.id}) SET c += row.props", {"rows": batch})
        members = [{"c": d["id"], "e": e} for d in data for e in d["entity_ids"]]
        for batch in _batches(members, 2000):
            self.write(
                "UNWIND $rows AS row MATCH (e:Entity {id: row.e}) MATCH (c:Community {id: row.c}) "
                "MERGE (e)-[:IN_COMMUNITY]->(c)",
                {"rows": batch},
            )
        parents = [{"c": d["id"], "p": d["parent"]} for d in data if d["parent"] is not None]
        for batch in _batches(parents):
            self.write(
                "UNWIND $rows AS row MATCH (c:Community {id: row.c}) MATCH (p:Community {id: row.p}) "
                "MERGE (c)-[:PARENT]->(p)",
                {"rows": batch},
            )
        return len(data)

    def delete_chunks(self, chunk_ids: Iterable[str]) -> int:
        """Remove chunks (and their MENTIONS); entities stay until `delete_orphan_entities`."""
        ids = [str(c) for c in chunk_ids]
        for start in range(0, len(ids), BATCH):
            self.write("MATCH (c:Chunk) WHERE c.id IN $ids DETACH DELETE c", {"ids": ids[start : start + BATCH]})
        return len(ids)

    def delete_orphan_entities(self) -> int:
        """Remove entities no chunk mentions any more (after their documents changed or left)."""
        rows = self.write(
            "MATCH (e:Entity) WHERE NOT (e)<-[:MENTIONS]-(:Chunk) "
            "WITH e, e.id AS id DETACH DELETE e RETURN count(id) AS n"
        )
        return int(rows[0]["n"]) if rows else 0

    def forget_query_log(self) -> int:
        """Delete the database's own log of recent queries and their parameters (which can hold chunk
        text); how many records were deleted. None is kept by default."""
        return 0

    def persist_deletions(self, timeout_s: float = 60.0) -> str:
        """Make deleted data leave the database's files where the backend allows it; says what was done.

        The default (Neo4j): deletions are committed transactions; the store files keep freed
        records until Neo4j reuses them, which graphcraft cannot force."""
        return f"{self.backend}: deletions committed; its store files reuse freed space on their own"

    def clear(self) -> None:
        """Delete every node and edge of this graph."""
        self.write("MATCH (n) DETACH DELETE n")

    # -- reading -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """``{"entities", "relations", "chunks", "communities"}``."""
        return {
            "entities": int(self._scalar("MATCH (n:Entity) RETURN count(n) AS n") or 0),
            "relations": int(self._scalar("MATCH (:Entity)-[r:RELATED]->(:Entity) RETURN count(r) AS n") or 0),
            "chunks": int(self._scalar("MATCH (n:Chunk) RETURN count(n) AS n") or 0),
            "communities": int(self._scalar("MATCH (n:Community) RETURN count(n) AS n") or 0),
        }

    def totals(self) -> dict[str, int]:
        """All nodes and edges, whatever their label: ``{"nodes", "edges"}``."""
        return {
            "nodes": int(self._scalar("MATCH (n) RETURN count(n) AS n") or 0),
            "edges": int(self._scalar("MATCH ()-[r]->() RETURN count(r) AS n") or 0),
        }

    def schema_info(self, sample: int = 200) -> dict[str, Any]:
        """Labels with their property keys, relationship patterns, and sample values of the
        ``type`` properties (entity types, relation types), read from the data."""
        labels = sorted({str(r.get("label")) for r in self.query("CALL db.labels() YIELD label RETURN label")})
        nodes: dict[str, list[str]] = {}
        for label in labels:
            quoted = _quote_name(label)
            if quoted is None:
                continue
            rows = self.query(
                f"MATCH (n:{quoted}) WITH n LIMIT $sample UNWIND keys(n) AS k RETURN DISTINCT k AS k",
                {"sample": sample},
            )
            nodes[label] = sorted(str(r["k"]) for r in rows if r["k"] not in HIDDEN_PROPERTIES)
        patterns = self.query(
            "MATCH (a)-[r]->(b) WITH labels(a)[0] AS src, type(r) AS rel, labels(b)[0] AS dst "
            "RETURN DISTINCT src, rel, dst LIMIT 50"
        )
        rels: dict[str, list[str]] = {}
        for rel in sorted({str(p["rel"]) for p in patterns}):
            quoted = _quote_name(rel)
            if quoted is None:
                continue
            rows = self.query(
                f"MATCH ()-[r:{quoted}]->() WITH r LIMIT $sample UNWIND keys(r) AS k RETURN DISTINCT k AS k",
                {"sample": sample},
            )
            rels[rel] = sorted(str(r["k"]) for r in rows)
        values: dict[str, list[str]] = {}
        if "Entity" in nodes and "type" in nodes["Entity"]:
            rows = self.query("MATCH (n:Entity) RETURN DISTINCT n.type AS v LIMIT 30")
            values["Entity.type"] = sorted(str(r["v"]) for r in rows if r["v"] is not None)
        if "RELATED" in rels and "type" in rels["RELATED"]:
            rows = self.query("MATCH ()-[r:RELATED]->() RETURN DISTINCT r.type AS v LIMIT 30")
            values["RELATED.type"] = sorted(str(r["v"]) for r in rows if r["v"] is not None)
        return {
            "nodes": nodes,
            "relationships": rels,
            "patterns": [f"(:{p['src']})-[:{p['rel']}]->(:{p['dst']})" for p in patterns],
            "values": values,
        }

    def schema(self) -> str:
        """A compact text description of the graph for Text2Cypher prompts."""
        info = self.schema_info()
        lines = ["Node labels and properties:"]
        lines += [f"  (:{label} {{{', '.join(props)}}})" for label, props in info["nodes"].items()]
        lines.append("Relationship types and properties:")
        lines += [f"  [:{rel} {{{', '.join(props)}}}]" for rel, props in info["relationships"].items()]
        lines.append("Patterns:")
        lines += [f"  {p}" for p in info["patterns"]]
        for key, vals in info["values"].items():
            lines.append(f"Values of {key}: {', '.join(vals)}")
        return "\n".join(lines)

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location})"


def open_graph_store(
    store_dir: str | Path | None = None,
    neo4j_uri: str | None = None,
    *,
    backend: str | None = None,
    neo4j_user: str | None = None,
    neo4j_password: str | None = None,
    neo4j_database: str | None = None,
    falkordb_host: str | None = None,
    falkordb_port: int | None = None,
    graph_name: str = "graphcraft",
    default_timeout_ms: int = DEFAULT_TIMEOUT_MS,
    settings: Any = None,
) -> GraphStore:
    """Open the graph store of a store directory.

    Neo4j when a URI is given (argument or GRAPHCRAFT_NEO4J_URI) or ``backend="neo4j"``;
    otherwise FalkorDB: an external server when ``falkordb_port`` is set, else a private
    server started on demand with its data in ``<store_dir>/falkordb/``.
    """
    if settings is None:
        from graphcraft.config import get_settings

        settings = get_settings()
    store_dir = Path(store_dir) if store_dir is not None else Path(settings.store)
    uri = neo4j_uri if neo4j_uri is not None else settings.neo4j_uri
    chosen = backend or ("neo4j" if uri else "falkordb")
    if chosen == "neo4j":
        from graphcraft.stores.graph_neo4j import Neo4jGraphStore

        if not uri:
            raise GraphStoreUnavailableError("the Neo4j graph store needs a URI: set GRAPHCRAFT_NEO4J_URI")
        return Neo4jGraphStore(
            uri,
            user=neo4j_user if neo4j_user is not None else settings.neo4j_user,
            password=neo4j_password if neo4j_password is not None else settings.neo4j_password,
            database=neo4j_database,
            default_timeout_ms=default_timeout_ms,
        )
    if chosen != "falkordb":
        raise StoreError(f"unknown graph backend {chosen!r}: use 'falkordb' or 'neo4j'")
    from graphcraft.stores.graph_falkordb import FalkorDBGraphStore

    port = falkordb_port if falkordb_port is not None else settings.falkordb_port
    host = falkordb_host if falkordb_host is not None else settings.falkordb_host
    if port:
        return FalkorDBGraphStore.connect(host, int(port), graph_name=graph_name, default_timeout_ms=default_timeout_ms)
    return FalkorDBGraphStore.open(
        store_dir / "falkordb", host=host, graph_name=graph_name, default_timeout_ms=default_timeout_ms
    )
