"""A graph database killed in the middle of a graph_rag run: the run finishes or fails with a one-line
error, and nothing that was ingested and indexed is lost (the store restarts FalkorDB on its data).

Everything is real except the chat model: the shipped graph sample ingested with MiniLM, indexed
with spaCy into a private FalkorDB server, which the scripted model SIGKILLs during the run.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from graphcraft.errors import GraphcraftError
from graphcraft.testing import ScriptCall, ScriptedChatModel

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "graph"
QUESTION = "How many people live in the town where Acme Corporation has its headquarters?"  # expected.json


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(settings, chunk store, graph store) for samples/graph/docs on a server of this module's own."""
    from graphcraft.config import get_settings
    from graphcraft.graph_index.api import build
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.graph import open_graph_store
    from graphcraft.stores.vector import open_store

    store_dir = tmp_path_factory.mktemp("killed_graph")
    settings = get_settings(store=store_dir)
    chunks = open_store(store_dir, settings)
    ingest_paths([SAMPLE / "docs"], chunks, settings)
    graph = open_graph_store(store_dir, backend="falkordb", falkordb_port=0, settings=settings)
    build(store_dir, settings=settings, graph_store=graph, chunk_store=chunks)
    yield settings, chunks, graph
    graph.stop_server()


def test_falkordb_killed_mid_run_fails_in_one_line_and_loses_nothing(indexed) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.graphs.graph_rag import build

    settings, chunks, graph = indexed
    before, chunk_count = graph.counts(), len(chunks)
    assert before["entities"] > 0 and before["chunks"] > 0
    time.sleep(1.2)  # the append-only file is synced every second: the index is on disk now
    killed: list[int] = []

    def script(call: ScriptCall) -> Any:
        if not killed:  # the route is asked after the graph was read: kill it before the search
            killed.append(graph.server.pid)
            os.kill(graph.server.pid, signal.SIGKILL)
            time.sleep(0.2)
        return {"route": "local", "reason": "named entities"} if call.schema == "_Route" else "It is in Dunmore [1]."

    model = ScriptedChatModel(script=script)
    run = build(model=model, settings=settings, store=chunks, graph_store=graph)
    try:
        out = run.invoke({"question": QUESTION})
    except GraphcraftError as error:  # failed: in one line, naming the database
        message = str(error)
        assert "\n" not in message and "FalkorDB" in message, message
    else:  # or finished: with an answer and its trace
        assert out["answer"] and out["trace"]["action"] == "local"
    assert killed and graph.server.pid != killed[0]  # the store restarted its server

    assert graph.counts() == before and len(chunks) == chunk_count  # nothing ingested or indexed was lost
    answered = build(settings=settings, store=chunks, graph_store=graph).invoke({"question": QUESTION})
    assert answered["trace"]["action"] == "local" and "18,200" in answered["answer"]  # through the graph again
