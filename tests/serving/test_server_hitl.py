"""Human in the loop through LangGraph Server: a served graph pauses for plan approval and a
langgraph-sdk client resumes it with Command(resume=...), on `langgraph dev` (offline)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphcraft.testing import langgraph_dev

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("langgraph") is None:
        pytest.skip("langgraph-cli is not installed (extra: server)")
    workdir = tmp_path_factory.mktemp("hitl_server")
    shutil.copy(HERE / "served_graphs.py", workdir / "served_graphs.py")
    served = {
        "plan_review": "./served_graphs.py:graph",
        "plan_execute": "./served_graphs.py:graph",  # the README's client example drives it
        "crag": "./graphcraft/graphs/crag.py:graph",
    }
    with langgraph_dev(workdir, served) as url:
        yield url


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


README = Path(__file__).parents[2] / "README.md"


def readme_client_example() -> str:
    """The python block that follows the README's `<!-- client-example -->` marker."""
    text = README.read_text(encoding="utf-8")
    after = text.split("<!-- client-example -->", 1)[1]
    return after.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_client_example_runs_against_a_served_graph(server: str, tmp_path: Path) -> None:
    """The README's SDK example, executed as written: a run, a streamed thread, a pause resumed with a Command."""
    import os
    import subprocess
    import sys

    import graphcraft

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "owls.md").write_text("# Owls\n\nThe barn owl nests in old barns and church towers. Foxes eat barn owls.")
    graphcraft.ingest([docs], store=tmp_path / "store")
    env = {**os.environ, "LANGGRAPH_URL": server, "GRAPHCRAFT_STORE": str(tmp_path / "store")}
    run = subprocess.run(
        [sys.executable, "-c", readme_client_example()], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert "barns" in lines[0] and "owls.md" in lines[0] and lines[0].endswith("correct"), lines[0]
    assert any(line.startswith("node finished:") for line in lines), run.stdout
    assert "proposed plan: ['find owls', 'count owls']" in lines, run.stdout
    assert lines[-1].startswith("answer: Done: did find owls"), run.stdout
