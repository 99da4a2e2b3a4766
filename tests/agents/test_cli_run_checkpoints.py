"""graphcraft.api.ask(thread_id=...) closes the SQLite connection of its checkpointer, on success and on error."""

from __future__ import annotations

import sqlite3

import pytest

import graphcraft.memory.checkpoints as checkpoints
from graphcraft.api import ask
from graphcraft.testing import ScriptedChatModel


@pytest.fixture
def opened(monkeypatch) -> list[sqlite3.Connection]:
    """Every connection the checkpointer module opens."""
    conns: list[sqlite3.Connection] = []
    real = sqlite3.connect

    def connect(*args, **kwargs):
        conns.append(real(*args, **kwargs))
        return conns[-1]

    monkeypatch.setattr(checkpoints.sqlite3, "connect", connect)
    return conns


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("select 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_thread_run_closes_its_connection(tmp_path, opened) -> None:
    ask("I am Ada.", graph="tool_agent", model=ScriptedChatModel(script=["Hello Ada."]), store=tmp_path, thread_id="t")
    second = ScriptedChatModel(script=["You are Ada."])
    ask("Who am I?", graph="tool_agent", model=second, store=tmp_path, thread_id="t")
    assert "I am Ada." in second.calls[0].text  # the thread still resumes across runs
    assert len(opened) == 2 and all(_is_closed(c) for c in opened)


def test_failing_thread_run_closes_its_connection(tmp_path, opened) -> None:
    broken = ScriptedChatModel(script=[RuntimeError("provider down")])
    with pytest.raises(Exception, match="provider down"):
        ask("Hi", graph="tool_agent", model=broken, store=tmp_path, thread_id="t")
    assert len(opened) == 1 and _is_closed(opened[0])


def test_open_checkpointer_closes_on_exit(tmp_path) -> None:
    with checkpoints.open_checkpointer(tmp_path / "c.sqlite") as saver:
        assert saver.conn.execute("select 1").fetchone() == (1,)
    assert _is_closed(saver.conn)
