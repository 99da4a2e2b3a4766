"""langgraph.json really serves the graphs: `langgraph dev` offline, CRAG invoked through the SDK."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if shutil.which("langgraph") is None:
        pytest.skip("langgraph-cli is not installed (extra: server)")
    workdir = tmp_path_factory.mktemp("lgserver")
    shutil.copy(ROOT / "langgraph.json", workdir / "langgraph.json")
    (workdir / "graphcraft").symlink_to(ROOT / "graphcraft")
    port = free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        ["langgraph", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail("langgraph dev exited: " + proc.stdout.read().decode()[-2000:])  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("langgraph dev did not answer /ok within 180 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


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
