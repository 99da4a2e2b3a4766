"""Each CRAG action reached on purpose, offline (local evaluator, extractive answers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphcraft.chains.answer import ABSTAIN
from graphcraft.chains.grade import decide_action
from graphcraft.config import get_settings
from graphcraft.graphs import crag
from graphcraft.testing import final_state


def run(question: str, stores: dict[str, Path], **settings_overrides: object) -> dict:
    settings = get_settings(store=stores["store"], **settings_overrides)
    return final_state(crag.build(settings=settings), {"question": question})


def step(state: dict, name: str) -> list[dict]:
    return [s for s in state["trace"]["steps"] if s["step"] == name]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.9, 0.1], "correct"),
        ([0.1, 0.2], "incorrect"),
        ([0.5, 0.3], "ambiguous"),
        ([0.62, 0.42], "ambiguous"),
        ([], "incorrect"),
    ],
)
def test_decide_action_follows_the_paper(scores: list[float], expected: str) -> None:
    assert (
        decide_action(scores, upper=0.6, lower=0.4) == expected
        if scores != [0.62, 0.42]
        else decide_action(scores, 0.62, 0.42) == expected
    )


def test_correct_refines_and_cites_the_relevant_strip(crag_stores: dict[str, Path]) -> None:
    state = run("Who designed the Orla Bridge?", crag_stores)
    assert state["action"] == "correct"
    assert "Ada Lind" in state["answer"] and "[1]" in state["answer"]
    assert state["sources"][0]["source"].endswith("orla_bridge.md")
    # refinement kept the designer strip and dropped unrelated strips (bakery, trams, lorries)
    kept = " ".join(s["text"] for s in state["internal"])
    assert "Ada Lind" in kept and "sourdough" not in kept and "Line 2" not in kept
    assert state["trace"]["llm_calls"] == 0 and state["trace"]["evaluator"] == "local"
    assert step(state, "web_search") == []


def test_incorrect_without_external_source_abstains_and_says_why(crag_stores: dict[str, Path]) -> None:
    state = run("How deep is Lake Vessa?", crag_stores)
    assert state["action"] == "incorrect"
    assert state["answer"] == ABSTAIN and state["sources"] == []
    assert state["trace"]["external_source"] == "none"
    assert step(state, "rewrite_query")[0]["skipped"] == "no external source configured"


def test_incorrect_searches_the_external_store_with_a_keyword_query(crag_stores: dict[str, Path]) -> None:
    state = run("How deep is Lake Vessa?", crag_stores, external_store=crag_stores["external"])
    assert state["action"] == "incorrect"
    query = step(state, "rewrite_query")[0]["query"]
    assert "Vessa" in query and "How" not in query.split()
    assert "62 metres" in state["answer"]
    assert all(s["origin"] == "external" and s["source"].endswith("lakes.md") for s in state["sources"])
    assert state["trace"]["iterations"] == 1


def test_ambiguous_combines_internal_and_external_knowledge(crag_stores: dict[str, Path]) -> None:
    # An upper threshold no score can pass and a low lower one put the bridge document in between.
    state = run(
        "Who designed the Orla Bridge?",
        crag_stores,
        upper_threshold=0.99,
        lower_threshold=0.05,
        external_store=crag_stores["external"],
    )
    assert state["action"] == "ambiguous"
    assert step(state, "refine") and step(state, "web_search")
    assert "Ada Lind" in state["answer"]
    origins = {s["origin"] for s in state["internal"] + state["external"]}
    assert "internal" in origins


def test_external_search_loop_is_bounded(crag_stores: dict[str, Path]) -> None:
    # The external store has nothing about trams' ticket prices in Oslo: every round finds nothing.
    state = run(
        "What is the price of a monthly tram pass in Oslo?",
        crag_stores,
        external_store=crag_stores["external"],
        max_search_rounds=2,
        lower_threshold=0.6,
        upper_threshold=0.9,
    )
    assert state["action"] == "incorrect"
    assert state["trace"]["iterations"] == 2
    queries = [s["query"] for s in step(state, "rewrite_query")]
    assert len(queries) == 2 and queries[0] != queries[1]  # the retry broadens the query
    assert state["answer"] == ABSTAIN


def test_the_wall_clock_bound_stops_the_search_loop_too(crag_stores: dict[str, Path]) -> None:
    # Three rounds allowed, but the run's time is up after the first search: the routing stops there.
    state = run(
        "What is the price of a monthly tram pass in Oslo?",
        crag_stores,
        external_store=crag_stores["external"],
        max_search_rounds=3,
        lower_threshold=0.6,
        upper_threshold=0.9,
        max_seconds=0.001,
    )
    assert state["trace"]["iterations"] == 1 and len(step(state, "web_search")) == 1
    assert state["answer"] == ABSTAIN


def test_result_shape_and_provenance(crag_stores: dict[str, Path]) -> None:
    import graphcraft

    result = graphcraft.ask("When did heavy lorries get banned from the bridge?", store=crag_stores["store"])
    assert set(result) == {"question", "answer", "sources", "trace"}
    assert "2004" in result["answer"]
    for source in result["sources"]:
        assert {"source", "chunk_id", "page", "score", "text"} <= set(source)
        assert source["text"] and source["chunk_id"]
    assert {"graph", "action", "iterations", "llm_calls", "prompt_tokens", "completion_tokens"} <= set(result["trace"])


def test_a_long_lived_graph_sees_documents_ingested_after_it_was_built(tmp_path: Path) -> None:
    from graphcraft.api import ingest

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The Orla ferry leaves the north quay every hour.")
    ingest([docs], store=tmp_path / "store")
    graph = crag.build(settings=get_settings(store=tmp_path / "store"))
    assert graph.invoke({"question": "How long is the Zeta river?"})["answer"] == ABSTAIN
    (docs / "zeta.md").write_text("The Zeta river is 212 kilometres long and drains into Lake Vessa.")
    ingest([docs], store=tmp_path / "store")
    assert "212 kilometres" in graph.invoke({"question": "How long is the Zeta river?"})["answer"]
