"""FalkorDB backend of the graph store (the default: zero set-up, see falkordb_server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphcraft.stores.falkordb_server import FalkorDBServer, GraphStoreUnavailableError, ping, start_server
from graphcraft.stores.graph import HIDDEN_PROPERTIES, GraphQueryError, GraphStore

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
    ) -> None:
        super().__init__(default_timeout_ms)
        from falkordb import FalkorDB

        self.host, self.port, self.graph_name, self.server = host, port, graph_name, server
        if not ping(host, port, timeout_s=5.0):
            raise GraphStoreUnavailableError(
                f"cannot reach FalkorDB at {host}:{port}: nothing answers PING there; start it, fix "
                "GRAPHCRAFT_FALKORDB_HOST/PORT, or leave GRAPHCRAFT_FALKORDB_PORT=0 to let graphcraft start one"
            )
        self._db = FalkorDB(host=host, port=port, socket_timeout=socket_timeout_s, socket_connect_timeout=5)
        self._graph = self._db.select_graph(graph_name)
        self.ensure_schema()

    @classmethod
    def open(
        cls, data_dir: str | Path, *, host: str = "127.0.0.1", graph_name: str = "graphcraft", **kw: Any
    ) -> FalkorDBGraphStore:
        """Start (or reuse) the private server for data_dir and connect to it."""
        server = start_server(data_dir, host=host)
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

        try:
            if read_only:
                result = self._graph.ro_query(cypher, params or None, timeout=timeout_ms)
            else:
                result = self._graph.query(cypher, params or None, timeout=timeout_ms)
        except redis.exceptions.ConnectionError as exc:
            raise GraphStoreUnavailableError(f"lost FalkorDB at {self.host}:{self.port}: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            if "empty key" in str(exc):  # the graph has never been written: it is empty
                return []
            raise GraphQueryError(f"FalkorDB refused the query: {exc}") from exc
        except redis.exceptions.TimeoutError as exc:
            raise GraphQueryError(f"FalkorDB query timed out on the client side: {exc}") from exc
        header = [str(h[1]) if isinstance(h, (list, tuple)) else str(h) for h in result.header]
        return [dict(zip(header, (to_plain(v) for v in row), strict=False)) for row in result.result_set]

    def ensure_schema(self) -> None:
        import redis

        for label, prop in _INDEXES:
            try:
                self._graph.query(f"CREATE INDEX FOR (n:{label}) ON (n.{prop})")
            except redis.exceptions.ResponseError as exc:
                if "already indexed" not in str(exc):
                    raise GraphQueryError(f"could not create index on :{label}({prop}): {exc}") from exc

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
