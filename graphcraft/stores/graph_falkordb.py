"""FalkorDB backend of the graph store (the default: zero set-up, see falkordb_server).

Every failure reaches the caller as one line: a query the server refused, stopped (timeout,
per-query memory cap) or lost. When the private server graphcraft started dies under a query
(it aborts out of memory past its address-space limit), the store starts it again on the same
data and reports that query as failed, so the next query, from this process or another one
sharing the store, finds the database up.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from graphcraft.stores.falkordb_server import (
    FalkorDBServer,
    GraphStoreUnavailableError,
    ServerLimits,
    ping,
    start_server,
)
from graphcraft.stores.graph import HIDDEN_PROPERTIES, GraphQueryError, GraphStore

log = logging.getLogger(__name__)

_INDEXES = (("Chunk", "id"), ("Entity", "id"), ("Entity", "norm"), ("Community", "id"), ("Community", "level"))


def to_plain(value: Any) -> Any:
    """FalkorDB result values as plain Python: nodes/edges as property dicts, paths as lists."""
    from falkordb import Edge, Node
    from falkordb import Path as FPath

    if isinstance(value, Node):
        out = {k: to_plain(v) for k, v in value.properties.items() if k not in HIDDEN_PROPERTIES}
        out["_labels"] = list(value.labels or [])
        return out
    if isinstance(value, Edge):
        out = {k: to_plain(v) for k, v in value.properties.items()}
        out["_type"] = value.relation
        return out
    if isinstance(value, FPath):
        return {"nodes": [to_plain(n) for n in value.nodes()], "relationships": [to_plain(e) for e in value.edges()]}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


class FalkorDBGraphStore(GraphStore):
    """Graph store on FalkorDB. Read queries use GRAPH.RO_QUERY: the server itself refuses writes."""

    backend = "falkordb"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        graph_name: str = "graphcraft",
        server: FalkorDBServer | None = None,
        default_timeout_ms: int = 10_000,
        socket_timeout_s: float = 120.0,
        query_memory_mb: int | None = None,
    ) -> None:
        """``query_memory_mb`` sets the server's per-query memory cap (QUERY_MEM_CAPACITY) on a server
        someone else runs; a private server gets its limits when it starts."""
        super().__init__(default_timeout_ms)
        self.host, self.port, self.graph_name, self.server = host, port, graph_name, server
        self._socket_timeout_s = socket_timeout_s
        self._restart_lock = threading.Lock()
        if not ping(host, port, timeout_s=5.0):
            raise GraphStoreUnavailableError(
                f"cannot reach FalkorDB at {host}:{port}: nothing answers PING there; start it, fix "
                "GRAPHCRAFT_FALKORDB_HOST/PORT, or leave GRAPHCRAFT_FALKORDB_PORT=0 to let graphcraft start one"
            )
        self._connect()
        self._timeout_max_ms = self._server_limits(query_memory_mb)
        self.ensure_schema()

    def _connect(self) -> None:
        """A client for host:port (again after a restart, when the port changed)."""
        from falkordb import FalkorDB

        self._db = FalkorDB(
            host=self.host, port=self.port, socket_timeout=self._socket_timeout_s, socket_connect_timeout=5
        )
        self._graph = self._db.select_graph(self.graph_name)

    def _server_limits(self, query_memory_mb: int | None) -> int:
        """The server's TIMEOUT_MAX (0: none); sets its memory cap when asked, warns when it has none."""
        if self.server is not None:
            return self.server.limits.timeout_max_ms
        conn = self._db.connection
        try:
            if query_memory_mb is not None:
                conn.execute_command("GRAPH.CONFIG", "SET", "QUERY_MEM_CAPACITY", query_memory_mb * 1024 * 1024)
            config = dict(conn.execute_command("GRAPH.CONFIG", "GET", "*"))
        except Exception as exc:  # noqa: BLE001 - an older server or no permission: run without
            log.warning("could not read FalkorDB's limits at %s:%s: %s", self.host, self.port, _one_line(exc))
            return 0
        if int(config.get(b"QUERY_MEM_CAPACITY", config.get("QUERY_MEM_CAPACITY", 0)) or 0) <= 0:
            log.warning(
                "FalkorDB at %s:%s has no per-query memory cap (QUERY_MEM_CAPACITY): pass query_memory_mb "
                "to FalkorDBGraphStore.connect to set one",
                self.host,
                self.port,
            )
        return int(config.get(b"TIMEOUT_MAX", config.get("TIMEOUT_MAX", 0)) or 0)

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        graph_name: str = "graphcraft",
        limits: ServerLimits | None = None,
        **kw: Any,
    ) -> FalkorDBGraphStore:
        """Start (or reuse) the private server for data_dir and connect to it."""
        server = start_server(data_dir, host=host, limits=limits)
        return cls(server.host, server.port, graph_name=graph_name, server=server, **kw)

    @classmethod
    def connect(cls, host: str, port: int, *, graph_name: str = "graphcraft", **kw: Any) -> FalkorDBGraphStore:
        """Connect to a FalkorDB server someone else runs."""
        return cls(host, port, graph_name=graph_name, **kw)

    @property
    def location(self) -> str:
        where = f"falkordb://{self.host}:{self.port}/{self.graph_name}"
        return f"{where} (data in {self.server.data_dir})" if self.server else where

    def _run(self, cypher: str, params: dict[str, Any], read_only: bool, timeout_ms: int | None) -> list[dict]:
        import redis

        if timeout_ms and self._timeout_max_ms:  # the server refuses a TIMEOUT above its TIMEOUT_MAX
            timeout_ms = min(timeout_ms, self._timeout_max_ms)
        graph = self._graph
        try:
            if read_only:
                result = graph.ro_query(cypher, params or None, timeout=timeout_ms)
            else:
                result = graph.query(cypher, params or None, timeout=timeout_ms)
        except redis.exceptions.ConnectionError as exc:
            raise self._lost(exc) from exc
        except redis.exceptions.ResponseError as exc:
            if "empty key" in str(exc):  # the graph has never been written: it is empty
                return []
            raise GraphQueryError(_refusal(exc, timeout_ms)) from exc
        except redis.exceptions.TimeoutError as exc:
            raise GraphQueryError(f"FalkorDB query timed out on the client side: {_one_line(exc)}") from exc
        header = [str(h[1]) if isinstance(h, (list, tuple)) else str(h) for h in result.header]
        return [dict(zip(header, (to_plain(v) for v in row), strict=False)) for row in result.result_set]

    def _lost(self, exc: Exception) -> Exception:
        """The error for a dropped connection; restarts the private server when it died."""
        where = f"FalkorDB at {self.host}:{self.port}"
        server = self.server
        if server is not None and server._proc is not None:
            server._proc.poll()  # collect our own child if it died, so it is not counted as running
        if server is None or server.running:
            return GraphStoreUnavailableError(f"lost {where}: {_one_line(exc)}")
        with self._restart_lock:
            if self.server is server:  # not restarted meanwhile by another thread
                try:
                    restarted = start_server(server.data_dir, host=server.host, limits=server.limits)
                except GraphStoreUnavailableError as again:
                    return GraphStoreUnavailableError(f"{where} stopped and could not be restarted: {_one_line(again)}")
                self.server, self.host, self.port = restarted, restarted.host, restarted.port
                self._connect()
        return GraphQueryError(
            f"{where} stopped while running this query (out of memory or killed); it was restarted on the same data "
            "and the query was not run again"
        )

    def ensure_schema(self) -> None:
        """Indexes on the ids the write helpers merge on (idempotent)."""
        import redis

        for label, prop in _INDEXES:
            try:
                self._graph.query(f"CREATE INDEX FOR (n:{label}) ON (n.{prop})")
            except redis.exceptions.ResponseError as exc:
                if "already indexed" not in str(exc):
                    raise GraphQueryError(f"could not create index on :{label}({prop}): {exc}") from exc

    def forget_query_log(self) -> int:
        """FalkorDB keeps recent queries with their parameters in the stream ``telemetry{<graph>}``;
        a write's parameters are chunk texts, so erasing a subject deletes that stream."""
        conn = self._db.connection
        key = f"telemetry{{{self.graph_name}}}"
        records = int(conn.xlen(key) or 0) if conn.exists(key) else 0
        conn.delete(key)
        return records

    def persist_deletions(self, timeout_s: float = 60.0) -> str:
        """Rewrite the append-only file and the RDB snapshot from the data as it is now, so that what was
        deleted (an erased subject) no longer sits in the older log records on disk."""
        conn = self._db.connection
        conn.execute_command("BGREWRITEAOF")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # bounded: the rewrite of a small graph takes milliseconds
            info = conn.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                break
            time.sleep(0.05)
        else:
            raise GraphQueryError(f"FalkorDB at {self.location} did not finish rewriting its log in {timeout_s:.0f} s")
        conn.execute_command("SAVE")
        return "falkordb: append-only file rewritten (BGREWRITEAOF) and snapshot saved (SAVE)"

    def close(self) -> None:
        """Close the connection. A server this process started keeps running until exit (or
        `stop_server()`), so several stores on one directory can share it."""
        try:
            self._db.close()
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error
            pass

    def stop_server(self, save: bool = True) -> None:
        """Close and stop the private server (data saved first)."""
        self.close()
        if self.server is not None:
            self.server.stop(save=save)


def _one_line(exc: object, limit: int = 300) -> str:
    """An error as one short line (FalkorDB's and redis' messages may span lines)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _refusal(exc: Exception, timeout_ms: int | None) -> str:
    """FalkorDB's error as one line, saying which of its limits stopped the query."""
    text = _one_line(exc)
    if "mem consumption exceeded capacity" in text:
        return "FalkorDB stopped the query: it needed more memory than the per-query cap (QUERY_MEM_CAPACITY)"
    if "timed out" in text.lower():
        return f"FalkorDB stopped the query: timed out after {timeout_ms} ms" if timeout_ms else f"FalkorDB: {text}"
    return f"FalkorDB refused the query: {text}"
