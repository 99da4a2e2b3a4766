import time

from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from graphcraft.graphs import plan_execute
from graphcraft.graphs.plan_execute import build
from graphcraft.runtime.result import TRACE_KEYS
from graphcraft.testing import final_state
from graphcraft.tools import calculator_tool
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
    assert t["waves"] == [["a", "b", "c", "d"], ["sum"]] and t["iterations"] == 2 and t["parallel_steps"] == 4
    assert [s["step"] for s in t["steps"] if s["step"] != "execute_step"] == [
        "analyze",
        "plan",
        "schedule",
        "schedule",
        "finalize",
    ]
    assert sorted(s["id"] for s in t["steps"] if s["step"] == "execute_step") == ["a", "b", "c", "d", "sum"]
    assert out["answer"] == "The sum is 42"  # $a + $b substituted with the real file contents
    assert t["action"] == "completed" and t["stop_reason"] is None and t["replans"] == 0
    assert set(out) == {"question", "answer", "sources", "trace"} and set(TRACE_KEYS) <= set(t)
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
    assert t["replans"] == 1 and t["action"] == "completed" and t["stop_reason"] is None
    assert [s["id"] for s in t["plan"]] == ["fix"] and t["plan"][0]["status"] == "done"
    assert t["plan"][0]["output"] == "5"
    assert t["replan_reasons"] == ["replan 1: failed ['s1']"]


def always_failing_planner():
    """A planner whose every plan calls a tool that fails, so it always asks for another replan."""

    @tool
    def broken(x: str) -> str:
        """Always fails."""
        raise RuntimeError("boom")

    counter = {"n": 0}

    def planner(call):
        counter["n"] += 1
        return plan({"id": f"try{counter['n']}", "description": "use broken", "tool": "broken", "args": {"x": "1"}})

    model = script([(schema_is("Plan"), planner), (FINAL, "could not finish"), (ANY, "analysis")])
    return model, broken, counter


def test_planner_that_always_replans_stops_at_bound():
    model, broken, counter = always_failing_planner()
    out = build(model, tools=[broken], max_replans=2).invoke({"question": "do it"})
    t = out["trace"]
    assert t["replans"] == 2 and counter["n"] == 3  # initial plan + 2 replans
    assert t["action"] == "incomplete" and t["stop_reason"] == "max_replans"
    assert t["plan"][0]["status"] == "failed" and len(t["replan_reasons"]) == 2
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
    statuses = {s["id"]: s["status"] for s in out["trace"]["plan"]}
    assert statuses == {"x": "failed", "y": "not_run"}
    assert out["trace"]["waves"] == [["x"]] and out["trace"]["stop_reason"] == "max_replans"


def test_malformed_plan_falls_back_to_one_reasoning_step(workspace):
    model = script([(schema_is("Plan"), {"nonsense": True}), (FINAL, "answered directly"), (ANY, "reasoned answer")])
    out = build(model, workspace=workspace, analyze=False).invoke({"question": "what is RRF?"})
    t = out["trace"]
    assert t["plan"][0]["description"] == "what is RRF?" and t["plan"][0]["status"] == "done"
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
    assert t["action"] == "stopped" and t["stop_reason"] == "max_llm_calls" and t["llm_calls"] == 5
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
    state = final_state(build(model, workspace=workspace, analyze=False), {"question": "What is 12 times 7?"})
    t = state["trace"]
    assert t["action"] == "completed" and t["stop_reason"] is None and state["answer"] == "The answer is 84."
    assert [s["status"] for s in t["plan"]] == ["done", "done"] and t["llm_calls"] == 3
    assert "tools" not in state["results"]["m"] and state["results"]["e"]["tools"].startswith("unavailable")
    assert "Result of m: 84" in "\n".join(str(m.content) for m in model.prompts[1])  # the real calculator ran


def test_per_run_configuration_reaches_every_node():
    model, broken, counter = always_failing_planner()
    graph = build(model, tools=[broken], max_replans=2)
    assert graph.invoke({"question": "do it"})["trace"]["replans"] == 2 and counter["n"] == 3

    counter["n"] = 0
    out = graph.invoke({"question": "do it"}, config={"configurable": {"max_replans": 0}})
    assert out["trace"]["replans"] == 0 and counter["n"] == 1 and out["trace"]["stop_reason"] == "max_replans"
    assert out["trace"]["max_replans"] == 0

    out = graph.invoke({"question": "do it"}, config={"configurable": {"max_llm_calls": 2}})
    assert out["trace"]["stop_reason"] == "max_llm_calls" and out["trace"]["llm_calls"] == 2
    assert out["answer"].startswith("Stopped (max_llm_calls)")

    calls = model.call_count
    out = graph.invoke({"question": "do it"}, config={"configurable": {"analyze": "false", "max_replans": 0}})
    assert model.call_count - calls == 2 and out["trace"]["llm_calls"] == 2  # plan + finalize, no analysis
    assert [s["step"] for s in out["trace"]["steps"]][:1] == ["plan"]


def test_each_question_on_a_thread_is_a_fresh_run(workspace):
    model = script(
        [
            (
                schema_is("Plan"),
                plan({"id": "s1", "description": "add", "tool": "calculator", "args": {"expression": "1+1"}}),
            ),
            (FINAL, "2"),
            (ANY, "analysis"),
        ]
    )
    graph = build(model, workspace=workspace, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    first = graph.invoke({"question": "one plus one"}, config)
    second = graph.invoke({"question": "one plus one, again"}, config)
    assert second["trace"]["waves"] == [["s1"]] and second["trace"]["plan"][0]["status"] == "done"
    assert second["trace"]["llm_calls"] == first["trace"]["llm_calls"] == 3
    assert len(second["trace"]["steps"]) == len(first["trace"]["steps"])


def test_schedule_and_a_tool_step_run_on_their_own():
    steps = [
        {"id": "a", "description": "a", "depends_on": [], "tool": "calculator", "args": {"expression": "6 * 7"}},
        {"id": "b", "description": "b", "depends_on": ["a"], "tool": "calculator", "args": {"expression": "$a + 1"}},
    ]
    state = {"question": "q", "plan_steps": steps, "results": {}, "wave": 0}
    assert plan_execute.schedule(state, {}) == {
        "ready": ["a"],
        "wave": 1,
        "steps": [{"step": "schedule", "wave": 1, "ready": ["a"]}],
    }
    config = build(tools=[calculator_tool()]).config
    task = {"question": "q", "step": steps[1], "inputs": {"a": "42"}, "wave": 2}
    update = plan_execute.execute_step(task, config)
    assert update["results"]["b"]["output"] == "43" and update["results"]["b"]["ok"]
    assert update["usage"]["llm_calls"] == 0 and update["steps"][0]["wave"] == 2
