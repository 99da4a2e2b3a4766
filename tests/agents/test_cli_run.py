"""`graphcraft run GRAPH TASK` and the API function behind it, `graphcraft.api.ask`, on agent graphs."""

import json

import pytest
from typer.testing import CliRunner

from graphcraft.api import ask
from graphcraft.cli import app
from graphcraft.errors import GraphcraftError
from graphcraft.testing import ScriptedChatModel, tool_call


def test_api_run_with_a_model_returns_answer_and_trace(tmp_path):
    model = ScriptedChatModel(script=[tool_call("calculator", expression="2**10"), "1024"])
    result = ask("what is 2**10?", graph="tool_agent", model=model, store=tmp_path / "s", workspace=tmp_path / "ws")
    assert result["answer"] == "1024" and result["question"] == "what is 2**10?"
    assert result["trace"]["graph"] == "tool_agent" and result["trace"]["tool_calls"][0]["output"] == "1024"


def test_api_run_ignores_options_a_graph_does_not_take(tmp_path):
    model = ScriptedChatModel(script=["Answer: 4"] * 3)
    result = ask("2+2?", graph="self_consistency", model=model, n=3, workspace=tmp_path, enable_python=True)
    assert result["answer"] == "4" and result["trace"]["n"] == 3


def test_api_run_thread_resumes(tmp_path):
    first = ScriptedChatModel(script=["Hello Ada."])
    ask("I am Ada.", graph="tool_agent", model=first, store=tmp_path / "s", thread_id="chat")
    second = ScriptedChatModel(script=["You are Ada."])
    ask("Who am I?", graph="tool_agent", model=second, store=tmp_path / "s", thread_id="chat")
    assert "I am Ada." in second.calls[0].text
    assert (tmp_path / "s" / "checkpoints.sqlite").exists()


def test_cli_without_model_prints_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHCRAFT_CHAT_MODEL", raising=False)
    result = CliRunner().invoke(app, ["run", "reflection", "write a haiku", "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert "GRAPHCRAFT_CHAT_MODEL" in result.output and "Traceback" not in result.output


def test_cli_unknown_graph(tmp_path):
    result = CliRunner().invoke(app, ["run", "nope", "task", "--json"])
    assert result.exit_code == 1 and "unknown graph 'nope'" in result.output and "tool_agent" in result.output


def test_cli_json_output_with_configured_fake(monkeypatch, tmp_path):
    """The CLI path end to end (command line -> API -> graph), the configured chat model being a scripted one."""
    import graphcraft.models

    model = ScriptedChatModel(
        script=["A short poem."]
        + [{"scores": [{"criterion": c, "score": 9} for c in ("correctness", "completeness", "clarity")]}]
    )
    monkeypatch.setattr(graphcraft.models, "get_chat_model", lambda settings=None: model)
    result = CliRunner().invoke(app, ["run", "reflection", "write a poem", "--json", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] == "A short poem." and data["trace"]["action"] == "passed"
    assert data["trace"]["stop_reason"] is None  # the draft met the threshold: no bound stopped the run
    assert data["trace"]["graph"] == "reflection" and len(model.calls) == 2


def test_a_thread_on_a_graph_without_threads_is_refused_before_anything_is_written(monkeypatch, tmp_path):
    import types

    import graphcraft.api

    def build(model=None, settings=None, *, rounds=3):  # a graph whose build() takes no checkpointer
        raise AssertionError("not built")

    monkeypatch.setattr(graphcraft.api, "load_graph_module", lambda name: types.SimpleNamespace(build=build))
    with pytest.raises(GraphcraftError, match="graph 'stateless' does not keep conversation threads"):
        ask("x", graph="stateless", store=tmp_path / "s", thread_id="t")
    result = CliRunner().invoke(app, ["run", "stateless", "x", "--thread", "t", "--store", str(tmp_path / "s")])
    assert result.exit_code == 1 and "does not keep conversation threads" in result.output
    assert not (tmp_path / "s").exists()


def test_cli_thread_continues_a_conversation_through_the_api(monkeypatch, tmp_path):
    import graphcraft.models

    script = iter([ScriptedChatModel(script=["Hello Ada."]), ScriptedChatModel(script=["You are Ada."])])
    models: list[ScriptedChatModel] = []
    monkeypatch.setattr(graphcraft.models, "get_chat_model", lambda settings=None: models[-1])
    for task in ("I am Ada.", "Who am I?"):
        models.append(next(script))
        args = ["run", "tool_agent", task, "--thread", "chat", "--store", str(tmp_path), "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["answer"] == "You are Ada." and "I am Ada." in models[-1].calls[0].text
