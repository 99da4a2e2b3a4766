"""The whole-run cost budget (GRAPHCRAFT_MAX_COST_USD) and budgets that hold across a subgraph.

Cost comes from the tokens each call reports (ScriptedChatModel reports len(text) // 4, plus 8 per
tool call) and the per-million-token prices; here completion tokens cost $1 each and prompts are
free, so every call's cost is known from its reply. Retrieval is real (MiniLM, FAISS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphcraft.config import get_settings, reset_settings_cache
from graphcraft.graphs import adaptive_rag, multihop, reflection
from graphcraft.runtime.accounting import Usage
from graphcraft.runtime.bounds import Bounds, enclosing_usage, within_run
from graphcraft.testing import ScriptCall, ScriptedChatModel

FAILING = {"scores": [{"criterion": c, "score": 2} for c in reflection.DEFAULT_CRITERIA], "summary": "weak"}
KIND = {"kind": "multi_hop", "reason": "bridge"}
PLAN = {
    "sub_questions": [
        {"id": "q1", "question": "In which district does Verdant Labs have its head office?", "depends_on": []},
        {"id": "q2", "question": "How many residents does {q1} have?", "depends_on": ["q1"]},
    ]
}


def structured_cost(reply: dict) -> float:
    """What a structured reply costs: ScriptedChatModel's completion tokens at $1 a token."""
    return float(len(json.dumps(reply)) // 4 + 8)


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHCRAFT_PROMPT_COST_PER_MTOK", "0")
    monkeypatch.setenv("GRAPHCRAFT_COMPLETION_COST_PER_MTOK", "1000000")
    reset_settings_cache()


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from graphcraft.api import ingest
    from tests.hierarchy_multihop.corpus import CORPUS, write

    root = tmp_path_factory.mktemp("cost")
    report = ingest([write(root / "corpus", CORPUS)], store=root / "store")
    assert not report["failed"]
    return root / "store"


# ---------------------------------------------------------------------------- the bound itself


def test_cost_bound_is_reached_at_the_budget_and_zero_means_none() -> None:
    bounds = Bounds(max_cost_usd=0.5, max_llm_calls=100, token_budget=10**9)
    assert bounds.exhausted(Usage(cost_usd=0.49)) is None
    assert bounds.exhausted(Usage(cost_usd=0.5)) == "max_cost_usd"
    assert Bounds(max_llm_calls=100, token_budget=10**9).exhausted(Usage(cost_usd=10_000.0)) is None
    assert Bounds.from_settings(get_settings(max_cost_usd=2.5)).max_cost_usd == 2.5
    assert Bounds.from_settings(get_settings(max_cost_usd=2.5), max_cost_usd=1.0).max_cost_usd == 1.0


def test_within_run_adds_what_the_enclosing_runs_spent() -> None:
    bounds = Bounds(max_llm_calls=5, token_budget=10**9, max_cost_usd=1.0)
    assert bounds.exhausted(Usage(llm_calls=2)) is None and enclosing_usage() is None
    with within_run(Usage(llm_calls=2, cost_usd=0.25)):
        assert bounds.exhausted(Usage(llm_calls=2)) is None
        with within_run(Usage(llm_calls=1, cost_usd=0.5)):  # a subgraph of a subgraph
            assert bounds.exhausted(Usage(llm_calls=2)) == "max_llm_calls"
            assert bounds.exhausted(Usage(cost_usd=0.25)) == "max_cost_usd"
        assert bounds.exhausted(Usage(cost_usd=0.5)) is None
    assert bounds.exhausted(Usage(llm_calls=4)) is None and enclosing_usage() is None


# ---------------------------------------------------------------------------- a graph stops on cost


def test_reflection_stops_when_the_cost_budget_is_spent(priced: None) -> None:
    def script(call: ScriptCall) -> Any:
        return FAILING if call.schema == "Critique" else "a draft that is twenty chars"

    free = reflection.build(ScriptedChatModel(script=script), get_settings(max_iterations=5)).invoke({"question": "q"})
    assert free["trace"]["stop_reason"] == "max_iterations"
    per_round = structured_cost(FAILING) + len("a draft that is twenty chars") // 4
    budget = 2 * per_round  # a draft and a critique twice over
    model = ScriptedChatModel(script=script)
    out = reflection.build(model, get_settings(max_iterations=5, max_cost_usd=budget)).invoke({"question": "q"})
    trace = out["trace"]
    assert trace["stop_reason"] == "max_cost_usd" and trace["bounds"]["max_cost_usd"] == budget
    assert trace["cost"] == pytest.approx(budget) and model.call_count == 4 < free["trace"]["llm_calls"]
    assert out["answer"] == "a draft that is twenty chars"  # the best draft so far


# ---------------------------------------------------------------------------- across a subgraph


HOP = "Oldmere [1]"


def multihop_script(call: ScriptCall) -> Any:
    if call.schema == "_QueryKind":
        return KIND
    if call.schema == "Decomposition":
        return PLAN
    return HOP


def multihop_budget() -> float:
    """Enough for the multihop graph on its own (a plan, two hops, a composition), not for a
    classification before it."""
    budget = structured_cost(PLAN) + 3 * (len(HOP) // 4) + 1
    assert structured_cost(KIND) + structured_cost(PLAN) >= budget > structured_cost(PLAN)
    return budget


def test_a_subgraph_counts_what_its_parent_spent(priced: None, corpus_store: Path) -> None:
    model = ScriptedChatModel(script=multihop_script)
    settings = get_settings(store=corpus_store, max_cost_usd=multihop_budget())
    graph = multihop.build(model=model, settings=settings)
    alone = graph.invoke({"question": "How many people live where Verdant Labs is based?"})
    assert alone["trace"]["stop_reason"] is None and model.call_count == 4  # plan, two hops, composition

    model = ScriptedChatModel(script=multihop_script)
    graph = multihop.build(model=model, settings=settings)
    with within_run(Usage(llm_calls=1, cost_usd=structured_cost(KIND))):
        nested = graph.invoke({"question": "How many people live where Verdant Labs is based?"})
    assert nested["trace"]["stop_reason"] == "max_cost_usd" and model.call_count == 1  # the plan, then no hop


def test_adaptive_rag_cost_budget_holds_across_its_multihop_subgraph(priced: None, corpus_store: Path) -> None:
    """classify ($KIND) then the multihop subgraph's plan ($PLAN) spend the budget: the subgraph
    stops before its first hop, though on its own it had budget left."""
    budget = multihop_budget()
    model = ScriptedChatModel(script=multihop_script)
    graph = adaptive_rag.build(model=model, settings=get_settings(store=corpus_store, max_cost_usd=budget))
    out = graph.invoke({"question": "What is the population of the district where Verdant Labs has its head office?"})
    trace = out["trace"]
    assert trace["query_class"] == "multi_hop" and trace["action"] == "multi_hop"
    assert trace["stop_reason"] == "max_cost_usd"
    assert [c.schema for c in model.calls] == ["_QueryKind", "Decomposition"]
    assert trace["cost"] == structured_cost(KIND) + structured_cost(PLAN)


def test_prices_given_for_one_run_cost_that_run_and_no_other() -> None:
    """A price passed as an option (or a run's configurable) is the one the trace's cost uses; the
    environment's (none here) still prices a run that gives none."""
    import graphcraft

    reply = "A short reflection."
    model = ScriptedChatModel(script=lambda call: reply)
    priced_run = graphcraft.ask(
        "Name one bird.", graph="reflection", model=model, max_iterations=0, completion_cost_per_mtok=1_000_000
    )
    assert priced_run["trace"]["llm_calls"] >= 1
    assert priced_run["trace"]["cost"] == pytest.approx(priced_run["trace"]["completion_tokens"] * 1.0)
    free_run = graphcraft.ask("Name one bird.", graph="reflection", model=model, max_iterations=0)
    assert free_run["trace"]["completion_tokens"] > 0 and free_run["trace"]["cost"] == 0.0
