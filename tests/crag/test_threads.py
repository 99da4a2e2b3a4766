"""A reused thread (Studio, LangGraph Server) answers each new question from a fresh run."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphcraft.config import get_settings


@pytest.mark.parametrize("name", ["self_rag", "multihop"])
def test_second_question_on_a_thread_is_not_answered_from_the_first(crag_stores: dict[str, Path], name: str) -> None:
    import importlib

    module = importlib.import_module(f"graphcraft.graphs.{name}")
    graph = module.build(settings=get_settings(store=crag_stores["store"]), checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": f"t-{name}"}}
    first = graph.invoke({"question": "Who designed the Orla Bridge?"}, thread)
    assert "Ada Lind" in first["answer"]
    second = graph.invoke({"question": "When did heavy lorries get banned from the bridge?"}, thread)
    assert "2004" in second["answer"] and "Ada Lind" not in second["answer"]
    fresh = module.build(settings=get_settings(store=crag_stores["store"])).invoke(
        {"question": "When did heavy lorries get banned from the bridge?"}
    )
    assert second["trace"]["llm_calls"] == fresh["trace"]["llm_calls"] == 0
    assert second["trace"]["iterations"] == fresh["trace"]["iterations"]
