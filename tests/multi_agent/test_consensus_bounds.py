"""Consensus options out of range fail fast with one-line GraphcraftErrors (API and CLI)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from graphcraft.chains.negotiate import TeamError, make_agents
from graphcraft.cli import app
from graphcraft.errors import GraphcraftError, NoChatModelError
from graphcraft.graphs import consensus
from graphcraft.testing import ScriptedChatModel

from .scripted_agents import agent, pos


@pytest.mark.parametrize("size", [0, -1, "0", "-3", ","])
def test_team_size_below_one_is_a_graphcraft_error(size) -> None:
    with pytest.raises(TeamError, match="at least one agent"):
        make_agents(size)


def test_team_beyond_max_agents_fails_before_agents_are_made() -> None:
    start = time.perf_counter()
    with pytest.raises(TeamError, match="at most 32 agents"):
        consensus.build(agents=100_000)
    assert time.perf_counter() - start < 1.0
    assert (
        len(
            consensus.build(ScriptedChatModel(script=lambda c: pos("yes")), agents=40, max_agents=40).invoke(
                {"question": "Go?"}, config={"recursion_limit": 50}
            )["trace"]["agents"]
        )
        == 40
    )


def test_duplicate_names_are_a_graphcraft_error() -> None:
    with pytest.raises(GraphcraftError, match="unique"):
        make_agents(["judge", "judge"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rounds": -5}, "rounds must be >= 0"),
        ({"rounds": "many"}, "rounds must be a number"),
        ({"threshold": 1.5}, "threshold must be between"),
        ({"max_repairs": -1}, "max_repairs must be >= 0"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
    ],
)
def test_options_out_of_range_are_graphcraft_errors(options, message) -> None:
    with pytest.raises(consensus.ConsensusOptionError, match=message):
        consensus.build(agents=2, **options)


def test_concurrency_is_capped() -> None:
    team = [agent(f"a{i}", pos("yes")) for i in range(20)]
    assert consensus.build(agents=team).config["max_concurrency"] == consensus.MAX_CONCURRENCY == 16
    assert consensus.build(agents=team[:3]).config["max_concurrency"] == 3
    assert consensus.build(agents=team, max_concurrency=4).config["max_concurrency"] == 4


def test_missing_model_fails_in_convene_before_any_agent_runs() -> None:
    with_model = agent("has_model", pos("yes"))
    graph = consensus.build(agents=[with_model, {"name": "no_model"}])
    start = time.perf_counter()
    with pytest.raises(NoChatModelError, match=r"^the consensus graph .*chat model"):
        graph.invoke({"question": "Anything?"})
    assert with_model.model.call_count == 0 and time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--agents", "0"], "at least one agent"),
        (["--agents", "-1"], "at least one agent"),
        (["--agents", "100000"], "at most 32 agents"),
        (["--rounds", "-5"], "rounds must be >= 0"),
        (["--agents", "5", "--max-llm-calls", "1"], "cannot fund round 0"),
    ],
)
def test_cli_prints_one_line_and_exits_1(args, message, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("GRAPHCRAFT_CHAT_MODEL", raising=False)
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["run", "consensus", "x", "--store", str(tmp_path), *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert time.perf_counter() - start < 5.0


def test_cli_without_model_fails_fast(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("GRAPHCRAFT_CHAT_MODEL", raising=False)
    result = CliRunner().invoke(
        app, ["run", "consensus", "x", "--agents", "32", "--max-llm-calls", "200", "--store", str(tmp_path)]
    )
    assert result.exit_code == 1 and "GRAPHCRAFT_CHAT_MODEL" in result.output and "Traceback" not in result.output
