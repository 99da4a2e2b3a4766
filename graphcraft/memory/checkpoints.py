"""Short-term memory: conversation threads persisted by a LangGraph checkpointer.

A graph compiled with a checkpointer keeps each `thread_id`'s state between invocations, so a
second question on the same thread sees the first one. SQLite is the default because it
survives restarts with no server; LangGraph Server swaps in Postgres.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from graphcraft.config import Settings, get_settings

DEFAULT_FILE = "checkpoints.sqlite"


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


@contextmanager
def open_checkpointer(path: str | Path | None = None, settings: Settings | None = None) -> Iterator[SqliteSaver]:
    """`sqlite_checkpointer` for one run: the SQLite connection is closed on exit, even on error."""
    saver = sqlite_checkpointer(path, settings)
    try:
        yield saver
    finally:
        saver.conn.close()


def thread_config(thread_id: str, **configurable: object) -> dict:
    """The `config` that selects a conversation thread."""
    return {"configurable": {"thread_id": thread_id, **configurable}}
