import pytest

from graphcraft.graphs import reflection
from graphcraft.graphs.reflection import build
from graphcraft.testing import ScriptedChatModel, final_state
from tests.agents.conftest import ANY, critique, schema_is, script
from tests.fakes import scripted


def drafts_and_scores(scores):
    """Drafts are numbered by call; critique i returns scores[i]."""
    seen = {"critiques": 0}

    def score(call):
        value = scores[min(seen["critiques"], len(scores) - 1)]
        seen["critiques"] += 1
        return critique(value)

    return script([(schema_is("Critique"), score), (ANY, lambda call: f"draft from call {call.index}")])


def test_stops_at_threshold():
    model = drafts_and_scores([5, 9])
    out = build(model).invoke({"question": "Explain RRF"})
    t = out["trace"]
    assert t["action"] == "passed" and t["stop_reason"] is None and t["iterations"] == 2
    assert t["scores"] == [5.0, 9.0] and t["llm_calls"] == 4 == model.call_count
    assert out["answer"] == "draft from call 2"  # the refined draft that passed


def test_critic_that_never_passes_stops_at_iteration_bound_and_keeps_best_draft():
    model = drafts_and_scores([7, 4, 6])
    out = build(model).invoke({"question": "Explain RRF"})
    t = out["trace"]
    assert t["action"] == "stopped" and t["stop_reason"] == "max_iterations" and t["iterations"] == 3  # default
    assert t["scores"] == [7.0, 4.0, 6.0]
    assert out["answer"] == "draft from call 0"  # the first draft scored best, not the last
    assert t["kept"] == "best" and t["best_score"] == 7.0


def test_token_budget_ends_the_loop():
    model = drafts_and_scores([1])
    out = build(model, token_budget=150, max_iterations=10).invoke({"question": "Explain RRF " * 20})
    t = out["trace"]
    assert t["stop_reason"] == "token_budget"
    assert t["prompt_tokens"] + t["completion_tokens"] >= 150 and t["iterations"] < 10


def test_custom_criteria_and_missing_criterion_scores_zero():
    crit = script(
        [(schema_is("Critique"), {"scores": [{"criterion": "brevity", "score": 10}], "summary": ""}), (ANY, "short")]
    )
    out = build(crit, criteria=["brevity", "tone"], threshold=6, max_iterations=1).invoke({"question": "q"})
    assert out["trace"]["scores"] == [5.0]  # (10 + 0) / 2
    assert out["trace"]["stop_reason"] == "max_iterations"


def test_malformed_critique_falls_back_and_is_recorded():
    model = script([(schema_is("Critique"), {"wrong": "shape"}), (ANY, "draft")])
    out = build(model, max_iterations=1).invoke({"question": "q"})
    assert out["trace"]["critique_fallbacks"] == 1 and out["trace"]["best_score"] == 0.0
    assert out["answer"] == "draft"


def test_works_with_a_json_text_model_without_tool_calling():
    model = scripted("first draft", critique(9))
    out = build(model).invoke({"question": "q"})
    assert out["answer"] == "first draft" and out["trace"]["action"] == "passed"
    assert out["trace"]["stop_reason"] is None


def test_model_error_propagates_instead_of_looping():
    model = ScriptedChatModel(script=[RuntimeError("provider down")])
    from graphcraft.errors import ModelError

    with pytest.raises(ModelError, match="RuntimeError: provider down"):
        build(model).invoke({"question": "q"})


def test_output_is_the_ask_shape_and_steps_follow_the_loop():
    model = drafts_and_scores([5, 9])
    out = build(model).invoke({"question": "Explain RRF"})
    assert set(out) == {"question", "answer", "sources", "trace"} and out["sources"] == []
    assert [s["step"] for s in out["trace"]["steps"]] == ["generate", "critique", "refine", "critique", "finalize"]
    state = final_state(build(drafts_and_scores([5, 9])), {"question": "Explain RRF"})
    assert state["best_score"] == 9.0 and state["draft"] == state["best_draft"] == "draft from call 2"


def test_per_run_configuration_reaches_the_loop():
    graph = build(drafts_and_scores([4]))  # a critic that never passes: every bound is reached by the run
    one = graph.invoke({"question": "q"}, config={"configurable": {"max_iterations": 1}})
    assert one["trace"]["stop_reason"] == "max_iterations" and one["trace"]["iterations"] == 1
    assert one["trace"]["llm_calls"] == 2  # generate + one critique
    calls = graph.invoke({"question": "q"}, config={"configurable": {"max_llm_calls": 3}})
    assert calls["trace"]["stop_reason"] == "max_llm_calls" and calls["trace"]["llm_calls"] == 4  # bound after refine
    passed = graph.invoke({"question": "q"}, config={"configurable": {"threshold": "4"}})
    assert passed["trace"]["action"] == "passed" and passed["trace"]["threshold"] == 4.0
    assert passed["trace"]["iterations"] == 1
    default = graph.invoke({"question": "q"})
    assert default["trace"]["stop_reason"] == "max_iterations" and default["trace"]["iterations"] == 3


def test_per_run_criteria():
    crit = script([(schema_is("Critique"), critique(9, criteria=("brevity",))), (ANY, "short")])
    out = build(crit).invoke({"question": "q"}, config={"configurable": {"criteria": "brevity"}})
    assert out["trace"]["criteria"] == ["brevity"] and out["trace"]["scores"] == [9.0]
    assert crit.calls[1].schema == "Critique" and "brevity" in crit.calls[1].last


def test_a_second_question_on_a_thread_is_a_fresh_run():
    from langgraph.checkpoint.memory import InMemorySaver

    graph = build(drafts_and_scores([4]), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t", "max_iterations": 2}}
    first = graph.invoke({"question": "q1"}, config=config)
    second = graph.invoke({"question": "q2"}, config=config)
    assert first["trace"]["iterations"] == second["trace"]["iterations"] == 2
    assert second["trace"]["scores"] == [4.0, 4.0] and second["trace"]["llm_calls"] == first["trace"]["llm_calls"]


def test_critique_node_on_its_own():
    model = script([(schema_is("Critique"), critique(6, feedback="add an example"))])
    config = build(model).config  # the config a run of the compiled graph starts from: its bound context
    state = {"question": "Explain RRF", "draft": "RRF fuses ranks.", "iterations": 0, "steps": [], "best_score": 1.0}
    update = reflection.critique(state, config)
    assert update["score"] == 6.0 and update["iterations"] == 1 and update["best_draft"] == "RRF fuses ranks."
    assert "add an example" in update["critique"]["feedback"] and update["usage"]["llm_calls"] == 1
    assert update["steps"] == [
        {
            "step": "critique",
            "iteration": 1,
            "score": 6.0,
            "scores": {"correctness": 6.0, "completeness": 6.0, "clarity": 6.0},
            "critique_fallback": False,
        }
    ]
    assert reflection.after_critique({**state, **update}, config) == "refine"
