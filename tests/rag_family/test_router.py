"""router: offline cheap-signal routes, and every route chosen by a scripted LLM (parametric,
tools, retrieval, hybrid with a calculator call), plus a malformed routing reply."""

from __future__ import annotations

from graphcraft.api import build_graph
from graphcraft.chains.direct import NEEDS_MODEL

from .conftest import all_relevant, is_correct, scripted


def test_offline_routes(store_dir) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("router", store=store_dir)
    maths = graph.invoke({"question": "What is 144 divided by 12?"})
    assert (maths["trace"]["route"], maths["answer"], maths["trace"]["router"]) == ("tools", "144 / 12 = 12", "local")
    general = graph.invoke({"question": "How many days are there in a leap year?"})
    assert general["trace"]["route"] == "retrieval" and "chat model" in general["trace"]["reason"]
    fact = graph.invoke({"question": "How many tram stops does the LMT network have?"})
    assert fact["trace"]["route"] == "retrieval" and fact["sources"] and is_correct(fact["answer"], [["92"]])
    assert fact["trace"]["grading"]["evaluator"] == "local"


def test_llm_routes_parametric_and_tools(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted({"RouteChoice": {"route": "parametric", "reason": "general knowledge"}}, text="366 days.")
    out = build_graph("router", model=model, store=store_dir).invoke(
        {"question": "How many days are there in a leap year?"}
    )
    assert (out["trace"]["route"], out["answer"], out["trace"]["llm_calls"]) == ("parametric", "366 days.", 2)
    model = scripted({"RouteChoice": {"route": "tools", "reason": "sum", "expression": "1312 + 559"}})
    out = build_graph("router", model=model, store=store_dir).invoke({"question": "What year is 559 years after 1312?"})
    assert out["trace"]["route"] == "tools" and out["answer"] == "1312 + 559 = 1871"


def test_parametric_route_offline_says_it_needs_a_model(store_dir) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("router", store=store_dir)
    out = graph.invoke({"question": "x", "route": "parametric"})  # routing still runs and decides for itself
    assert out["trace"]["route"] in {"retrieval", "tools"}
    from graphcraft.chains.direct import parametric_answer

    assert parametric_answer("Boiling point of water?", None).text == NEEDS_MODEL


def test_llm_routes_retrieval_and_hybrid_with_a_tool_call(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {"RouteChoice": {"route": "retrieval", "reason": "about the city"}, "_Grades": all_relevant},
        text="The network has 92 tram stops [1].",
    )
    out = build_graph("router", model=model, store=store_dir).invoke(
        {"question": "How many tram stops does the LMT network have?"}
    )
    assert out["trace"]["route"] == "retrieval" and out["sources"] and out["trace"]["answer_strategy"] == "llm"

    def hybrid_text(call):  # type: ignore[no-untyped-def]
        if "ToolMessage" in {type(m).__name__ for m in call.messages}:
            return "The flood came 559 years after the charter [1] (computed)."
        return {"tool_calls": [{"name": "calculator", "args": {"expression": "1871 - 1312"}}]}

    from graphcraft.testing import ScriptedChatModel

    def script(call):  # type: ignore[no-untyped-def]
        if call.schema == "RouteChoice":
            return {"route": "hybrid", "reason": "documents plus arithmetic"}
        if call.schema == "_Grades":
            return all_relevant(call)
        return hybrid_text(call)

    model = ScriptedChatModel(script=script)
    out = build_graph("router", model=model, store=store_dir).invoke(
        {"question": "How many years passed between the charter of 1312 and the Great Flood?"}
    )
    step = next(s for s in out["trace"]["steps"] if s["step"] == "generate_hybrid")
    assert out["trace"]["route"] == "hybrid" and "559" in out["answer"]
    assert step["tool_calls"][0]["output"] == "559" and step["tool_calls"][0]["ok"]


def test_malformed_route_reply_falls_back_to_cheap_signals(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(text="route: maybe?")
    out = build_graph("router", model=model, store=store_dir).invoke({"question": "What is 17 * 3?"})
    assert (
        out["trace"]["router"] == "llm->local_fallback"
        and out["trace"]["route"] == "tools"
        and out["answer"] == "17 * 3 = 51"
    )
    assert out["trace"]["signals"]["fallback"] is True
