"""A reused thread (Studio, LangGraph Server) answers each new question from a fresh run."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphcraft.config import get_settings


@pytest.mark.parametrize("name", ["router", "adaptive_rag"])
def test_second_question_on_a_thread_starts_a_fresh_run(fresh_store, name: str) -> None:  # type: ignore[no-untyped-def]
    import importlib

    module = importlib.import_module(f"graphcraft.graphs.{name}")
    graph = module.build(settings=get_settings(store=fresh_store), checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": f"t-{name}"}}
    first = graph.invoke({"question": "What is 17 * 3?"}, thread)
    assert first["answer"] == "17 * 3 = 51"
    second = graph.invoke({"question": "How many tram stops does the LMT network have?"}, thread)
    fresh = module.build(settings=get_settings(store=fresh_store)).invoke(
        {"question": "How many tram stops does the LMT network have?"}
    )
    assert "92" in second["answer"] and second["answer"] == fresh["answer"]
    assert [s["step"] for s in second["trace"]["steps"]] == [s["step"] for s in fresh["trace"]["steps"]]
    assert second["trace"]["action"] == fresh["trace"]["action"] != first["trace"]["action"]
