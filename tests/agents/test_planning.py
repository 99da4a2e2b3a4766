from graphcraft.graphs.planning import build
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
    assert t["stop_reason"] == "completed" and out["answer"] == "report done"
    assert [e["step"] for e in t["log"] if e["event"] == "verify"] == ["r1", "r2", "w1"]
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
    assert t["contingencies"] == 1 and t["replans"] == 0 and t["stop_reason"] == "completed"
    assert [e for e in t["log"] if e["event"] == "contingency"][0]["action"] == "use the archive"


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
    assert t["stop_reason"] == "max_replans" and "r1" in t["failed_steps"]
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
    assert out["answer"].startswith("Stopped (max_llm_calls)")
