import pytest

from graphcraft.graphs.reflection import build
from graphcraft.testing import ScriptedChatModel
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
    assert t["stop_reason"] == "threshold" and t["iterations"] == 2
    assert t["scores"] == [5.0, 9.0] and t["llm_calls"] == 4 == model.call_count
    assert out["answer"] == "draft from call 2"  # the refined draft that passed


def test_critic_that_never_passes_stops_at_iteration_bound_and_keeps_best_draft():
    model = drafts_and_scores([7, 4, 6])
    out = build(model).invoke({"question": "Explain RRF"})
    t = out["trace"]
    assert t["stop_reason"] == "max_iterations" and t["iterations"] == 3  # default bound
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
    assert out["answer"] == "first draft" and out["trace"]["stop_reason"] == "threshold"


def test_model_error_propagates_instead_of_looping():
    model = ScriptedChatModel(script=[RuntimeError("provider down")])
    from graphcraft.errors import ModelError

    with pytest.raises(ModelError, match="RuntimeError: provider down"):
        build(model).invoke({"question": "q"})
