"""Every looping agent graph stops at Settings.max_seconds with its best answer so far, and a
model that cannot be reached fails the run with its ModelError instead of a made-up answer.

The scripts are the worst case for a loop: a model that always asks for one more round. Only
the wall clock is small; every other bound is far away, so only the time can end the run.
"""

from __future__ import annotations

import time
from itertools import count

import pytest

from graphcraft.config import get_settings
from graphcraft.errors import ModelError
from graphcraft.graphs import plan_execute, planning, reflection, self_consistency, tool_agent, tree_of_thought
from graphcraft.runtime.bounds import Bounds, elapsed, out_of_time, start_clock
from graphcraft.testing import ScriptedChatModel, tool_call
from tests.agents.conftest import ANY, critique, schema_is, script, text_has

MAX_SECONDS = 0.6
LATENCY = 0.05  # per model call: a run that ignored the clock would go on for hundreds of calls
FAR = {"max_llm_calls": 10_000, "token_budget": 10_000_000}


def timed(settings_max: float = MAX_SECONDS, **overrides):
    return get_settings(max_seconds=settings_max, max_iterations=1000, **FAR, **overrides)


def run_timed(graph, question: str = "q") -> tuple[dict, float]:
    started = time.perf_counter()
    out = graph.invoke({"question": question})
    return out, time.perf_counter() - started


def assert_stopped_by_the_clock(out: dict, seconds: float) -> None:
    trace = out["trace"]
    assert trace["stop_reason"] == "max_seconds", trace["stop_reason"]
    assert MAX_SECONDS <= seconds < MAX_SECONDS + 1.5  # one step past the bound at most, not the next hundred
    assert 0 < trace["llm_calls"] < 100
    assert out["answer"].strip()


# ---------------------------------------------------------------------------- the helper


def test_clock_helpers() -> None:
    assert not out_of_time({}, 0.001) and elapsed({}) == 0.0  # no clock started: never out of time
    state = start_clock()
    assert set(state) == {"started_at"} and not out_of_time(state, 60)
    assert out_of_time({"started_at": time.time() - 5}, 5) and elapsed({"started_at": time.time() - 5}) >= 5


def test_bounds_name_max_seconds_after_the_other_bounds() -> None:
    bounds = Bounds.from_settings(get_settings(max_seconds=2.0), max_iterations=3)
    assert bounds.max_seconds == 2.0 and bounds.as_dict()["max_seconds"] == 2.0
    old = time.time() - 3
    assert bounds.exhausted({}, 0, started_at=old) == "max_seconds"
    assert bounds.exhausted({}, 3, started_at=old) == "max_iterations"
    assert bounds.exhausted({}, 0, started_at=time.time()) is None
    assert bounds.exhausted({}, 0) is None  # without a start time the clock is not checked
    assert bounds.reached({"started_at": old, "usage": {"llm_calls": 0}}) == "max_seconds"
    assert Bounds.from_settings(get_settings(max_seconds=2.0), max_seconds=0.5).max_seconds == 0.5


# ---------------------------------------------------------------------------- each looping graph


def test_reflection_stops_at_the_clock_with_its_best_draft() -> None:
    drafts = count(1)
    scores = iter([6, 3] + [2] * 1000)  # the first draft stays the best one
    model = script(
        [(schema_is("Critique"), lambda call: critique(next(scores))), (ANY, lambda call: f"draft {next(drafts)}")]
    )
    model.latency_s = LATENCY
    out, seconds = run_timed(reflection.build(model, timed(), threshold=9.5))
    assert_stopped_by_the_clock(out, seconds)
    assert out["answer"] == "draft 1" and out["trace"]["best_score"] == 6 and out["trace"]["iterations"] >= 2


def test_tree_of_thought_stops_at_the_clock_with_the_best_path() -> None:
    steps = count(1)
    model = script(
        [
            (schema_is("Thoughts"), lambda call: {"thoughts": [f"step {next(steps)}"]}),
            (schema_is("Evaluation"), {"scores": [{"index": 1, "score": 5, "is_solution": False}]}),
            (ANY, "unexpected final call"),
        ]
    )
    model.latency_s = LATENCY
    out, seconds = run_timed(tree_of_thought.build(model, timed(), breadth=1, beam=1, max_depth=1000, **FAR))
    assert_stopped_by_the_clock(out, seconds)
    assert out["answer"] == out["trace"]["best_path"][-1]  # no further call once the time is up
    assert all(c.last != "unexpected final call" for c in model.calls)


def test_planning_stops_at_the_clock_and_reports_progress() -> None:
    ids = count(1)

    def new_plan(call):
        return {
            "phases": [
                {"name": "p", "steps": [{"id": f"s{next(ids)}", "description": "try", "success_criterion": "ok"}]}
            ]
        }

    model = script(
        [
            (schema_is("PhasedPlan"), new_plan),
            (schema_is("Verdict"), {"passed": False, "reason": "not yet"}),
            (ANY, "attempted"),
        ]
    )
    model.latency_s = LATENCY
    out, seconds = run_timed(planning.build(model, timed(), max_replans=1000, **FAR))
    assert_stopped_by_the_clock(out, seconds)
    assert out["answer"].startswith("Stopped (max_seconds) before the plan was finished. Progress:")
    assert out["trace"]["replans"] >= 1


def test_plan_execute_stops_at_the_clock_with_the_step_results(workspace) -> None:
    ids = count(1)
    model = script(
        [
            (schema_is("Plan"), lambda call: {"steps": [{"id": f"s{next(ids)}", "description": "think"}]}),
            (text_has("Your step"), "FAILED: cannot"),
            (ANY, "analysis"),
        ]
    )
    model.latency_s = LATENCY
    out, seconds = run_timed(plan_execute.build(model, timed(), workspace=workspace, max_replans=1000, **FAR))
    assert_stopped_by_the_clock(out, seconds)
    assert out["answer"].startswith("Stopped (max_seconds) before the final synthesis. Step results:")


def test_tool_agent_stops_at_the_clock_with_the_last_tool_result(workspace) -> None:
    n = count(1)
    model = ScriptedChatModel(
        script=lambda call: tool_call("calculator", expression=f"{next(n)} + 1"), latency_s=LATENCY
    )
    graph = tool_agent.build(model, timed(), workspace=workspace, max_turns=1000, max_tool_calls=1000, **FAR)
    out, seconds = run_timed(graph)
    assert_stopped_by_the_clock(out, seconds)
    assert out["answer"].startswith("Stopped before finishing (max_seconds). Last tool result:")


# ---------------------------------------------------------------------------- an unreachable model


def unreachable() -> ScriptedChatModel:
    return ScriptedChatModel(script=lambda call: ConnectionError("connection refused"))


@pytest.mark.parametrize(
    "name", ["reflection", "tree_of_thought", "planning", "plan_execute", "tool_agent", "self_consistency"]
)
def test_an_unreachable_model_fails_the_run_with_its_model_error(name, workspace) -> None:
    module = {
        "reflection": reflection,
        "tree_of_thought": tree_of_thought,
        "planning": planning,
        "plan_execute": plan_execute,
        "tool_agent": tool_agent,
        "self_consistency": self_consistency,
    }[name]
    options = {"workspace": workspace} if name in ("tool_agent", "plan_execute") else {}
    model = unreachable()
    with pytest.raises(ModelError, match="ConnectionError: connection refused"):
        module.build(model, get_settings(), **options).invoke({"question": "anything"})
    assert model.call_count >= 1


# ---------------------------------------------------------------------------- tree_of_thought's structured failures


def test_tree_of_thought_with_no_usable_thoughts_says_so() -> None:
    model = ScriptedChatModel(script=lambda call: "I cannot produce JSON")
    out = tree_of_thought.build(model, get_settings(max_structured_repairs=1)).invoke({"question": "puzzle"})
    trace = out["trace"]
    assert trace["action"] == "no_thoughts" and trace["stop_reason"] is None and trace["pruned"] == 0
    [failure] = trace["structured_failures"]
    assert failure["node"] == "expand" and failure["errors"] == ["no structured output in the reply"] * 2
    assert out["answer"] == "No answer: the search stopped (no_thoughts) before any reasoning path was found."
    assert trace["llm_calls"] == 2  # one call + one repair, and no final answer call


def test_tree_of_thought_with_unscorable_thoughts_is_not_all_pruned() -> None:
    model = script(
        [
            (schema_is("Thoughts"), {"thoughts": ["try 2", "try 3"]}),
            (schema_is("Evaluation"), "no scores here"),
            (ANY, "Answer: 2"),
        ]
    )
    out = tree_of_thought.build(model, get_settings(max_structured_repairs=0)).invoke({"question": "puzzle"})
    trace = out["trace"]
    assert trace["action"] == "unscored" and trace["stop_reason"] is None and trace["pruned"] == 0
    assert [f["node"] for f in trace["structured_failures"]] == ["evaluate"]
    assert trace["levels"][0] == {
        "depth": 1,
        "candidates": 2,
        "kept": 0,
        "scored": False,
        "pruned": 0,
        "scores": [0.0, 0.0],
    }
    assert out["answer"] == "2"  # written from the best (unscored) path found
