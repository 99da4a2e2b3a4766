"""CRAG with a chat model (scripted): one grading call for k documents, repair and fallback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from fakes import prompt_texts, scripted  # noqa: E402

from graphcraft.api import ask  # noqa: E402
from graphcraft.config import get_settings  # noqa: E402
from graphcraft.errors import NoChatModelError  # noqa: E402
from graphcraft.graphs import crag  # noqa: E402


def grades(*scores: float) -> dict:
    return {str(i): s for i, s in enumerate(scores, start=1)}


def test_one_grading_call_for_all_documents(crag_stores: dict[str, Path]) -> None:
    model = scripted(grades(0.95, 0.1, 0.0), "Ada Lind designed it [1].")
    result = ask("Who designed the Orla Bridge?", store=crag_stores["store"], model=model, top_k=3)
    trace = result["trace"]
    assert trace["action"] == "correct" and trace["evaluator"] == "llm"
    assert trace["llm_calls"] == 2 == model.calls  # 1 grading call for 3 documents + 1 answer
    grading_prompt = prompt_texts(model)[0]
    assert "[1]" in grading_prompt and "[3]" in grading_prompt  # all three documents in the one call
    assert result["answer"] == "Ada Lind designed it [1]."
    assert "Ada Lind" in prompt_texts(model)[1]  # the answer prompt carries the refined strips
    assert trace["prompt_tokens"] > 0 and trace["completion_tokens"] > 0


def test_incorrect_with_llm_rewrites_and_searches_grading_external_knowledge_locally(
    crag_stores: dict[str, Path],
) -> None:
    model = scripted(grades(0.0, 0.1, 0.0), "Lake Vessa depth", "It is 62 metres deep [1].")
    result = ask(
        "How deep is Lake Vessa?",
        store=crag_stores["store"],
        model=model,
        top_k=3,
        external_store=crag_stores["external"],
    )
    trace = result["trace"]
    assert trace["action"] == "incorrect" and trace["queries"] == ["Lake Vessa depth"]
    assert trace["llm_calls"] == 3 and trace["iterations"] == 1  # grade + rewrite + generate
    assert result["sources"] and all(s["origin"] == "external" for s in result["sources"])
    assert "62 metres" in prompt_texts(model)[2]  # the answer prompt carries the external strips


def test_malformed_grades_are_repaired_then_fall_back_to_local_scores(crag_stores: dict[str, Path]) -> None:
    model = scripted("not json at all", '{"grades": [{"index": 1}]}', "{{{", "Ada Lind [1].")
    result = ask("Who designed the Orla Bridge?", store=crag_stores["store"], model=model, top_k=3)
    evaluate = next(s for s in result["trace"]["steps"] if s["step"] == "evaluate")
    assert evaluate["evaluator"] == "llm->local_fallback"
    assert evaluate["details"]["fallback"] is True and len(evaluate["details"]["errors"]) == 3
    assert result["trace"]["action"] == "correct"  # local scores, mapped onto the LLM thresholds
    assert result["trace"]["llm_calls"] == 4  # 1 + 2 repairs (bounded) + answer


def test_incomplete_grades_fall_back_too(crag_stores: dict[str, Path]) -> None:
    model = scripted(grades(0.9), "Ada Lind [1].")  # grades one of three documents
    result = ask("Who designed the Orla Bridge?", store=crag_stores["store"], model=model, top_k=3)
    assert next(s for s in result["trace"]["steps"] if s["step"] == "evaluate")["evaluator"] == "llm->local_fallback"


def test_llm_model_that_keeps_finding_nothing_stops_at_max_iterations(crag_stores: dict[str, Path]) -> None:
    # Worst case: every grade is 0, every rewrite is a new query: the loop ends at the bound.
    model = scripted(grades(0.0, 0.0, 0.0), "query one", "query two", "query three", "query four")
    result = ask(
        "What colour is the mayor's car?",
        store=crag_stores["store"],
        model=model,
        top_k=3,
        external_store=crag_stores["external"],
        max_search_rounds=3,
    )
    assert result["trace"]["iterations"] == 3
    assert result["trace"]["queries"] == ["query one", "query two", "query three"]
    assert result["trace"]["llm_calls"] == 4  # grade + 3 rewrites; abstaining needs no generation call
    assert result["answer"] == "Not found in the sources." and result["trace"]["abstained"]


def test_llm_evaluator_without_a_model_is_a_clear_error(crag_stores: dict[str, Path]) -> None:
    graph = crag.build(settings=get_settings(store=crag_stores["store"]), evaluator="llm")
    with pytest.raises(NoChatModelError, match="GRAPHCRAFT_CHAT_MODEL"):
        graph.invoke({"question": "Who designed the Orla Bridge?"})


def test_a_thread_asked_twice_starts_a_fresh_run(crag_stores: dict[str, Path]) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    model = scripted(grades(0.95, 0.1, 0.0), "Ada Lind designed it [1].", grades(0.0, 0.0, 0.0))
    graph = crag.build(
        model=model, settings=get_settings(store=crag_stores["store"], top_k=3), checkpointer=InMemorySaver()
    )
    thread = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"question": "Who designed the Orla Bridge?"}, thread)
    second = graph.invoke({"question": "What colour is the mayor's car?"}, thread)
    assert first["trace"]["llm_calls"] == 2 and second["trace"]["llm_calls"] == 1  # usage is per run
    assert second["trace"]["action"] == "incorrect" and second["answer"] == "Not found in the sources."
    assert [s["step"] for s in second["trace"]["steps"]] == ["retrieve", "evaluate", "rewrite_query", "generate"]


def test_a_failing_web_search_is_recorded_and_the_graph_still_answers(crag_stores: dict[str, Path]) -> None:
    class Down:
        name = "tool:down"

        def search(self, query: str, k: int = 5) -> list:
            raise ConnectionError("search service unreachable")

    state = crag.build(
        settings=get_settings(store=crag_stores["store"], upper_threshold=0.99, lower_threshold=0.05), external=Down()
    ).invoke({"question": "Who designed the Orla Bridge?"})
    search = next(s for s in state["trace"]["steps"] if s["step"] == "web_search")
    assert search["error"] == "ConnectionError: search service unreachable"
    assert "Ada Lind" in state["answer"]  # the internal knowledge of the ambiguous path is kept


@pytest.mark.parametrize(
    ("budget", "calls", "evaluator", "answer_strategy"),
    [({"max_llm_calls": 1}, 1, "llm", "extractive"), ({"max_llm_calls": 0}, 0, "local", "extractive")],
)
def test_a_spent_budget_finishes_offline_with_the_best_answer_so_far(
    crag_stores: dict[str, Path], budget: dict, calls: int, evaluator: str, answer_strategy: str
) -> None:
    """A per-run call budget is never exceeded: once it is spent, grading and answering use the local
    strategies, and the trace names the budget."""
    model = scripted(grades(0.95, 0.1, 0.0), "Ada Lind designed it [1].")
    graph = crag.build(model=model, settings=get_settings(store=crag_stores["store"], top_k=3))
    result = graph.invoke({"question": "Who designed the Orla Bridge?"}, config={"configurable": budget})
    trace = result["trace"]
    assert model.calls == trace["llm_calls"] == calls
    assert trace["evaluator"] == evaluator and trace["answer_strategy"] == answer_strategy
    assert trace["stop_reason"] == "max_llm_calls" and "Ada Lind" in result["answer"]
    assert result["sources"][0]["citation"] == 1
