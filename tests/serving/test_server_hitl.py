"""Human in the loop through LangGraph Server: a served graph pauses for plan approval and a
langgraph-sdk client resumes it with Command(resume=...), on `langgraph dev` (offline)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import free_port

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("langgraph") is None:
        pytest.skip("langgraph-cli is not installed (extra: server)")
    workdir = tmp_path_factory.mktemp("hitl_server")
    shutil.copy(HERE / "served_graphs.py", workdir / "served_graphs.py")
    config = {"dependencies": ["."], "graphs": {"plan_review": "./served_graphs.py:graph"}}
    (workdir / "langgraph.json").write_text(json.dumps(config))
    port = free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", "HF_HUB_OFFLINE": "1"}
    command = ["langgraph", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail("langgraph dev exited: " + proc.stdout.read().decode()[-2000:])  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "langgraph dev did not answer /ok within 180 s"
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_served_graph_pauses_for_the_plan_and_resumes_with_a_command(server: str, tmp_path: Path) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread = client.threads.create()["thread_id"]
    configurable = {"approve_plan": True, "store": str(tmp_path / "store")}  # a per-run graph option
    paused = client.runs.wait(
        thread, "plan_review", input={"question": "Count the owls."}, config={"configurable": configurable}
    )
    state = client.threads.get_state(thread)
    interrupts = [i for task in state["tasks"] for i in task.get("interrupts", [])]
    assert state["next"] == ["review_plan"] and len(interrupts) == 1, (paused, state)
    payload = interrupts[0]["value"]
    assert payload["kind"] == "plan" and [s["id"] for s in payload["plan"]] == ["s1", "s2"]

    edit = {"action": "edit", "value": [{"id": "e1", "description": "ask the owl society"}]}
    client.runs.wait(thread, "plan_review", command={"resume": edit}, config={"configurable": configurable})
    again = client.threads.get_state(thread)
    shown = [i["value"] for task in again["tasks"] for i in task.get("interrupts", [])]
    assert [s["id"] for s in shown[0]["plan"]] == ["e1"]
    done = client.runs.wait(thread, "plan_review", command={"resume": "approve"}, config={"configurable": configurable})
    assert set(done) == {"question", "answer", "sources", "trace"}
    assert done["answer"] == "Done: did ask the owl society" and done["trace"]["action"] == "completed"
    assert [a["decision"] for a in done["trace"]["approval"]] == ["edit", "approve"]
