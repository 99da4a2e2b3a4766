"""Neo4j backend of the graph store, used when a Neo4j URI is configured.

Read queries run in a READ access-mode transaction: on a cluster they go to a reader, and on
any server a write clause in such a transaction is refused. They run once, with the
transaction timeout the caller gives (Neo4j stops the query itself), and are not retried:
``execute_read`` would retry a query that ran out of memory (a transient error) for half a
minute. Neo4j's memory limit per transaction is a server setting,
``db.memory.transaction.max``; ``transaction_memory_mb`` sets it (this needs an admin user),
and without it the store warns when the server has none. Failures are one line.
"""

from __future__ import annotations

import logging
from typing import Any

from graphcraft.stores.falkordb_server import GraphStoreUnavailableError
from graphcraft.stores.graph import HIDDEN_PROPERTIES, GraphQueryError, GraphStore

log = logging.getLogger(__name__)
MEMORY_SETTING = "db.memory.transaction.max"

_INDEXES = (
    ("chunk_id", "Chunk", "id"),
    ("entity_id", "Entity", "id"),
    ("entity_norm", "Entity", "norm"),
    ("community_id", "Community", "id"),
    ("community_level", "Community", "level"),
)


def to_plain(value: Any) -> Any:
    """Neo4j values as plain Python, shaped like the FalkorDB backend's."""
    from neo4j.graph import Node, Path, Relationship

    if isinstance(value, Node):
        out = {k: to_plain(v) for k, v in dict(value).items() if k not in HIDDEN_PROPERTIES}
        out["_labels"] = sorted(value.labels)
        return out
    if isinstance(value, Relationship):
        out = {k: to_plain(v) for k, v in dict(value).items()}
        out["_type"] = value.type
        return out
    if isinstance(value, Path):
        return {
            "nodes": [to_plain(n) for n in value.nodes],
            "relationships": [to_plain(r) for r in value.relationships],
        }
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


class Neo4jGraphStore(GraphStore):
    """Graph store on a Neo4j server (5.x) through the official driver."""

    backend = "neo4j"

    def __init__(
        self,
        uri: str,
        *,
        user: str = "neo4j",
        password: str = "",
        database: str | None = None,
        default_timeout_ms: int = 10_000,
        transaction_memory_mb: int | None = None,
    ) -> None:
        super().__init__(default_timeout_ms)
        import neo4j

        self.uri, self.database = uri, database
        try:
            self._driver = neo4j.GraphDatabase.driver(uri, auth=(user, password) if password else None)
            self._driver.verify_connectivity()
        except neo4j.exceptions.AuthError as exc:
            raise GraphStoreUnavailableError(
                f"Neo4j at {uri} refused the credentials: set GRAPHCRAFT_NEO4J_USER / GRAPHCRAFT_NEO4J_PASSWORD"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - ServiceUnavailable, ConfigurationError, socket errors
            raise GraphStoreUnavailableError(
                f"cannot reach Neo4j at {uri} ({type(exc).__name__}: {exc}); check GRAPHCRAFT_NEO4J_URI or unset it "
                "to use the built-in FalkorDB store"
            ) from exc
        self._memory_limit(transaction_memory_mb)
        self.ensure_schema()

    def _memory_limit(self, megabytes: int | None) -> None:
        """Set the server's per-transaction memory limit when asked; warn when it has none."""
        try:
            if megabytes is not None:
                self._run(f"CALL dbms.setConfigValue('{MEMORY_SETTING}', '{int(megabytes)}m')", {}, False, None)
            rows = self._run(
                "SHOW SETTINGS YIELD name, value WHERE name = $name RETURN value", {"name": MEMORY_SETTING}, True, 5000
            )
        except (GraphQueryError, GraphStoreUnavailableError) as exc:
            log.warning("could not read or set Neo4j's %s: %s", MEMORY_SETTING, exc)
            return
        value = str(rows[0]["value"]) if rows else "0"
        if value.strip().upper() in ("0", "0B", "0.00B"):
            log.warning(
                "Neo4j at %s has no per-transaction memory limit (%s): pass transaction_memory_mb to set one",
                self.uri,
                MEMORY_SETTING,
            )

    @property
    def location(self) -> str:
        return f"{self.uri}/{self.database or '(default database)'}"

    def _run(self, cypher: str, params: dict[str, Any], read_only: bool, timeout_ms: int | None) -> list[dict]:
        import neo4j

        timeout_s = timeout_ms / 1000 if timeout_ms else None

        def work(tx: Any) -> list[dict]:
            return [{k: to_plain(v) for k, v in record.items()} for record in tx.run(cypher, params)]

        mode = neo4j.READ_ACCESS if read_only else neo4j.WRITE_ACCESS
        try:
            with self._driver.session(database=self.database, default_access_mode=mode) as session:
                if not read_only:
                    return session.execute_write(work)
                with session.begin_transaction(timeout=timeout_s) as tx:  # once, no retry
                    return work(tx)
        except neo4j.exceptions.ServiceUnavailable as exc:
            raise GraphStoreUnavailableError(f"lost Neo4j at {self.uri}: {_one_line(exc)}") from exc
        except neo4j.exceptions.Neo4jError as exc:
            raise GraphQueryError(f"Neo4j refused the query: {_one_line(exc.message or exc)}") from exc

    def ensure_schema(self) -> None:
        """Indexes on the ids the write helpers merge on (idempotent)."""
        for name, label, prop in _INDEXES:
            self._run(f"CREATE INDEX {name} IF NOT EXISTS FOR (n:{label}) ON (n.{prop})", {}, False, None)

    def close(self) -> None:
        try:
            self._driver.close()
        except Exception:  # noqa: BLE001
            pass


def _one_line(exc: object, limit: int = 300) -> str:
    """An error as one short line (Neo4j's messages may span lines)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
