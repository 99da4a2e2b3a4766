import json

from typer.testing import CliRunner

from graphcraft.cli import app
from graphcraft.cli_run import run_task
from graphcraft.testing import ScriptedChatModel, tool_call


def test_run_task_with_a_model_returns_answer_and_trace(tmp_path):
    model = ScriptedChatModel(script=[tool_call("calculator", expression="2**10"), "1024"])
    result = run_task("tool_agent", "what is 2**10?", model=model, store=tmp_path / "s", workspace=tmp_path / "ws")
    assert result["answer"] == "1024" and result["question"] == "what is 2**10?"
    assert result["trace"]["graph"] == "tool_agent" and result["trace"]["tool_calls"][0]["output"] == "1024"


def test_run_task_ignores_options_a_graph_does_not_take(tmp_path):
    model = ScriptedChatModel(script=["Answer: 4"] * 3)
    result = run_task("self_consistency", "2+2?", model=model, n=3, workspace=tmp_path, enable_python=True)
    assert result["answer"] == "4" and result["trace"]["n"] == 3


def test_run_task_thread_resumes(tmp_path):
    first = ScriptedChatModel(script=["Hello Ada."])
    run_task("tool_agent", "I am Ada.", model=first, store=tmp_path / "s", thread_id="chat")
    second = ScriptedChatModel(script=["You are Ada."])
    run_task("tool_agent", "Who am I?", model=second, store=tmp_path / "s", thread_id="chat")
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
    """The CLI path end to end, with the graph's model injected where the CLI resolves it."""
    import graphcraft.cli_run as cli_run

    model = ScriptedChatModel(
        script=["A short poem."]
        + [{"scores": [{"criterion": c, "score": 9} for c in ("correctness", "completeness", "clarity")]}]
    )
    original = cli_run.run_task
    monkeypatch.setattr(cli_run, "run_task", lambda *a, **k: original(*a, model=model, **k))
    result = CliRunner().invoke(app, ["run", "reflection", "write a poem", "--json", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] == "A short poem." and data["trace"]["stop_reason"] == "threshold"
