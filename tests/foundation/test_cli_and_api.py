"""The CLI and the Python API give the same results; bad input gives one-line errors."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

import graphcraft
from graphcraft.chains.answer import readable
from graphcraft.cli import app
from graphcraft.errors import EmptyStoreError, NoChatModelError, SettingsError, UnknownGraphError

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "docs"
    folder.mkdir()
    (folder / "owls.md").write_text("# Owls\n\nThe barn owl hunts at night and nests in old barns and church towers.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    return folder


def test_ingest_json_reports_files_added_skipped_failed(corpus: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(corpus), "--store", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["files"] == 2 and report["added"] == 1 and report["skipped"] == 0
    assert [Path(f["path"]).name for f in report["failed"]] == ["broken.pdf"]
    again = json.loads(runner.invoke(app, ["ingest", str(corpus), "--store", str(tmp_path / "s"), "--json"]).stdout)
    assert again["added"] == 0 and again["skipped"] == 1


def test_ask_json_matches_the_python_api(corpus: Path, tmp_path: Path) -> None:
    graphcraft.ingest([corpus], store=tmp_path / "s")
    result = runner.invoke(app, ["ask", "Where does the barn owl nest?", "--store", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    api = graphcraft.ask("Where does the barn owl nest?", store=tmp_path / "s")
    assert set(cli) == {"question", "answer", "sources", "trace"}
    assert cli["answer"] == api["answer"] and "barns" in cli["answer"]
    assert [s["chunk_id"] for s in cli["sources"]] == [s["chunk_id"] for s in api["sources"]]
    assert (
        {"source", "chunk_id", "page", "score", "text"}
        <= set(cli["sources"][0])
        <= {"source", "chunk_id", "page", "score", "text", "citation", "spans", "origin", "section"}
    )
    first = cli["sources"][0]  # the whole chunk, with the quoted sentence marked by its span
    ((start, end),) = first["spans"]
    assert first["citation"] == 1 and readable(first["text"][start:end]) in cli["answer"]
    assert {"graph", "action", "iterations", "llm_calls", "prompt_tokens", "completion_tokens"} <= set(cli["trace"])


def test_graphs_lists_every_graph_with_a_description() -> None:
    result = runner.invoke(app, ["graphs", "--json"])
    listed = json.loads(result.stdout)
    assert "crag" in listed and all(isinstance(d, str) and d for d in listed.values())
    modules = {
        p.stem for p in Path(graphcraft.__file__).parent.joinpath("graphs").glob("*.py") if not p.stem.startswith("_")
    }
    assert set(listed) == modules


def test_ingest_exits_1_when_every_file_failed(tmp_path: Path) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    result = runner.invoke(app, ["ingest", str(tmp_path / "bad.pdf"), "--store", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["failed"][0]["error"].startswith("corrupt")


def test_unknown_graph_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "hi", "--graph", "nope", "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown graph 'nope'" in result.output and "crag" in result.output and "Traceback" not in result.output
    with pytest.raises(UnknownGraphError):
        graphcraft.ask("hi", graph="nope")


def test_empty_store_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "hi", "--store", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "is empty: run `graphcraft ingest" in result.output
    with pytest.raises(EmptyStoreError):
        graphcraft.ask("hi", store=tmp_path / "nothing")


def test_every_graph_module_follows_the_contract() -> None:
    import importlib

    from graphcraft.graphs import available_graphs

    for name in available_graphs():
        module = importlib.import_module(f"graphcraft.graphs.{name}")
        assert callable(module.build), name
        assert module.graph is not None and hasattr(module.graph, "invoke"), name


def test_langgraph_json_lists_every_graph() -> None:
    import sys

    root = Path(graphcraft.__file__).parents[1]
    sys.path.insert(0, str(root / "scripts"))
    from write_langgraph_json import langgraph_config

    assert json.loads((root / "langgraph.json").read_text()) == langgraph_config(), (
        "run scripts/write_langgraph_json.py"
    )


def test_multimodal_ingest_and_ask_through_the_cli(tmp_path: Path) -> None:
    from graphcraft.eval.multimodal_data import make_sample_report

    (tmp_path / "docs").mkdir()
    report = make_sample_report(tmp_path / "docs" / "report.pdf")
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4 nothing else")
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "docs"), "--multimodal", "--store", str(tmp_path / "s"), "--json"]
    )
    assert result.exit_code == 0, result.output
    ingested = json.loads(result.stdout)
    assert ingested["added"] > 0 and [Path(f["path"]).name for f in ingested["failed"]] == ["broken.pdf"]
    table_q = next(q for q in report.questions if q.kind == "table")
    asked = runner.invoke(
        app, ["ask", table_q.question, "--graph", "multimodal_rag", "--store", str(tmp_path / "s"), "--json"]
    )
    assert asked.exit_code == 0, asked.output
    answer = json.loads(asked.stdout)
    assert table_q.answer in answer["answer"]
    assert answer["sources"][0]["page"] == report.pages["table"] and len(answer["sources"][0]["bbox"]) == 4


def test_hierarchy_command_builds_then_updates_nothing(corpus: Path, tmp_path: Path) -> None:
    graphcraft.ingest([corpus], store=tmp_path / "s")
    first = json.loads(runner.invoke(app, ["hierarchy", "--store", str(tmp_path / "s"), "--json"]).stdout)
    assert first["documents"] == 1 and first["built"] == 1 and first["usage"]["llm_calls"] == 0
    again = json.loads(runner.invoke(app, ["hierarchy", "--store", str(tmp_path / "s"), "--json"]).stdout)
    assert again["built"] == 0 and again["unchanged"] == 1 and again["summaries"] == 0


def test_text_that_looks_like_markup_is_printed_verbatim_and_citations_survive_json(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rho.md").write_text("# Archive\n\nThe Rho archive is stored in [/var/rho] on the [bold] server.")
    graphcraft.ingest([docs], store=tmp_path / "s")
    human = runner.invoke(app, ["ask", "Where is the Rho archive stored?", "--store", str(tmp_path / "s")])
    assert human.exit_code == 0, human.output
    assert "[/var/rho]" in human.stdout
    as_json = json.loads(
        runner.invoke(app, ["ask", "Where is the Rho archive stored?", "--store", str(tmp_path / "s"), "--json"]).stdout
    )
    assert as_json["sources"][0]["citation"] == 1 and "[1]" in as_json["answer"]


def _one_line_error(result: Result) -> str:
    """The single line a failed command printed (after checking it is one line, exit code 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["ask", "hi", "--graph", "nope"],
        ["ask", "hi", "--graph", "nope", "--json"],
        ["run", "nope", "task"],
    ],
)
def test_unknown_graph_is_one_line_naming_the_graphs(args: list[str], tmp_path: Path) -> None:
    line = _one_line_error(runner.invoke(app, [*args, "--store", str(tmp_path)]))
    assert "unknown graph 'nope'" in line and "crag" in line and "tool_agent" in line


@pytest.mark.parametrize(
    "args",
    [["ask", "hi"], ["ask", "hi", "--json"], ["calibration"], ["hierarchy"], ["graph", "stats"], ["graph", "build"]],
)
def test_missing_store_is_one_line_and_creates_nothing(args: list[str], tmp_path: Path) -> None:
    nothing = tmp_path / "nothing"
    line = _one_line_error(runner.invoke(app, [*args, "--store", str(nothing)]))
    assert f"store {nothing} is empty: run `graphcraft ingest PATH --store {nothing}` first" in line
    assert not nothing.exists()


def test_agent_graph_without_a_model_is_one_line_for_a_shell_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAPHCRAFT_CHAT_MODEL", raising=False)
    line = _one_line_error(runner.invoke(app, ["run", "tool_agent", "list the files", "--store", str(tmp_path)]))
    assert "the tool agent cannot run without a chat model: set GRAPHCRAFT_CHAT_MODEL" in line
    assert "model=" not in line  # advice for Python callers only
    with pytest.raises(NoChatModelError) as raised:  # the same error from Python keeps its own advice
        graphcraft.ask("list the files", graph="tool_agent", store=tmp_path)
    assert "pass model=" in str(raised.value) and "GRAPHCRAFT_CHAT_MODEL" in str(raised.value)


def test_missing_model_message_is_english_for_any_subject() -> None:
    for what in ("the consensus agents", "Text2Cypher", "the LLM router"):
        error = NoChatModelError(what)
        for message in (str(error), error.for_cli()):
            assert message.startswith(f"{what} cannot run without a chat model: ")
            assert "\n" not in message


def test_a_refused_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphcraft.config import reset_settings_cache

    with pytest.raises(SettingsError, match=r"invalid setting top_k=0: .*GRAPHCRAFT_TOP_K"):
        graphcraft.ask("hi", store=tmp_path, top_k=0)
    with pytest.raises(ValueError):  # what pydantic raised before, for callers that catch that
        graphcraft.ask("hi", store=tmp_path, top_k=0)
    monkeypatch.setenv("GRAPHCRAFT_TOP_K", "none")
    reset_settings_cache()
    try:
        line = _one_line_error(runner.invoke(app, ["ask", "hi", "--store", str(tmp_path)]))
    finally:
        monkeypatch.delenv("GRAPHCRAFT_TOP_K")
        reset_settings_cache()
    assert "invalid GRAPHCRAFT_TOP_K='none'" in line and "unset it" in line


def test_run_goes_through_the_python_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`graphcraft run` is `graphcraft.api.ask` with the command line's options, and prints what it returns."""
    from graphcraft import api
    from graphcraft.testing import ScriptedChatModel

    calls: list[tuple[tuple, dict]] = []
    original = api.ask

    def spy(*args: object, **kwargs: object) -> dict:
        calls.append((args, kwargs))
        return original(*args, model=ScriptedChatModel(script=["Answer: 4"] * 5), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "ask", spy)
    args = ["run", "self_consistency", "2+2?", "--store", str(tmp_path), "--max-llm-calls", "9", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ((positional, options),) = calls
    assert positional == ("2+2?",) and options["graph"] == "self_consistency" and options["max_llm_calls"] == 9
    assert Path(str(options["store"])) == tmp_path and options["thread_id"] is None
    printed = json.loads(result.stdout)
    direct = original("2+2?", graph="self_consistency", model=ScriptedChatModel(script=["Answer: 4"] * 5))
    assert set(printed) == {"question", "answer", "sources", "trace"} and printed["answer"] == direct["answer"] == "4"
    assert printed["trace"]["graph"] == "self_consistency"


def test_console_script_and_module_run_the_cli_package() -> None:
    import subprocess
    import sys
    import tomllib

    from graphcraft.cli import main

    root = Path(graphcraft.__file__).parents[1]
    target = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["graphcraft"]
    module_name, _, attribute = target.partition(":")
    assert getattr(importlib.import_module(module_name), attribute) is main
    listed = subprocess.run(
        [sys.executable, "-m", "graphcraft.cli", "graphs", "--json"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "crag" in json.loads(listed.stdout)


def test_ask_routes_settings_build_options_and_per_run_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings fields go into the validated settings, named build options to build(), per-run values to config."""
    import types

    from graphcraft import api
    from graphcraft.config import Settings

    seen: dict[str, object] = {}

    class Compiled:
        def invoke(self, inputs: dict, config: dict | None = None) -> dict:
            seen.update(inputs=inputs, config=config)
            return {"question": inputs["question"], "answer": "ok", "sources": [], "trace": {"action": "answered"}}

    def build(model=None, settings=None, *, store=None, rounds=3, checkpointer=None, **options):  # type: ignore[no-untyped-def]
        seen.update(model=model, settings=settings, store=store, rounds=rounds, checkpointer=checkpointer, rest=options)
        return Compiled()

    monkeypatch.setattr(api, "load_graph_module", lambda name: types.SimpleNamespace(build=build))
    saver = object()
    result = api.ask(
        "q?",
        graph="stub",
        store=tmp_path,
        config={"configurable": {"user_id": "old", "max_llm_calls": 2}, "tags": ["t"]},
        thread_id="chat",
        user_id="ada",
        top_k="3",  # a Settings field, validated like GRAPHCRAFT_TOP_K=3
        rounds=2,  # the graph's own build option
        workspace=tmp_path,  # an option this graph does not take: left out
        agents=None,  # unset command-line options are left out
        checkpointer=saver,  # the caller's checkpointer: no SQLite file is opened
    )
    assert result == {"question": "q?", "answer": "ok", "sources": [], "trace": {"action": "answered", "graph": "stub"}}
    settings = seen["settings"]
    assert isinstance(settings, Settings) and settings.top_k == 3 and settings.store == tmp_path
    assert seen["store"] is None and seen["rounds"] == 2 and seen["checkpointer"] is saver and seen["rest"] == {}
    assert seen["config"] == {
        "configurable": {"user_id": "ada", "max_llm_calls": 2, "thread_id": "chat"},
        "tags": ["t"],
    }
    assert not (tmp_path / "checkpoints.sqlite").exists()


def test_the_package_exposes_the_api_functions_lazily() -> None:
    from graphcraft import api

    for name in ("ask", "ingest", "remove", "calibration", "feedback", "graph_stats"):
        assert getattr(graphcraft, name) is getattr(api, name)
    with pytest.raises(AttributeError):
        graphcraft.no_such_function  # noqa: B018
