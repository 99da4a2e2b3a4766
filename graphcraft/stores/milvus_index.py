"""A chunk store's vectors in one Milvus collection, through pymilvus' MilvusClient.

The same client talks to Milvus Lite (a local ``*.db`` path, served inside this process) and to
a Milvus server or cluster (``http://host:19530``): only the URI changes. pymilvus is used
directly rather than langchain-milvus because the store needs row-level control the
LangChain VectorStore does not expose: upsert and delete by key, fetching stored vectors,
listing keys and a sync record, while the chunk texts stay in the store's generations.

Rows are immutable: a row's key is a digest of its chunk id and text (`row_key`), so a key
always means the same vector, and writing a chunk never overwrites a row a committed
generation relies on. The metric is inner product on L2-normalised vectors with an exact
(FLAT) index, as in the FAISS backend, so scores and rankings match.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from graphcraft.errors import StoreError

BATCH = 512  # rows per insert / get / delete call
MAX_LIMIT = 16384  # Milvus' largest top-k and query page
PAGE = 4096  # rows expected per key prefix when listing every key
DATA_CALLS = frozenset({"get", "query", "search", "upsert", "delete"})  # need the collections loaded
SYNC_SUFFIX = "_sync"  # a one-row collection: which generation the vectors reflect
_CLIENTS: dict[str, Any] = {}  # one client per URI in this process (Milvus Lite allows one process per file)


class MilvusStoreError(StoreError):
    """Milvus cannot be reached or used: one line naming the fix."""


def row_key(chunk_id: str, text: str) -> str:
    """The key of a chunk's row: the same chunk id and text always have the same vector."""
    return hashlib.sha256(f"{chunk_id}\n{text}".encode()).hexdigest()[:32]


def is_lite(uri: str) -> bool:
    """A local file path (Milvus Lite) rather than a server address."""
    return "://" not in uri


def resolve_uri(uri: str, store_path: Path) -> str:
    """The configured URI, or <store>/milvus.db; Milvus Lite paths must end in .db (pymilvus' rule)."""
    uri = uri or str(store_path / "milvus.db")
    if is_lite(uri):
        if not uri.endswith(".db"):
            raise MilvusStoreError(
                f"GRAPHCRAFT_MILVUS_URI={uri} is neither a server URL nor a Milvus Lite file: "
                "a local Milvus Lite path must end in .db (or use http://host:19530)"
            )
        return str(Path(uri).expanduser().resolve())
    return uri


def connect(uri: str) -> Any:
    """A MilvusClient for `uri` (shared in this process), or a one-line MilvusStoreError."""
    client = _CLIENTS.get(uri)
    if client is not None:
        return client
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    if is_lite(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    with _LiteFailure() as lite:  # Milvus Lite logs why it could not start, with a traceback: keep it
        try:
            client = MilvusClient(uri=uri, timeout=10)
        except MilvusException as exc:
            raise MilvusStoreError(_connect_message(uri, exc, lite.error)) from None
    _CLIENTS[uri] = client
    return client


class _LiteFailure(logging.Handler):
    """While active, takes Milvus Lite's start-up error log record instead of letting it print a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.error: BaseException | None = None
        self.logger = logging.getLogger("milvus_lite.server_manager")

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.error = record.exc_info[1]

    def __enter__(self) -> _LiteFailure:
        self.logger.addHandler(self)
        self.propagate, self.logger.propagate = self.logger.propagate, False
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.propagate = self.propagate


def _connect_message(uri: str, exc: Exception, lite_error: BaseException | None) -> str:
    if is_lite(uri):
        if type(lite_error).__name__ == "DataDirLockedError":
            return (
                f"cannot open the Milvus Lite file {uri}: another process has it open (Milvus Lite serves one "
                "process at a time): stop that process, or run a Milvus server and set GRAPHCRAFT_MILVUS_URI to its URL"
            )
        detail = str(lite_error or exc).splitlines()[0][:200]
        return f"cannot open the Milvus Lite file {uri} ({detail}): check the path and its permissions"
    detail = str(getattr(exc, "message", exc)).split(". ")[0]
    return f"cannot reach Milvus at {uri} ({detail}): start the server or fix GRAPHCRAFT_MILVUS_URI"


def release(uri: str) -> None:
    """Close this process' client for `uri` and, for Milvus Lite, free the file for other processes."""
    client = _CLIENTS.pop(uri, None)
    if client is not None:
        client.close()
    if is_lite(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


class MilvusIndex:
    """The rows (key, chunk id, source, vector) of one store, and its sync record."""

    def __init__(self, uri: str, collection: str, dimension: int) -> None:
        self.uri, self.collection, self.dimension = uri, collection, dimension
        self._loaded_by: Any = None  # the client the collections were loaded through

    def load(self) -> None:
        """Load the collections into memory (a restarted Milvus Lite holds them released)."""
        client = self.client
        if self._loaded_by is client:
            return
        for name in (self.collection, self.collection + SYNC_SUFFIX):
            self.call("load_collection", name)
        self._loaded_by = client

    @property
    def client(self) -> Any:
        return connect(self.uri)  # looked up each time: `release` may have closed an earlier one

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One client call; a Milvus failure becomes a one-line MilvusStoreError."""
        from pymilvus.exceptions import MilvusException

        if method in DATA_CALLS:
            self.load()
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except MilvusException as exc:
            message = str(getattr(exc, "message", exc)).split("\n")[0][:200]
            raise MilvusStoreError(
                f"Milvus at {self.uri} failed on {method} ({message}): check the server, then re-run"
            ) from None

    # ------------------------------------------------------------------ collections
    def exists(self) -> bool:
        return bool(self.call("has_collection", self.collection))

    def ensure(self) -> None:
        """Create the collection and its sync record's collection if they are missing."""
        from pymilvus import DataType, MilvusClient

        if self.exists():
            self.load()
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("chunk_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("source", DataType.VARCHAR, max_length=4096)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        sync = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        sync.add_field("key", DataType.VARCHAR, is_primary=True, max_length=16)
        sync.add_field("record", DataType.VARCHAR, max_length=256)
        sync.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires one vector field
        sync_index = self.client.prepare_index_params()
        sync_index.add_index("vector", index_type="FLAT", metric_type="L2")
        self.call("create_collection", self.collection + SYNC_SUFFIX, schema=sync, index_params=sync_index)
        self.call("create_collection", self.collection, schema=schema, index_params=index, consistency_level="Strong")
        self._loaded_by = self.client  # create_collection with an index loads it

    def drop(self) -> None:
        for name in (self.collection, self.collection + SYNC_SUFFIX):
            if self.call("has_collection", name):
                self.call("drop_collection", name)
        self._loaded_by = None

    # ------------------------------------------------------------------ rows
    def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Write rows {key, chunk_id, source, vector}; a key already there gets the same vector again."""
        for start in range(0, len(rows), BATCH):
            self.call("upsert", self.collection, rows[start : start + BATCH])

    def delete(self, keys: Iterable[str]) -> int:
        keys = sorted(keys)
        for start in range(0, len(keys), BATCH):
            self.call("delete", self.collection, ids=keys[start : start + BATCH])
        return len(keys)

    def vectors(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of `keys` that are present."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), BATCH):
            for row in self.call("get", self.collection, ids=keys[start : start + BATCH], output_fields=["vector"]):
                found[row["key"]] = np.asarray(row["vector"], dtype=np.float32)
        return found

    def present(self, keys: list[str]) -> set[str]:
        """Which of `keys` have a row."""
        found: set[str] = set()
        for start in range(0, len(keys), BATCH):
            rows = self.call("get", self.collection, ids=keys[start : start + BATCH], output_fields=["key"])
            found.update(row["key"] for row in rows)
        return found

    def count(self) -> int:
        rows = self.call("query", self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def all_keys(self) -> Iterator[str]:
        """Every key in the collection, one key prefix at a time so no query nears Milvus' row limit.

        Keys are uniform hex digests, so 16**depth prefixes split the rows evenly (pymilvus'
        query_iterator would do too, but Milvus Lite lacks the timestamp call it needs)."""
        total, depth = self.count(), 0
        while total > PAGE * 16**depth:
            depth += 1
        for number in range(16**depth):
            prefix = format(number, f"0{depth}x") if depth else ""
            rows = self.call(
                "query",
                self.collection,
                filter=f'key like "{prefix}%"' if prefix else "",
                output_fields=["key"],
                limit=MAX_LIMIT,
            )
            if len(rows) >= MAX_LIMIT:
                raise MilvusStoreError(f"Milvus collection {self.collection} holds too many rows under {prefix!r}")
            yield from (str(row["key"]) for row in rows)

    def search(self, vector: list[float], limit: int) -> list[tuple[str, float, np.ndarray]]:
        """(key, inner product, stored vector) of the `limit` nearest rows, best first.

        The vectors come in the same reply, so the caller can answer `chunk_vector` for what it
        just retrieved (the CRAG evaluator asks for exactly those) without another round trip."""
        hits = self.call(
            "search",
            self.collection,
            data=[vector],
            limit=min(limit, MAX_LIMIT),
            output_fields=["vector"],
            search_params={"metric_type": "IP"},
        )
        return [
            (str(hit["key"]), float(hit["distance"]), np.asarray(hit["entity"]["vector"], dtype=np.float32))
            for hit in hits[0]
        ]

    def seal(self) -> None:
        """Milvus Lite: seal the rows written since the last call (searching them then takes about a
        third of the time, measured). A Milvus server seals on its own, and frequent flushes would
        only leave it small segments, so there this does nothing."""
        if is_lite(self.uri):
            self.call("flush", self.collection)

    # ------------------------------------------------------------------ sync record
    def read_sync(self) -> str | None:
        """The sync record: which generation (number and id digest) every row of is present."""
        rows = self.call("get", self.collection + SYNC_SUFFIX, ids=["state"], output_fields=["record"])
        return str(rows[0]["record"]) if rows else None

    def write_sync(self, record: str) -> None:
        self.call("upsert", self.collection + SYNC_SUFFIX, [{"key": "state", "record": record, "vector": [0.0, 0.0]}])
