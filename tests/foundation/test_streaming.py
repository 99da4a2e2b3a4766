"""`graphcraft.api.stream` and `--stream`: node updates and model tokens as they happen, then the `ask` result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from typer.testing import CliRunner

import graphcraft.models
from graphcraft import api
from graphcraft.cli import app
from graphcraft.errors import UnknownGraphError
from graphcraft.testing import ScriptCall, ScriptedChatModel

runner = CliRunner()
QUESTION = "Where does the barn owl nest?"
CRITERIA = ("correctness", "completeness", "clarity")


class StreamingScriptedModel(ScriptedChatModel):
    """A scripted model that streams its text replies word by word, as a provider's streaming API does.

    Calls with tools bound (structured output) are not streamed (``disable_streaming``), like
    providers whose tool calls arrive whole; the last chunk carries the usage, as OpenAI's does.
    """

    disable_streaming: Any = "tool_calling"

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
        words = str(message.content).split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = AIMessageChunk(
                content=word if last else word + " ", usage_metadata=message.usage_metadata if last else None
            )
            yield ChatGenerationChunk(message=chunk)


def reflection_script(call: ScriptCall) -> Any:
    """Drafts that name their call; the first critique fails the draft (one refine), the second passes it."""
    if call.schema == "Critique":
        score = 4 if call.index == 1 else 9
        return {"scores": [{"criterion": c, "score": score, "feedback": "be concrete"} for c in CRITERIA]}
    return f"the barn owl nests in old barns, draft {call.index}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real store (MiniLM embeddings, FAISS) holding one document about owls."""
    folder = tmp_path_factory.mktemp("streaming") / "docs"
    folder.mkdir()
    (folder / "owls.md").write_text("# Owls\n\nThe barn owl hunts at night and nests in old barns and church towers.")
    path = folder.parent / "store"
    api.ingest([folder], store=path)
    return path


def audit_entries(store: Path) -> list[dict[str, Any]]:
    """The store's audit trail, oldest entry first."""
    return [json.loads(line) for line in (store / "audit.jsonl").read_text().splitlines()]


def test_offline_crag_streams_nodes_in_graph_order_and_ends_with_asks_result(store: Path) -> None:
    asked = api.ask(QUESTION, store=store)
    audited = len(audit_entries(store))
    events = list(api.stream(QUESTION, store=store))
    nodes = [e["node"] for e in events if e["type"] == "node"]
    assert nodes == ["retrieve", "evaluate", "refine", "generate"]
    assert asked["trace"]["action"] == "correct"  # the branch whose path is the one above
    assert "answer" in next(e["update"] for e in events if e.get("node") == "generate")
    assert [e["type"] for e in events].count("result") == 1 and events[-1]["type"] == "result"
    streamed = events[-1]["result"]
    assert streamed == asked and "barns" in streamed["answer"]
    entries = audit_entries(store)  # stream audits its run exactly as ask does: one entry, same content
    assert len(entries) == audited + 1
    skip = {"seq", "prev", "hash", "time"}
    assert {k: v for k, v in entries[-1].items() if k not in skip} == {
        k: v for k, v in entries[-2].items() if k not in skip
    }


def test_agent_graph_streams_tokens_whose_concatenation_per_node_is_the_reply(tmp_path: Path) -> None:
    model = StreamingScriptedModel(script=reflection_script)
    events = list(api.stream("Where does the barn owl nest?", graph="reflection", model=model, store=tmp_path))
    tokens: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "token":
            tokens.setdefault(event["node"], []).append(event["text"])
    assert len(tokens["generate"]) > 1  # word by word, not one piece
    assert "".join(tokens["generate"]) == "the barn owl nests in old barns, draft 0"
    assert "".join(tokens["refine"]) == "the barn owl nests in old barns, draft 2"
    nodes = [e["node"] for e in events if e["type"] == "node"]
    assert nodes == ["generate", "critique", "refine", "critique", "finalize"]
    # a token event comes before the node that spoke it finishes
    first_refine_token = next(i for i, e in enumerate(events) if e.get("node") == "refine")
    assert events[first_refine_token]["type"] == "token"
    result = events[-1]["result"]
    asked = api.ask(
        "Where does the barn owl nest?", "reflection", tmp_path, StreamingScriptedModel(script=reflection_script)
    )
    assert result["answer"] == "the barn owl nests in old barns, draft 2" == asked["answer"]
    assert result == asked


def test_stream_refuses_an_unknown_graph_at_the_call() -> None:
    with pytest.raises(UnknownGraphError):
        api.stream("hi", graph="nope")  # not deferred to the first event


def test_cli_ask_stream_prints_node_progress_and_the_answer(store: Path) -> None:
    result = runner.invoke(app, ["ask", QUESTION, "--store", str(store), "--stream"])
    assert result.exit_code == 0, result.output
    shown = result.stderr
    assert [n for n in ("retrieve", "evaluate", "refine", "generate") if f"✓ {n}" in shown] == [
        "retrieve",
        "evaluate",
        "refine",
        "generate",
    ]
    assert shown.index("✓ retrieve") < shown.index("✓ generate")
    assert "barns" in result.stdout and "graph=crag" in result.stdout


def test_cli_ask_stream_json_is_json_lines_ending_in_the_result(store: Path) -> None:
    result = runner.invoke(app, ["ask", QUESTION, "--store", str(store), "--stream", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["node"] for e in events if e["type"] == "node"] == ["retrieve", "evaluate", "refine", "generate"]
    assert events[-1]["type"] == "result" and set(events[-1]["result"]) == {"question", "answer", "sources", "trace"}
    plain = json.loads(runner.invoke(app, ["ask", QUESTION, "--store", str(store), "--json"]).stdout)
    assert events[-1]["result"]["answer"] == plain["answer"]


def test_cli_run_stream_prints_tokens_as_they_arrive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the configured chat model, a fresh script per run
    monkeypatch.setattr(
        graphcraft.models, "get_chat_model", lambda settings=None: StreamingScriptedModel(script=reflection_script)
    )
    result = runner.invoke(app, ["run", "reflection", "owls?", "--store", str(tmp_path), "--stream", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    words = [e["text"] for e in events if e["type"] == "token" and e["node"] == "generate"]
    assert "".join(words) == "the barn owl nests in old barns, draft 0"
    assert events[-1]["result"]["trace"]["graph"] == "reflection"
    live = runner.invoke(app, ["run", "reflection", "owls?", "--store", str(tmp_path), "--stream"])
    assert live.exit_code == 0, live.output
    assert "✓ critique" in live.stderr and "✓ finalize" in live.stderr
    assert live.stdout.startswith("the barn owl nests in old barns, draft 0")  # the tokens, before the answer
    assert "trace: reflection" in live.stdout


@pytest.mark.parametrize("command", [["ask", "hi", "--graph", "nope"], ["run", "nope", "task"]])
def test_cli_stream_unknown_graph_is_one_line_exit_1(command: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, [*command, "--store", str(tmp_path), "--stream", "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "unknown graph 'nope'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
