"""Multi-agent graphs under the wall-clock bound, and with models that cannot be reached."""

from __future__ import annotations

import time

import pytest

from graphcraft.config import get_settings
from graphcraft.errors import ModelError
from graphcraft.graphs import consensus, supervisor
from graphcraft.testing import ScriptedChatModel

from .scripted_agents import agent, pos

MAX_SECONDS = 0.6
DOWN = ConnectionError("connection refused")


def timed():
    return get_settings(max_seconds=MAX_SECONDS, token_budget=10_000_000)


def test_consensus_deadlock_stops_at_the_clock_and_decides_on_the_last_round() -> None:
    team = [agent("a", pos("yes"), latency_s=0.05), agent("b", pos("no"), latency_s=0.05)]
    started = time.perf_counter()
    out = consensus.build(agents=team, rounds=1000, max_llm_calls=100_000, settings=timed()).invoke(
        {"question": "Ship?"}
    )
    seconds = time.perf_counter() - started
    trace = out["trace"]
    assert trace["stop_reason"] == "max_seconds" and trace["bounds"]["max_seconds"] == MAX_SECONDS
    assert MAX_SECONDS <= seconds < MAX_SECONDS + 1.5
    assert 1 <= len(trace["rounds"]) < 100 and out["trace"]["decision"] in ("yes", "no")
    assert out["trace"]["decided_on_round"] == trace["rounds"][-1]["round"]


def test_consensus_with_every_model_down_raises_the_model_error() -> None:
    team = [agent(name, DOWN) for name in ("a", "b", "c")]
    with pytest.raises(ModelError, match="ConnectionError: connection refused"):
        consensus.build(agents=team, rounds=1).invoke({"question": "Ship?"})
    assert all(a.model.call_count == 1 for a in team)  # round 0 only: no second round on a dead panel


def test_consensus_with_most_models_down_raises_the_model_error() -> None:
    team = [agent("a", pos("yes")), agent("b", DOWN), agent("c", DOWN)]
    with pytest.raises(ModelError, match="connection refused"):
        consensus.build(agents=team, rounds=1).invoke({"question": "Ship?"})


def test_consensus_with_a_minority_down_continues_and_names_it() -> None:
    team = [agent("a", pos("yes")), agent("b", pos("yes")), agent("c", DOWN)]
    out = consensus.build(agents=team, rounds=1).invoke({"question": "Ship?"})
    trace = out["trace"]
    [excluded] = trace["rounds"][0]["excluded"]
    assert excluded["agent"] == "c" and excluded["model_error"] is True
    assert "ConnectionError: connection refused" in excluded["errors"][0]
    assert out["trace"]["decision"] == "yes"
    assert trace["agents"]["c"]["llm_calls"] == 1 and trace["llm_calls"] == 3  # the failed call is counted


def test_consensus_malformed_positions_are_not_a_model_failure() -> None:
    team = [agent("a", "not json"), agent("b", "nor this")]
    out = consensus.build(agents=team, rounds=0, max_repairs=0).invoke({"question": "Ship?"})
    assert out["answer"].startswith("No decision") and out["trace"]["llm_calls"] == 2
    assert [e["model_error"] for e in out["trace"]["rounds"][0]["excluded"]] == [False, False]


def test_supervisor_endless_handoffs_stop_at_the_clock_with_the_last_report() -> None:
    boss = ScriptedChatModel(script=lambda call: {"next": "researcher", "task": "look again"}, latency_s=0.05)
    researcher = ScriptedChatModel(script=lambda call: "nothing new", latency_s=0.05)
    started = time.perf_counter()
    out = supervisor.build(
        boss, timed(), agents=[{"name": "researcher", "model": researcher}], max_handoffs=1000, max_llm_calls=100_000
    ).invoke({"question": "Loop forever?"})
    seconds = time.perf_counter() - started
    trace = out["trace"]
    assert trace["stop_reason"] == "max_seconds" and trace["who_did_what"][-1] == "supervisor stopped: max_seconds"
    assert MAX_SECONDS <= seconds < MAX_SECONDS + 1.5 and 1 <= trace["handoffs"] < 100
    assert out["answer"] == "nothing new" and trace["bounds"]["max_seconds"] == MAX_SECONDS


def test_supervisor_with_its_model_down_raises_the_model_error() -> None:
    down = ScriptedChatModel(script=lambda call: DOWN)
    with pytest.raises(ModelError, match="connection refused"):
        supervisor.build(down, agents=[{"name": "researcher"}]).invoke({"question": "Anything?"})
    assert down.call_count == 1
