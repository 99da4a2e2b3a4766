"""The graph_rag graph: two-hop local answers through a bridge entity, global answers from communities."""

from __future__ import annotations

import re

import pytest

from graphcraft.testing import final_state
from tests.fakes import prompt_texts, scripted


def _graph(sample_index, model=None, **options):
    from graphcraft.graphs.graph_rag import build

    settings, chunks, graph, _ = sample_index
    return build(model=model, settings=settings, store=chunks, graph_store=graph, **options)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).lower()


@pytest.mark.parametrize("case", range(3))
def test_two_hop_question_is_answered_through_the_bridge_entity(sample_index, expected, case):
    item = expected["two_hop"][case]
    state = final_state(_graph(sample_index), {"question": item["question"]})
    trace = state["trace"]
    assert trace["action"] == "local" and trace["llm_calls"] == 0 and trace["stop_reason"] is None
    assert [s["step"] for s in trace["steps"]] == ["route_question", "local_search", "generate"]
    if item["offline_answer"]:  # the extractive answer's sentences state it
        assert all(k.lower() in _norm(state["answer"]) for k in item["answer_keywords"]), state["answer"]
    # a cited chunk holds the answer, it was reached through the graph, and the path names the bridge
    keyword = item["answer_keywords"][0].lower()
    cited = [s for s in state["sources"] if keyword in _norm(s["text"])]
    assert cited, state["sources"]
    docs = {d.metadata["chunk_id"]: d for d in state["documents"]}
    assert any("graph" in docs[s["chunk_id"]].metadata.get("ranks", {}) for s in cited)
    paths = " ".join(p for s in cited for p in s["graph_paths"]) + " " + " ".join(trace["graph_paths"])
    assert item["bridge"].split()[0] in paths, paths


def test_two_hop_answer_chunk_is_beyond_the_vector_retrievers_reach(sample_index, expected):
    """The first question's answer chunk names neither Acme nor headquarters: the graph brings it."""
    from graphcraft.retrievers.graph import GraphRetriever

    settings, chunks, graph, _ = sample_index
    item = expected["two_hop"][0]
    retriever = GraphRetriever(graph_store=graph, chunk_store=chunks, embeddings=chunks.embeddings, k=5)
    found = retriever.retrieve(item["question"])
    assert [s["name"] for s in found.seeds][:1] == ["Acme Corp"]
    hop2 = [d for d in found.graph_documents if d.metadata.get("graph_step") == "hop2"]
    assert any(item["answer_keywords"][0] in d.page_content for d in hop2)
    assert any(item["answer_keywords"][0] in d.page_content for d in found.documents)


def test_global_question_is_answered_from_community_summaries(sample_index, expected):
    item = expected["global"][0]
    state = _graph(sample_index).invoke({"question": item["question"]})
    trace = state["trace"]
    assert trace["action"] == "global" and trace["llm_calls"] == 0 and trace["iterations"] == 1
    assert [s["step"] for s in trace["steps"]] == ["route_question", "global_search", "reduce"]
    assert set(state) == {"question", "answer", "sources", "trace"}
    assert trace["communities"] and state["sources"]
    assert any(k.lower() in state["answer"].lower() for k in item["answer_keywords_any"])
    _, _, graph, _ = sample_index
    summaries = " ".join(r["s"] for r in graph.query("MATCH (c:Community) RETURN c.summary AS s"))
    for source in state["sources"]:
        assert source["community"] in trace["communities"]
        assert source["text"] in summaries  # every point comes from a community summary


def test_llm_strategy_routes_maps_and_reduces_within_bounds(sample_index):
    model = scripted(
        {"route": "global", "reason": "broad"},
        {"points": [{"text": "Acme makes pumps in Dunmore.", "score": 90}]},
        {"points": [{"text": "The KWA buys pumps.", "score": 40}]},
        "Acme makes pumps in Dunmore [1].",
    )
    graph = _graph(sample_index, model=model, max_communities=2)
    state = graph.invoke({"question": "What is this collection about?"})
    trace = state["trace"]
    assert trace["action"] == "global" and len(trace["communities"]) == 2
    assert trace["llm_calls"] == model.calls == 1 + 2 + 1  # route, two maps, reduce
    assert trace["stop_reason"] == "max_communities" and trace["answer_strategy"] == "llm_map_reduce"
    assert state["answer"] == "Acme makes pumps in Dunmore [1]."
    reduce_prompt = prompt_texts(model)[-1]
    assert reduce_prompt.index("Acme makes pumps") < reduce_prompt.index("The KWA buys pumps")  # best point first
    assert [s["citation"] for s in state["sources"]] == [1, 2]


def test_per_run_configuration_reaches_every_node(sample_index):
    question = {"question": "Give an overview of the main themes of the collection."}
    graph = _graph(sample_index)
    default = graph.invoke(question)["trace"]
    one = graph.invoke(question, config={"configurable": {"max_communities": 1}})["trace"]
    assert len(one["communities"]) == 1 < len(default["communities"]) and one["stop_reason"] == "max_communities"
    # A model that always has more points to give: the run's LLM-call budget ends the map, and the
    # reduce is written without the model.
    model = scripted({"route": "global", "reason": "broad"}, {"points": [{"text": "Acme makes pumps.", "score": 90}]})
    budgeted = _graph(sample_index, model=model).invoke(question, config={"configurable": {"max_llm_calls": 3}})
    trace = budgeted["trace"]
    assert trace["stop_reason"] == "max_llm_calls" and trace["llm_calls"] == model.calls == 3
    assert len(trace["communities"]) == 2 and trace["answer_strategy"] == "extractive_map_reduce"
    assert budgeted["answer"].startswith("Acme makes pumps. [1]")


def test_malformed_json_falls_back_to_rules_and_to_no_points(sample_index):
    model = scripted("this is not JSON {")
    state = _graph(sample_index, model=model, max_communities=2).invoke({"question": "Summarise the collection."})
    trace = state["trace"]
    attempts = 1 + sample_index[0].max_structured_repairs
    assert trace["steps"][0]["strategy"] == "llm->rules_fallback" and trace["action"] == "global"
    assert trace["structured_outputs"]["fallbacks"] == 3 and model.calls == 3 * attempts  # route and two maps
    assert trace["abstained"] and state["sources"] == [] and trace["answer_strategy"] == "abstain"


def test_global_search_node_on_its_own(sample_index):
    from graphcraft.graphs import graph_rag

    settings = sample_index[0]
    update = graph_rag.global_search(
        {"question": "What are the main themes?", "steps": [], "usage": {}},
        {"configurable": {"store": str(settings.store)}},
    )
    assert 1 <= len(update["communities"]) <= graph_rag.MAX_COMMUNITIES and update["points"]
    assert update["steps"][0]["mapped_with"] == "summary_sentences" and update["usage"].get("llm_calls", 0) == 0


def test_empty_graph_says_to_build_it(tmp_path, embeddings):
    from graphcraft.config import get_settings
    from graphcraft.errors import EmptyStoreError
    from graphcraft.graphs.graph_rag import build
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.graph import open_graph_store
    from graphcraft.stores.vector import open_store

    settings = get_settings(store=tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("Acme Corp makes pumps in Dunmore.")
    chunks = open_store(tmp_path, settings)
    ingest_paths([tmp_path / "d"], chunks, settings)
    graph = open_graph_store(tmp_path, backend="falkordb", falkordb_port=0, settings=settings)
    try:
        with pytest.raises(EmptyStoreError, match="graph build"):
            build(settings=settings, store=chunks, graph_store=graph).invoke({"question": "Where is Acme?"})
    finally:
        graph.stop_server()
