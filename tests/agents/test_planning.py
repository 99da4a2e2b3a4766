from graphcraft.graphs import planning
from graphcraft.graphs.planning import build
from graphcraft.runtime.result import TRACE_KEYS
from graphcraft.testing import ScriptedChatModel, final_state
from tests.agents.conftest import ANY, schema_is, script, text_has

TWO_PHASES = {
    "phases": [
        {
            "name": "research",
            "steps": [
                {
                    "id": "r1",
                    "description": "collect sources",
                    "success_criterion": "at least two sources",
                    "contingency": "use the archive",
                },
                {"id": "r2", "description": "list open questions", "success_criterion": "a list"},
            ],
        },
        {
            "name": "write",
            "steps": [
                {
                    "id": "w1",
                    "description": "write the report",
                    "depends_on": ["r1", "r2"],
                    "success_criterion": "covers the sources",
                },
            ],
        },
    ]
}


def executor(call):
    return "result of: " + call.last.split("Step (")[1].split("\n")[0]


def test_executes_phases_in_dependency_order_and_verifies_each_step():
    model = script(
        [
            (schema_is("PhasedPlan"), TWO_PHASES),
            (schema_is("Verdict"), {"passed": True, "reason": "ok"}),
            (text_has("Steps:\n"), "report done"),
            (ANY, executor),
        ]
    )
    out = build(model).invoke({"question": "write a report"})
    t = out["trace"]
    assert t["action"] == "completed" and t["stop_reason"] is None and out["answer"] == "report done"
    assert set(out) == {"question", "answer", "sources", "trace"} and set(TRACE_KEYS) <= set(t)
    assert [e["id"] for e in t["steps"] if e["step"] == "verify"] == ["r1", "r2", "w1"] and t["iterations"] == 3
    assert [e["step"] for e in t["steps"]] == ["plan"] + ["execute", "verify"] * 3 + ["finalize"]
    assert t["phases"] == [
        {"name": "research", "steps": [{"id": "r1", "status": "done"}, {"id": "r2", "status": "done"}]},
        {"name": "write", "steps": [{"id": "w1", "status": "done"}]},
    ]
    # the writer saw both research results
    writer_prompt = next(c for c in model.calls if "Step (write)" in c.last)
    assert "r1: result of: research): collect sources" in writer_prompt.last


def test_contingency_taken_when_verification_fails():
    def verdict(call):
        failing = "collect sources" in call.last and "contingency" not in call.last
        return {"passed": not failing, "reason": "no sources found" if failing else "ok"}

    model = script(
        [
            (schema_is("PhasedPlan"), TWO_PHASES),
            (schema_is("Verdict"), verdict),
            (text_has("Steps:\n"), "report"),
            (ANY, executor),
        ]
    )
    out = build(model).invoke({"question": "write a report"})
    t = out["trace"]
    assert t["contingencies"] == 1 and t["replans"] == 0 and t["action"] == "completed" and t["stop_reason"] is None
    assert [e for e in t["steps"] if e["step"] == "contingency"][0]["action"] == "use the archive"


def test_verifier_that_never_passes_stops_after_bounded_replans():
    plans = {"n": 0}

    def planner(call):
        plans["n"] += 1
        return TWO_PHASES

    model = script(
        [
            (schema_is("PhasedPlan"), planner),
            (schema_is("Verdict"), {"passed": False, "reason": "never good"}),
            (text_has("Steps:\n"), "nothing worked"),
            (ANY, executor),
        ]
    )
    out = build(model, max_replans=2, max_llm_calls=200).invoke({"question": "impossible"})
    t = out["trace"]
    assert t["replans"] == 2 and plans["n"] == 3
    assert t["action"] == "incomplete" and t["stop_reason"] == "max_replans" and "r1" in t["failed_steps"]
    assert t["llm_calls"] < 200  # stopped by the replan bound, not the budget
    # once the step is given up, nothing depending on it ran
    assert {s["id"]: s["status"] for p in t["phases"] for s in p["steps"]}["w1"] == "not_run"


def test_llm_budget_bounds_a_long_plan():
    many = {
        "phases": [
            {
                "name": "p",
                "steps": [{"id": f"s{i}", "description": f"step {i}", "success_criterion": "done"} for i in range(12)],
            }
        ]
    }
    model = script([(schema_is("PhasedPlan"), many), (schema_is("Verdict"), {"passed": True}), (ANY, "did it")])
    out = build(model, max_llm_calls=7).invoke({"question": "long"})
    assert out["trace"]["stop_reason"] == "max_llm_calls" and out["trace"]["llm_calls"] == 7
    assert out["trace"]["action"] == "stopped"
    assert out["answer"].startswith("Stopped (max_llm_calls)")


def test_per_run_configuration_reaches_every_node():
    model = script(
        [
            (schema_is("PhasedPlan"), TWO_PHASES),
            (schema_is("Verdict"), {"passed": False, "reason": "never good"}),
            (text_has("Steps:\n"), "nothing worked"),
            (ANY, executor),
        ]
    )
    graph = build(model, max_replans=2, max_llm_calls=200)
    full = graph.invoke({"question": "impossible"})
    assert full["trace"]["replans"] == 2

    no_replan = graph.invoke({"question": "impossible"}, config={"configurable": {"max_replans": 0}})
    assert no_replan["trace"]["replans"] == 0 and no_replan["trace"]["stop_reason"] == "max_replans"
    assert no_replan["trace"]["llm_calls"] < full["trace"]["llm_calls"]

    three_calls = final_state(graph, {"question": "impossible"}, {"configurable": {"max_llm_calls": 3}})
    assert three_calls["trace"]["stop_reason"] == "max_llm_calls" and three_calls["trace"]["llm_calls"] == 3
    # plan, execute r1, verify r1: the budget gives up on r1 (no contingency) and executes nothing more
    assert three_calls["status"]["r1"]["status"] == "failed" and list(three_calls["status"]) == ["r1"]
    assert [s["step"] for s in three_calls["steps"]] == ["plan", "execute", "verify", "give_up", "finalize"]

    one_step = graph.invoke({"question": "impossible"}, config={"configurable": {"max_steps": 1, "max_replans": 0}})
    # the two-phase plan is over the one-step schema: repaired, then replaced by the goal as one step
    assert one_step["trace"]["structured_outputs"]["fallbacks"] == 1
    assert [s["id"] for p in one_step["trace"]["phases"] for s in p["steps"]] == ["s1"]


def test_malformed_plan_falls_back_to_the_goal_as_one_step():
    def respond(call):
        if call.schema == "PhasedPlan":
            return "no JSON here"
        if call.schema == "Verdict":
            return {"passed": True, "reason": "ok"}
        return "done" if "Steps:\n" in call.last else "did it"

    out = build(ScriptedChatModel(script=respond)).invoke({"question": "write a report"})
    t = out["trace"]
    assert t["steps"][0]["step"] == "plan" and t["steps"][0]["fallback"] and t["steps"][0]["plan"] == ["s1"]
    assert t["structured_outputs"]["fallbacks"] == 1 and t["action"] == "completed"
    assert t["phases"] == [{"name": "do", "steps": [{"id": "s1", "status": "done"}]}]


def test_select_step_and_routing_run_on_their_own():
    steps = [
        {"id": "a", "phase": "p", "description": "a", "depends_on": [], "success_criterion": "ok", "contingency": "b"},
        {
            "id": "b",
            "phase": "p",
            "description": "b",
            "depends_on": ["a"],
            "success_criterion": "ok",
            "contingency": "",
        },
    ]
    state = {"question": "q", "plan_steps": steps, "status": {}}
    assert planning.select_step(state, {}) == {"current": "a", "attempt": "primary"}
    done = {**state, "status": {"a": {"status": "done", "result": "r"}}}
    assert planning.select_step(done, {}) == {"current": "b", "attempt": "primary"}
    failed = {**state, "current": "a", "attempt": "primary", "verdict": {"passed": False, "reason": "no"}}
    assert planning.after_verify(failed, {}) == "contingency"
    config = build(max_replans=1).config
    assert planning.after_verify({**failed, "attempt": "contingency", "replans": 0}, config) == "replan"
    assert planning.after_verify({**failed, "attempt": "contingency", "replans": 1}, config) == "give_up"
