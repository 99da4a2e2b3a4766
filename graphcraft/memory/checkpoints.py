"""Short-term memory and durable runs: conversation threads persisted by a LangGraph checkpointer.

A graph compiled with a checkpointer keeps each `thread_id`'s state between invocations, so a
second question on the same thread sees the first one, a run paused for a person's approval can
be resumed, and a run whose process died continues from its last finished step.

`open_checkpointer` is the one place that chooses the checkpointer: PostgreSQL
(langgraph-checkpoint-postgres, psycopg 3) when GRAPHCRAFT_POSTGRES_URI is set, so several
processes and machines share threads and a crashed worker's run can be resumed by another;
otherwise SQLite in the store directory, which survives restarts with no server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from graphcraft.config import Settings, get_settings
from graphcraft.errors import GraphcraftError, first_line, url_without_password

DEFAULT_FILE = "checkpoints.sqlite"
CONNECT_TIMEOUT_S = 10  # an unreachable database fails the run in seconds, not at the OS's TCP timeout


class CheckpointStoreError(GraphcraftError):
    """The checkpoint database cannot be reached or prepared."""


def default_checkpoint_path(settings: Settings | None = None) -> Path:
    """<store dir>/checkpoints.sqlite"""
    return Path((settings or get_settings()).store) / DEFAULT_FILE


def sqlite_checkpointer(path: str | Path | None = None, settings: Settings | None = None) -> SqliteSaver:
    """A SqliteSaver on `path` (default: the store directory), usable from several threads.

    The caller owns the connection (`saver.conn`) and must close it; `open_checkpointer` does that.
    """
    target = Path(path) if path is not None else default_checkpoint_path(settings)
    if str(target) != ":memory:":
        target.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(target), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
    except BaseException:
        conn.close()
        raise
    return saver


def postgres_checkpointer(uri: str) -> Any:
    """A PostgresSaver on one psycopg connection, its tables created if missing.

    The settings are those langgraph-checkpoint-postgres requires (autocommit, dict rows, no
    prepared statements, which poolers such as PgBouncer refuse). The caller closes `saver.conn`.
    A database that cannot be reached is a one-line CheckpointStoreError naming the setting.
    """
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    where = f"GRAPHCRAFT_POSTGRES_URI={url_without_password(uri)}"
    try:
        conn = psycopg.Connection.connect(
            uri, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S
        )
    except psycopg.Error as exc:
        raise CheckpointStoreError(f"cannot reach the checkpoint database ({where}): {first_line(exc)}") from exc
    try:
        saver = PostgresSaver(conn)
        saver.setup()
    except psycopg.Error as exc:
        conn.close()
        raise CheckpointStoreError(f"cannot prepare the checkpoint tables ({where}): {first_line(exc)}") from exc
    except BaseException:
        conn.close()
        raise
    return saver


@contextmanager
def open_checkpointer(
    path: str | Path | None = None, settings: Settings | None = None
) -> Iterator[BaseCheckpointSaver]:
    """The run's checkpointer, closed on exit even on error: PostgreSQL when the settings' postgres_uri
    is set (and no SQLite `path` is asked for), else SQLite at `path` or in the store directory."""
    settings = settings or get_settings()
    saver: Any = (
        postgres_checkpointer(settings.postgres_uri)
        if settings.postgres_uri and path is None
        else sqlite_checkpointer(path, settings)
    )
    try:
        yield saver
    finally:
        saver.conn.close()


def thread_config(thread_id: str, **configurable: object) -> dict:
    """The `config` that selects a conversation thread."""
    return {"configurable": {"thread_id": thread_id, **configurable}}
