"""langgraph.json really serves the graphs: `langgraph dev` offline, CRAG invoked through the SDK."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphcraft.testing import langgraph_dev

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if shutil.which("langgraph") is None:
        pytest.skip("langgraph-cli is not installed (extra: server)")
    with langgraph_dev(tmp_path_factory.mktemp("lgserver")) as url:
        yield url


def test_every_graph_is_served_and_crag_answers_through_the_sdk(server: str, tmp_path: Path) -> None:
    import json

    from langgraph_sdk import get_sync_client

    import graphcraft

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "owls.md").write_text("# Owls\n\nThe barn owl nests in old barns and church towers.")
    graphcraft.ingest([docs], store=tmp_path / "store")
    client = get_sync_client(url=server)
    served = {a["graph_id"] for a in client.assistants.search(limit=100)}
    assert served == set(json.loads((ROOT / "langgraph.json").read_text())["graphs"])
    final = client.runs.wait(
        None,
        "crag",
        input={"question": "Where does the barn owl nest?"},
        config={"configurable": {"store": str(tmp_path / "store")}},
    )
    assert final["trace"]["action"] == "correct" and "barns" in final["answer"]
    assert final["sources"][0]["source"].endswith("owls.md")
    # Served runs are audited like `graphcraft.ask` runs: one entry, the question only as its hash, a valid chain.
    from graphcraft.guards.audit import verify

    entries = [json.loads(line) for line in (tmp_path / "store" / "audit.jsonl").read_text().splitlines()]
    assert [e.get("graph") for e in entries] == ["crag"] and "barn owl" not in json.dumps(entries)
    assert verify(tmp_path / "store") is None


ASK_SHAPE = {"question", "answer", "sources", "trace"}


def test_every_served_graph_takes_a_question_and_returns_only_the_ask_shape(server: str, tmp_path: Path) -> None:
    """Through the server a client gets the `ask` result, not the graph's working state; per-run
    configuration (store, chat model, bounds) reaches RAG and agent graphs alike."""
    from langgraph_sdk import get_sync_client

    import graphcraft

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "owls.md").write_text("# Owls\n\nThe barn owl nests in old barns and church towers.")
    graphcraft.ingest([docs], store=tmp_path / "store")
    client = get_sync_client(url=server)
    for assistant in client.assistants.search(limit=100):
        schemas = client.assistants.get_schemas(assistant["assistant_id"])
        assert set(schemas["output_schema"]["properties"]) == ASK_SHAPE, assistant["graph_id"]
        assert "question" in schemas["input_schema"]["properties"], assistant["graph_id"]
    offline = {"store": str(tmp_path / "store")}
    for graph in ("self_rag", "router", "hierarchical_rag"):
        out = client.runs.wait(
            None, graph, input={"question": "Where does the barn owl nest?"}, config={"configurable": offline}
        )
        assert set(out) == ASK_SHAPE and "barn" in out["answer"].lower(), (graph, out)
        assert out["trace"]["graph"] == graph and "steps" in out["trace"]
    local = {"chat_model": "local", "max_tokens": 48, "max_iterations": 1, "max_llm_calls": 3}
    out = client.runs.wait(None, "reflection", input={"question": "Name one bird."}, config={"configurable": local})
    assert set(out) == ASK_SHAPE and out["trace"]["llm_calls"] >= 1 and out["trace"]["bounds"]["max_llm_calls"] == 3


def test_a_graphs_user_facing_errors_reach_the_client_with_their_message(server: str, tmp_path: Path) -> None:
    """Not "An internal error occurred": the client reads the same one line the command line prints."""
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    empty = str(tmp_path / "nothing-here")
    with pytest.raises(Exception, match=r"EmptyStoreError: store .*nothing-here is empty: run `graphcraft ingest"):
        client.runs.wait(None, "crag", input={"question": "Why?"}, config={"configurable": {"store": empty}})
    with pytest.raises(Exception, match=r"NoChatModelError: the reflection graph cannot run without a chat model"):
        client.runs.wait(None, "reflection", input={"question": "Why?"}, config={"configurable": {"chat_model": ""}})
    with pytest.raises(Exception, match=r"SettingsError: invalid setting top_k=0"):
        client.runs.wait(None, "crag", input={"question": "Why?"}, config={"configurable": {"top_k": 0}})


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_sigterm_to_the_dev_server_leaves_no_falkordb_behind(tmp_path: Path) -> None:
    """graph_rag starts a private FalkorDB inside the server; stopping the server stops it too (saved)."""
    if shutil.which("langgraph") is None:
        pytest.skip("langgraph-cli is not installed (extra: server)")
    from langgraph_sdk import get_sync_client

    import graphcraft

    docs, store = tmp_path / "docs", tmp_path / "store"
    docs.mkdir()
    (docs / "people.md").write_text("# People\n\nAda Lovelace worked with Charles Babbage in London.")
    graphcraft.ingest([docs], store=store)
    # Built by another process, like `graphcraft graph build`, whose FalkorDB stops when it exits: the one the
    # served graph uses is then the server's own.
    build = [sys.executable, "-m", "graphcraft.cli", "graph", "build", "--store", str(store)]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    (workdir := tmp_path / "server").mkdir()
    with langgraph_dev(workdir) as url:  # leaving it sends the server SIGTERM
        out = get_sync_client(url=url).runs.wait(
            None,
            "graph_rag",
            input={"question": "Who worked with Babbage?"},
            config={"configurable": {"store": str(store)}},
        )
        assert "Ada Lovelace" in out["answer"]
        servers = [
            pid for pid in _processes_mentioning("redis-server") if str(store) in os.readlink(f"/proc/{pid}/cwd")
        ]
        assert servers, "graph_rag did not start the store's FalkorDB inside the server"
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in servers):
        time.sleep(0.2)
    assert not [pid for pid in servers if Path(f"/proc/{pid}").exists()], "FalkorDB outlived the dev server"
