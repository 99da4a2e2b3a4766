"""adaptive_rag: classification routes to each strategy, feedback changes the choice, a per-call
budget excludes expensive strategies, the graph's own options given per run, malformed classifier
output falls back, a node called on its own, and the `graphcraft feedback` command records scores
and prints insights."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from graphcraft.api import build_graph
from graphcraft.graphs import adaptive_rag
from graphcraft.memory.feedback import FeedbackError, FeedbackStore, record, stats
from graphcraft.runtime.accounting import empty_usage
from graphcraft.runtime.result import TRACE_KEYS

from .conftest import all_relevant, scripted

SINGLE = "Who is the chief executive of Lindqvar Metropolitan Transit?"
MULTI = "What is the population of the district where Halvard Robotics has its head office?"
OVERVIEW = "Describe Lindqvar's tram network."


@pytest.fixture()
def offline(fresh_store):  # type: ignore[no-untyped-def]
    return build_graph("adaptive_rag", store=fresh_store)


def test_each_query_class_gets_its_strategy_offline(offline, fresh_store) -> None:  # type: ignore[no-untyped-def]
    runs = {q: offline.invoke({"question": q}) for q in ("What is 17 * 3?", SINGLE, MULTI, OVERVIEW)}
    got = {q: (r["trace"]["query_class"], r["trace"]["action"]) for q, r in runs.items()}
    assert got == {
        "What is 17 * 3?": ("no_retrieval", "direct"),
        SINGLE: ("single_hop", "hybrid"),
        MULTI: ("multi_hop", "multi_hop"),
        OVERVIEW: ("overview", "hierarchical"),
    }
    assert runs["What is 17 * 3?"]["answer"] == "17 * 3 = 51"
    assert (
        runs[MULTI]["trace"]["subgraph"] == "multihop" and runs[MULTI]["trace"]["subgraph_trace"]["graph"] == "multihop"
    )
    assert runs[MULTI]["trace"]["stop_reason"] == runs[MULTI]["trace"]["subgraph_trace"].get("stop_reason")
    assert runs[OVERVIEW]["sources"] and runs[OVERVIEW]["trace"]["subgraph"] == "hierarchical_rag"
    assert runs[SINGLE]["trace"]["grading"]["evaluator"] == "local" and runs[SINGLE]["trace"]["stop_reason"] is None
    for r in runs.values():
        trace = r["trace"]
        assert set(r) == {"question", "answer", "sources", "trace"} and set(TRACE_KEYS) <= set(trace)
        assert trace["run_id"] and trace["candidates"][0]["strategy"] == trace["action"]
        assert trace["classification"]["reasons"]
    logged = {row["strategy"]: row["runs"] for row in stats(fresh_store)}
    assert logged == {"direct": 1, "hybrid": 1, "multi_hop": 1, "hierarchical": 1}


def test_general_knowledge_offline_excludes_direct_answering(offline) -> None:  # type: ignore[no-untyped-def]
    out = offline.invoke({"question": "How many days are there in a leap year?"})
    trace = out["trace"]
    assert trace["query_class"] == "no_retrieval" and trace["action"] != "direct"
    direct = next(c for c in trace["candidates"] if c["strategy"] == "direct")
    assert direct["excluded"] == "unavailable"


def test_feedback_moves_the_choice(offline, fresh_store) -> None:  # type: ignore[no-untyped-def]
    first = offline.invoke({"question": SINGLE})
    assert first["trace"]["action"] == "hybrid"
    record(first["trace"]["run_id"], 0.0, fresh_store)
    record(SINGLE, 0.0, fresh_store)  # by question: the latest run of it
    for _ in range(3):
        record("some other single-hop question", 1.0, fresh_store, strategy="keyword")
    second = offline.invoke({"question": SINGLE})
    assert second["trace"]["action"] == "keyword"
    keyword = next(c for c in second["trace"]["candidates"] if c["strategy"] == "keyword")
    assert keyword["feedback"] == 3 and keyword["quality"] > keyword["prior"]
    with pytest.raises(FeedbackError):
        record("never asked", 0.5, fresh_store)
    with pytest.raises(FeedbackError):
        record(SINGLE, 1.5, fresh_store)


def test_per_call_budget_excludes_expensive_strategies(fresh_store) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {"_QueryKind": {"kind": "multi_hop", "reason": "bridge"}, "_Grades": all_relevant},
        text="Ferrowharf has 38,400 inhabitants [1].",
    )
    graph = build_graph("adaptive_rag", model=model, store=fresh_store)
    out = graph.invoke({"question": MULTI}, config={"configurable": {"max_llm_calls": 4}})
    trace = out["trace"]
    assert trace["query_class"] == "multi_hop" and trace["action"] != "multi_hop"
    multi = next(c for c in trace["candidates"] if c["strategy"] == "multi_hop")
    assert "LLM calls" in multi["excluded"]
    assert trace["llm_calls"] <= 4


def test_graph_options_given_per_run(fresh_store) -> None:  # type: ignore[no-untyped-def]
    model = scripted({"_QueryKind": {"kind": "multi_hop", "reason": "bridge"}, "_Grades": all_relevant}, text="x")
    graph = build_graph("adaptive_rag", model=model, store=fresh_store, log_runs=False)
    local = graph.invoke({"question": OVERVIEW}, config={"configurable": {"classifier": "local", "log_runs": True}})
    assert local["trace"]["classification"]["strategy"] == "local" and local["trace"]["query_class"] == "overview"
    assert not any(call.schema == "_QueryKind" for call in model.calls)  # the LLM classifier was not asked
    assert [row["runs"] for row in stats(fresh_store)] == [1]  # logged, though the build said not to
    llm = graph.invoke({"question": OVERVIEW})
    assert llm["trace"]["classification"]["strategy"] == "llm" and llm["trace"]["query_class"] == "multi_hop"
    assert [row["runs"] for row in stats(fresh_store)] == [1]


def test_select_strategy_node_on_its_own(fresh_store) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("adaptive_rag", model=scripted(), store=fresh_store, max_llm_calls=20)
    state = {"question": MULTI, "query_class": "multi_hop", "usage": empty_usage(), "steps": []}
    update = adaptive_rag.select_strategy(state, graph.config)
    assert update["strategy"] == "multi_hop" and update["steps"][0]["budget"]["max_llm_calls"] == 20
    budgeted = {"configurable": {**graph.config["configurable"], "max_llm_calls": 4}}
    update = adaptive_rag.select_strategy(state, budgeted)
    assert update["strategy"] != "multi_hop" and update["steps"][0]["budget"]["max_llm_calls"] == 4
    assert adaptive_rag.route_strategy({**state, **update}) == "retrieve"


def test_malformed_classifier_reply_falls_back_to_local_signals(fresh_store) -> None:  # type: ignore[no-untyped-def]
    model = scripted({"_Grades": all_relevant}, text="definitely not JSON")
    graph = build_graph("adaptive_rag", model=model, store=fresh_store)
    out = graph.invoke({"question": OVERVIEW}, config={"configurable": {"max_llm_calls": 20}})
    assert out["trace"]["classification"]["strategy"] == "llm->local_fallback"
    assert out["trace"]["query_class"] == "overview"


def test_direct_answer_with_a_model(fresh_store) -> None:  # type: ignore[no-untyped-def]
    model = scripted({"_QueryKind": {"kind": "no_retrieval", "reason": "general knowledge"}}, text="366 days.")
    out = build_graph("adaptive_rag", model=model, store=fresh_store).invoke(
        {"question": "How many days are there in a leap year?"}
    )
    assert out["trace"]["action"] == "direct" and out["answer"] == "366 days." and out["trace"]["llm_calls"] == 2


def test_feedback_cli(offline, fresh_store) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.cli import app

    run = offline.invoke({"question": SINGLE})
    runner = CliRunner()
    result = runner.invoke(app, ["feedback", run["trace"]["run_id"], "--score", "0.75", "--store", str(fresh_store)])
    assert result.exit_code == 0, result.output
    assert "0.75" in result.output and "hybrid" in result.output
    result = runner.invoke(app, ["feedback", "--insights", "--store", str(fresh_store)])
    assert result.exit_code == 0 and "hybrid" in result.output and "performance insights" in result.output
    result = runner.invoke(app, ["feedback", "unknown question", "--score", "0.5", "--store", str(fresh_store)])
    assert result.exit_code == 1
    assert FeedbackStore(fresh_store).stats()[0]["feedback"] == 1
