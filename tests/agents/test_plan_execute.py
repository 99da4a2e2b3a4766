import time

from langchain_core.tools import tool

from graphcraft.graphs.plan_execute import build
from tests.agents.conftest import ANY, schema_is, script, text_has

FINAL = text_has("Step results")


def plan(*steps):
    return {"steps": list(steps)}


def test_independent_steps_run_in_parallel_waves(workspace):
    (workspace / "a.txt").write_text("12")
    (workspace / "b.txt").write_text("30")
    model = script(
        [
            (
                schema_is("Plan"),
                plan(
                    {"id": "a", "description": "read a", "tool": "read_file", "args": {"path": "a.txt"}},
                    {"id": "b", "description": "read b", "tool": "read_file", "args": {"path": "b.txt"}},
                    {"id": "c", "description": "explain the task"},
                    {"id": "d", "description": "explain the numbers"},
                    {
                        "id": "sum",
                        "description": "add",
                        "depends_on": ["a", "b"],
                        "tool": "calculator",
                        "args": {"expression": "$a + $b"},
                    },
                ),
            ),
            (FINAL, lambda call: "The sum is " + call.last.split("sum. add: ")[1].split("\n")[0]),
            (ANY, "some reasoning"),
        ]
    )
    model.latency_s = 0.3
    started = time.perf_counter()
    out = build(model, workspace=workspace).invoke({"question": "add the numbers in a.txt and b.txt"})
    elapsed = time.perf_counter() - started
    t = out["trace"]
    assert t["waves"] == [["a", "b", "c", "d"], ["sum"]]
    assert out["answer"] == "The sum is 42"  # $a + $b substituted with the real file contents
    assert t["stop_reason"] == "completed" and t["replans"] == 0
    # analyze + plan + 2 reasoning steps + finalize; the tool steps cost no LLM call
    assert t["llm_calls"] == 5
    # the two reasoning steps overlapped: 4 sequential latencies, not 5
    assert elapsed < 5 * 0.3 + 0.25


def test_failed_step_triggers_replan_that_recovers(workspace):
    def planner(call):
        if "Progress so far" in call.last:
            assert "FAILED" in call.last and "division by zero" in call.last
            return plan(
                {"id": "fix", "description": "divide safely", "tool": "calculator", "args": {"expression": "10 / 2"}}
            )
        return plan({"id": "s1", "description": "divide", "tool": "calculator", "args": {"expression": "10 / 0"}})

    model = script([(schema_is("Plan"), planner), (FINAL, "10 / 2 = 5"), (ANY, "analysis")])
    out = build(model, workspace=workspace).invoke({"question": "divide"})
    t = out["trace"]
    assert t["replans"] == 1 and t["stop_reason"] == "completed"
    assert [s["id"] for s in t["steps"]] == ["fix"] and t["steps"][0]["status"] == "done"
    assert t["replan_reasons"] == ["replan 1: failed ['s1']"]


def test_planner_that_always_replans_stops_at_bound(workspace):
    @tool
    def broken(x: str) -> str:
        """Always fails."""
        raise RuntimeError("boom")

    counter = {"n": 0}

    def planner(call):
        counter["n"] += 1
        return plan({"id": f"try{counter['n']}", "description": "use broken", "tool": "broken", "args": {"x": "1"}})

    model = script([(schema_is("Plan"), planner), (FINAL, "could not finish"), (ANY, "analysis")])
    out = build(model, tools=[broken], max_replans=2).invoke({"question": "do it"})
    t = out["trace"]
    assert t["replans"] == 2 and counter["n"] == 3  # initial plan + 2 replans
    assert t["stop_reason"] == "max_replans"
    assert t["steps"][0]["status"] == "failed" and len(t["replan_reasons"]) == 2
    assert out["answer"] == "could not finish"


def test_dependents_of_a_failed_step_do_not_run(workspace):
    model = script(
        [
            (
                schema_is("Plan"),
                plan(
                    {"id": "x", "description": "bad", "tool": "calculator", "args": {"expression": "1/0"}},
                    {
                        "id": "y",
                        "description": "uses x",
                        "depends_on": ["x"],
                        "tool": "calculator",
                        "args": {"expression": "$x + 1"},
                    },
                ),
            ),
            (FINAL, "partial"),
            (ANY, "analysis"),
        ]
    )
    out = build(model, workspace=workspace, max_replans=0).invoke({"question": "q"})
    statuses = {s["id"]: s["status"] for s in out["trace"]["steps"]}
    assert statuses == {"x": "failed", "y": "not_run"}
    assert out["trace"]["waves"] == [["x"]] and out["trace"]["stop_reason"] == "max_replans"


def test_malformed_plan_falls_back_to_one_reasoning_step(workspace):
    model = script([(schema_is("Plan"), {"nonsense": True}), (FINAL, "answered directly"), (ANY, "reasoned answer")])
    out = build(model, workspace=workspace, analyze=False).invoke({"question": "what is RRF?"})
    t = out["trace"]
    assert t["steps"][0]["description"] == "what is RRF?" and t["steps"][0]["status"] == "done"
    assert "plan fallback" in t["replan_reasons"][0]


def test_cyclic_or_unknown_dependencies_are_dropped(workspace):
    model = script(
        [
            (
                schema_is("Plan"),
                plan(
                    {"id": "a", "description": "first", "depends_on": ["b"]},
                    {"id": "b", "description": "second", "depends_on": ["a", "ghost"]},
                ),
            ),
            (FINAL, "done"),
            (ANY, "ok"),
        ]
    )
    out = build(model, workspace=workspace, analyze=False).invoke({"question": "q"})
    assert out["trace"]["waves"] == [["a"], ["b"]]


def test_llm_budget_stops_execution(workspace):
    steps = [{"id": f"s{i}", "description": f"think {i}", "depends_on": [f"s{i - 1}"] if i else []} for i in range(8)]
    model = script([(schema_is("Plan"), plan(*steps)), (ANY, "thought")])
    out = build(model, workspace=workspace, max_llm_calls=5).invoke({"question": "q"})
    t = out["trace"]
    assert t["stop_reason"] == "max_llm_calls" and t["llm_calls"] == 5
    assert out["answer"].startswith("Stopped (max_llm_calls)")


def test_model_without_tool_calling_reasons_without_tools_and_tool_steps_still_run(workspace):
    from tests.fakes import scripted

    model = scripted(
        plan(
            {"id": "m", "description": "multiply", "tool": "calculator", "args": {"expression": "12 * 7"}},
            {"id": "e", "description": "explain the product", "depends_on": ["m"]},
        ),
        "12 times 7 is 84",
        "The answer is 84.",
    )
    out = build(model, workspace=workspace, analyze=False).invoke({"question": "What is 12 times 7?"})
    t = out["trace"]
    assert t["stop_reason"] == "completed" and out["answer"] == "The answer is 84."
    assert [s["status"] for s in t["steps"]] == ["done", "done"] and t["llm_calls"] == 3
    assert "Result of m: 84" in "\n".join(str(m.content) for m in model.prompts[1])  # the real calculator ran
