"""The CLI and the Python API give the same results; bad input gives one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import graphcraft
from graphcraft.chains.answer import readable
from graphcraft.cli import app
from graphcraft.errors import EmptyStoreError, UnknownGraphError

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
