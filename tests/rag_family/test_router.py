"""router: offline cheap-signal routes, and every route chosen by a scripted LLM (parametric,
tools, retrieval, hybrid with a calculator call), a malformed routing reply, a model that always
asks for another calculation (stopped by max_tool_calls, also set per run), the run's call budget
keeping the hybrid exchange from starting, and the route node called on its own."""

from __future__ import annotations

from typing import Any

from graphcraft.api import build_graph
from graphcraft.chains.direct import NEEDS_MODEL
from graphcraft.graphs import router
from graphcraft.runtime.result import TRACE_KEYS
from graphcraft.testing import ScriptCall, ScriptedChatModel

from .conftest import all_relevant, is_correct, scripted

HYBRID_QUESTION = "How many years passed between the charter of 1312 and the Great Flood?"


def test_offline_routes(store_dir) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("router", store=store_dir)
    maths = graph.invoke({"question": "What is 144 divided by 12?"})
    assert (maths["trace"]["action"], maths["answer"], maths["trace"]["router"]) == ("tools", "144 / 12 = 12", "local")
    assert set(maths) == {"question", "answer", "sources", "trace"}
    assert set(TRACE_KEYS) <= set(maths["trace"]) and maths["trace"]["stop_reason"] is None
    general = graph.invoke({"question": "How many days are there in a leap year?"})
    assert general["trace"]["action"] == "retrieval" and "chat model" in general["trace"]["reason"]
    fact = graph.invoke({"question": "How many tram stops does the LMT network have?"})
    assert fact["trace"]["action"] == "retrieval" and fact["sources"] and is_correct(fact["answer"], [["92"]])
    assert fact["trace"]["grading"]["evaluator"] == "local"
    assert [s["step"] for s in fact["trace"]["steps"]] == ["route", "retrieve", "grade", "generate"]


def test_llm_routes_parametric_and_tools(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted({"RouteChoice": {"route": "parametric", "reason": "general knowledge"}}, text="366 days.")
    out = build_graph("router", model=model, store=store_dir).invoke(
        {"question": "How many days are there in a leap year?"}
    )
    assert (out["trace"]["action"], out["answer"], out["trace"]["llm_calls"]) == ("parametric", "366 days.", 2)
    model = scripted({"RouteChoice": {"route": "tools", "reason": "sum", "expression": "1312 + 559"}})
    out = build_graph("router", model=model, store=store_dir).invoke({"question": "What year is 559 years after 1312?"})
    assert out["trace"]["action"] == "tools" and out["answer"] == "1312 + 559 = 1871"


def test_parametric_route_offline_says_it_needs_a_model(store_dir) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("router", store=store_dir)
    out = graph.invoke({"question": "x", "route": "parametric"})  # routing still runs and decides for itself
    assert out["trace"]["action"] in {"retrieval", "tools"}
    from graphcraft.chains.direct import parametric_answer

    assert parametric_answer("Boiling point of water?", None).text == NEEDS_MODEL


def route_hybrid(call: ScriptCall) -> Any:
    """The replies of the routing call (hybrid) and of the grading call (every document relevant), else None."""
    if call.schema == "RouteChoice":
        return {"route": "hybrid", "reason": "documents plus arithmetic"}
    return all_relevant(call) if call.schema == "_Grades" else None


def hybrid_script(call: ScriptCall) -> Any:
    """Routes to hybrid, grades every document relevant, computes once with the calculator, then answers."""
    if (reply := route_hybrid(call)) is not None:
        return reply
    if "calculator" not in call.tools:  # the cited answer of the retrieval path (no tools bound)
        return "The Great Flood came in 1871 [1]."
    if "ToolMessage" in {type(m).__name__ for m in call.messages}:
        return "The flood came 559 years after the charter [1] (computed)."
    return {"tool_calls": [{"name": "calculator", "args": {"expression": "1871 - 1312"}}]}


def test_llm_routes_retrieval_and_hybrid_with_a_tool_call(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(
        {"RouteChoice": {"route": "retrieval", "reason": "about the city"}, "_Grades": all_relevant},
        text="The network has 92 tram stops [1].",
    )
    out = build_graph("router", model=model, store=store_dir).invoke(
        {"question": "How many tram stops does the LMT network have?"}
    )
    assert out["trace"]["action"] == "retrieval" and out["sources"] and out["trace"]["answer_strategy"] == "llm"

    model = ScriptedChatModel(script=hybrid_script)
    out = build_graph("router", model=model, store=store_dir).invoke({"question": HYBRID_QUESTION})
    step = next(s for s in out["trace"]["steps"] if s["step"] == "generate_hybrid")
    assert out["trace"]["action"] == "hybrid" and "559" in out["answer"]
    assert step["tool_calls"][0]["output"] == "559" and step["tool_calls"][0]["ok"]
    assert out["trace"]["stop_reason"] is None and out["trace"]["answer_strategy"] == "hybrid"


def test_malformed_route_reply_falls_back_to_cheap_signals(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = scripted(text="route: maybe?")
    out = build_graph("router", model=model, store=store_dir).invoke({"question": "What is 17 * 3?"})
    assert (
        out["trace"]["router"] == "llm->local_fallback"
        and out["trace"]["action"] == "tools"
        and out["answer"] == "17 * 3 = 51"
    )
    assert out["trace"]["signals"]["fallback"] is True


def always_calculating() -> ScriptedChatModel:
    """A hybrid model that asks for one more calculation every turn and never answers."""

    def script(call: ScriptCall) -> Any:
        if (reply := route_hybrid(call)) is not None:
            return reply
        return {"tool_calls": [{"name": "calculator", "args": {"expression": f"1871 - {1300 + call.index}"}}]}

    return ScriptedChatModel(script=script)


def test_a_model_that_always_calculates_stops_at_max_tool_calls_also_set_per_run(store_dir) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("router", model=always_calculating(), store=store_dir)  # max_tool_calls=3 by default
    out = graph.invoke({"question": HYBRID_QUESTION})
    step = next(s for s in out["trace"]["steps"] if s["step"] == "generate_hybrid")
    assert out["trace"]["stop_reason"] == "max_tool_calls" and len(step["tool_calls"]) == 3

    model = always_calculating()
    graph = build_graph("router", model=model, store=store_dir)
    out = graph.invoke({"question": HYBRID_QUESTION}, config={"configurable": {"max_tool_calls": 1}})
    step = next(s for s in out["trace"]["steps"] if s["step"] == "generate_hybrid")
    assert out["trace"]["stop_reason"] == "max_tool_calls" and len(step["tool_calls"]) == 1
    assert model.call_count == 2 + 2  # route, grade, then two turns: one calculation, one refused


def test_run_budget_keeps_the_hybrid_exchange_from_starting(store_dir) -> None:  # type: ignore[no-untyped-def]
    model = ScriptedChatModel(script=hybrid_script)
    out = build_graph("router", model=model, store=store_dir).invoke(
        {"question": HYBRID_QUESTION}, config={"configurable": {"max_llm_calls": 2}}
    )
    steps = [s["step"] for s in out["trace"]["steps"]]
    assert out["trace"]["action"] == "hybrid" and out["trace"]["stop_reason"] == "max_llm_calls"
    assert steps == ["route", "retrieve", "grade", "generate"]  # the cited answer instead of the tool exchange
    # the budget is spent after route + grade: the answer is quoted from the sources, with no third call
    assert "1871" in out["answer"] and "[1]" in out["answer"] and out["trace"]["llm_calls"] == model.call_count == 2


def test_route_node_on_its_own(store_dir) -> None:  # type: ignore[no-untyped-def]
    graph = build_graph("router", store=store_dir)
    update = router.route({"question": "What is 17 * 3?"}, graph.config)
    assert (update["route"], update["expression"], update["router"]) == ("tools", "17 * 3", "local")
    assert update["steps"] == [{"step": "route", "route": "tools", "router": "local", "reason": update["reason"]}]
    assert update["usage"]["llm_calls"] == 0 and update["started_at"] > 0
    state = {"question": "What is 17 * 3?", **update}
    assert router.by_route(state) == "use_tool"
    assert router.use_tool(state, graph.config)["answer"] == "17 * 3 = 51"
