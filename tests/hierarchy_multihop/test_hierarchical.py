"""Hierarchical index, retriever and graph: real MiniLM, FAISS and summaries; scripted chat model for LLM summaries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graphcraft.chains.summarize import Summary, centroid_sentences, summarize
from graphcraft.config import get_settings
from graphcraft.ingestion.hierarchy import build_hierarchy, hierarchy_path, open_hierarchy, tree_of, update_if_stale
from graphcraft.ingestion.pipeline import ingest_paths, remove_paths
from graphcraft.retrievers.hierarchical import HierarchicalRetriever
from graphcraft.testing import ScriptedChatModel, final_state
from tests.hierarchy_multihop.corpus import CORPUS, NEW_DOCUMENT, write


class CountingSummarizer:
    """Wraps the real summariser and records what it was asked to summarise."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, sentences, vectors=None, model=None, **kwargs) -> Summary:  # type: ignore[no-untyped-def]
        self.calls.append((kwargs.get("kind", ""), kwargs.get("title", "")))
        return summarize(sentences, vectors, model, **kwargs)


def _nodes(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """node id -> text of every node in the hierarchy."""
    return {d.metadata["chunk_id"]: d.page_content for d in open_hierarchy(store).documents()}


def test_centroid_summary_picks_central_prose_sentences(embeddings) -> None:  # type: ignore[no-untyped-def]
    sentences = [
        "Oldmere has 27,300 residents and the main market hall.",
        "| Oldmere | 27,300 |",
        "Fenwick has 12,450 residents and many orchards.",
        "Saltby has 8,900 residents and the harbour.",
        "The weather was cold.",
    ]
    picked = centroid_sentences(sentences, embeddings.embed_array(sentences), max_sentences=2)
    assert 1 not in picked and 4 not in picked and len(picked) == 2  # no table row, no off-topic sentence


def test_build_is_incremental_nothing_summarised_twice(store_copy: Path, open_chunk_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = open_chunk_store(store_copy)
    counter = CountingSummarizer()
    first = build_hierarchy(store, summarizer=counter, clusters=False)
    assert first.built == len(CORPUS) and first.summaries == len(counter.calls) > len(CORPUS)
    tree = tree_of(open_hierarchy(store))
    assert set(tree["documents"]) == set(store.files)
    districts = next(e for s, e in tree["documents"].items() if s.endswith("norhaven_districts.md"))
    assert [s["title"].split(" > ")[-1] for s in districts["sections"]] == [
        "Districts of Norhaven",
        "Oldmere",
        "Fenwick",
        "Saltby",
    ]
    before = _nodes(store)

    again = build_hierarchy(open_chunk_store(store_copy), summarizer=counter, clusters=False)
    assert again.summaries == 0 and again.unchanged == len(CORPUS) and len(counter.calls) == first.summaries

    name, text = NEW_DOCUMENT
    ingest_paths([write(tmp_path / "more", {name: text})], store)
    counter.calls.clear()
    update = build_hierarchy(store, summarizer=counter, clusters=False)
    new_sections = 3  # title paragraph, Programme, Organisers
    assert update.built == 1 and update.unchanged == len(CORPUS)
    assert (
        update.summaries == len(counter.calls) == new_sections + 1
    )  # its sections + its document summary, nothing else
    assert {title for _, title in counter.calls} >= {"Fenwick Orchard Festival > Programme", "Fenwick Orchard Festival"}
    after = _nodes(store)
    assert {k: after[k] for k in before} == before  # every old node kept as it was

    remove_paths([tmp_path / "more" / name], store)
    removed = build_hierarchy(store, summarizer=counter, clusters=False)
    assert removed.removed == 1 and removed.summaries == 0 and _nodes(store) == before


def test_interrupted_build_resumes_without_summarising_again(store_copy: Path, open_chunk_store) -> None:  # type: ignore[no-untyped-def]
    class Crash(RuntimeError):
        pass

    counter = CountingSummarizer()

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        if len(counter.calls) >= 6:  # dies after the first documents were committed
            raise Crash("killed")
        return counter(*args, **kwargs)

    with pytest.raises(Crash):
        build_hierarchy(open_chunk_store(store_copy), summarizer=failing, commit_every=1)
    committed = tree_of(open_hierarchy(open_chunk_store(store_copy)))["documents"]
    assert 1 <= len(committed) < len(CORPUS)

    def cost(entry: dict) -> int:  # extractive: one summary per section, one per document with several sections
        return len(entry["sections"]) + (len(entry["sections"]) > 1)

    resumed = build_hierarchy(open_chunk_store(store_copy), summarizer=CountingSummarizer(), clusters=False)
    documents = tree_of(open_hierarchy(open_chunk_store(store_copy)))["documents"]
    assert len(documents) == len(CORPUS) and resumed.unchanged == len(committed)
    assert resumed.summaries == sum(cost(e) for src, e in documents.items() if src not in committed)
    assert sum(cost(e) for e in committed.values()) <= len(counter.calls)  # those were paid for once, before the crash


def test_clusters_span_documents_and_new_chunks_never_resummarise_old_clusters(
    store_copy: Path, open_chunk_store, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store = open_chunk_store(store_copy)
    first = build_hierarchy(store, cluster_threshold=0.7)
    tree = tree_of(open_hierarchy(store))
    assert first.clusters_new == len(tree["clusters"]) >= 1
    for cluster in tree["clusters"].values():
        assert len(cluster["sources"]) >= 2 and len(cluster["members"]) >= 2
    old_clusters = {cid: text for cid, text in _nodes(store).items() if cid.startswith("cluster:")}
    name, text = NEW_DOCUMENT
    source = str((write(tmp_path / "more", {name: text}) / name).resolve())
    ingest_paths([tmp_path / "more"], store)
    new_chunks = set(store.files[source]["chunk_ids"])

    # Joining: with no similarity floor every new chunk joins its nearest cluster, none is re-summarised.
    joined = build_hierarchy(
        store, summarizer=(counter := CountingSummarizer()), join_threshold=-1.0, max_cluster_size=100
    )
    assert joined.chunks_joined == len(new_chunks) and joined.clusters_new == 0
    assert joined.summaries == len(counter.calls) == 4  # the new document's three sections and its summary only
    members = {m for c in tree_of(open_hierarchy(store))["clusters"].values() for m in c["members"]}
    assert new_chunks <= members and {k: _nodes(store)[k] for k in old_clusters} == old_clusters

    # New clusters: chunks that join nothing are clustered; only clusters holding new chunks are summarised.
    remove_paths([source], store)
    removed = build_hierarchy(store)
    assert removed.removed == 1 and removed.summaries == 0 and removed.clusters_dropped == 0  # joined chunks just leave
    assert not new_chunks & {m for c in tree_of(open_hierarchy(store))["clusters"].values() for m in c["members"]}
    ingest_paths([tmp_path / "more"], store)
    update = build_hierarchy(
        store,
        summarizer=(counter := CountingSummarizer()),
        join_threshold=2.0,
        cluster_threshold=2.0,
        min_cluster_sources=1,
    )
    clusters_summarised = sum(1 for kind, _ in counter.calls if kind == "group of related passages")
    assert update.clusters_new == clusters_summarised >= 1 and update.summaries == 4 + update.clusters_new
    new_tree = tree_of(open_hierarchy(store))
    for cid, cluster in new_tree["clusters"].items():
        assert cid in old_clusters or new_chunks & set(cluster["members"])
    assert {k: _nodes(store)[k] for k in old_clusters} == old_clusters


def test_llm_summaries_are_made_once(store_copy: Path, open_chunk_store) -> None:  # type: ignore[no-untyped-def]
    model = ScriptedChatModel(script=lambda call: "Summary: " + call.last.split("\n")[-3][:80])
    store = open_chunk_store(store_copy)
    report = build_hierarchy(store, model=model, clusters=False)
    assert report.strategy == "llm" and report.usage["llm_calls"] == model.call_count == report.summaries
    # Multi-section documents get their summary from the section summaries, single-section ones reuse it.
    assert model.call_count < sum(
        len(e["sections"]) for e in tree_of(open_hierarchy(store))["documents"].values()
    ) + len(CORPUS)
    calls = model.call_count
    assert update_if_stale(open_chunk_store(store_copy), model=model) is None and model.call_count == calls


def test_top_down_retrieval_walks_documents_sections_chunks(corpus_store: Path, open_chunk_store) -> None:  # type: ignore[no-untyped-def]
    store = open_chunk_store(corpus_store)
    retriever = HierarchicalRetriever(store=store, k=3)
    qv = retriever.query_vector("How many residents does Fenwick have?")
    documents = retriever.select_documents(qv)
    assert (
        Path(documents[0].metadata["source"]).name == "norhaven_districts.md"
        and documents[0].metadata["level"] == "document"
    )
    sections = retriever.select_sections(qv, documents)
    assert sections[0].metadata["title"].endswith("Fenwick")
    chunks = retriever.search("How many residents does Fenwick have?")
    assert "12,450" in chunks[0].page_content and chunks[0].metadata["level"] == "chunk"
    assert chunks[0].metadata["section_node"] == sections[0].metadata["chunk_id"]
    assert chunks[0].metadata["document_node"] == documents[0].metadata["chunk_id"]
    assert all(a.metadata["score"] >= b.metadata["score"] for a, b in zip(chunks, chunks[1:], strict=False))


def test_collapsed_tree_mixes_levels_and_builds_lazily(store_copy: Path, open_chunk_store) -> None:  # type: ignore[no-untyped-def]
    store = open_chunk_store(store_copy)
    assert not hierarchy_path(store).exists()
    results = HierarchicalRetriever(store=store, k=6, mode="collapsed").search(
        "Give an overview of the districts of Norhaven."
    )
    assert hierarchy_path(store).exists()  # built on first use
    levels = {d.metadata["level"] for d in results}
    assert levels & {"document", "section", "cluster"} and len(results) == 6
    assert Path(results[0].metadata["source"]).name == "norhaven_districts.md"


@pytest.mark.parametrize("mode", ["top_down", "collapsed"])
def test_hierarchical_graph_answers_with_provenance(corpus_store: Path, mode: str) -> None:
    from graphcraft.graphs.hierarchical_rag import build

    graph = build(settings=get_settings(store=corpus_store))
    state = graph.invoke({"question": "Where does Verdant Labs have its head office?", "mode": mode})
    assert "Oldmere" in state["answer"] and state["sources"]
    assert all(s["source"].endswith("verdant_labs.md") or s.get("level") != "chunk" for s in state["sources"][:1])
    steps = [s["step"] for s in state["trace"]["steps"]]
    expected = (
        ["index", "select_documents", "select_sections", "select_chunks", "generate"]
        if mode == "top_down"
        else ["index", "collapsed_search", "generate"]
    )
    assert steps == expected and state["trace"]["action"] == mode and state["trace"]["llm_calls"] == 0
    assert state["trace"]["stop_reason"] is None and set(state) == {"question", "answer", "sources", "trace"}


def test_per_run_configuration_reaches_every_node(corpus_store: Path) -> None:
    from graphcraft.graphs.hierarchical_rag import build

    graph = build(settings=get_settings(store=corpus_store))
    question = {"question": "How many residents does Fenwick have?"}
    default = graph.invoke(question)
    assert default["trace"]["action"] == "top_down"
    narrow = graph.invoke(question, config={"configurable": {"n_documents": 1}})
    steps = {s["step"]: s for s in narrow["trace"]["steps"]}
    wide = {s["step"]: s for s in default["trace"]["steps"]}
    assert len(steps["select_documents"]["documents"]) == 1 < len(wide["select_documents"]["documents"])
    assert {s["source"] for s in narrow["sources"]} == {s["source"] for s in narrow["sources"][:1]}  # one document
    collapsed = graph.invoke(question, config={"configurable": {"mode": "collapsed"}})
    assert collapsed["trace"]["action"] == "collapsed"
    assert [s["step"] for s in collapsed["trace"]["steps"]] == ["index", "collapsed_search", "generate"]
    # the question's own "mode" wins over the run's configuration
    given = graph.invoke({**question, "mode": "top_down"}, config={"configurable": {"mode": "collapsed"}})
    assert given["trace"]["action"] == "top_down"


def test_working_channels_and_a_thread_that_is_asked_again(corpus_store: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from graphcraft.graphs.hierarchical_rag import build

    state = final_state(build(settings=get_settings(store=corpus_store)), {"question": "Where is Oldmere?"})
    assert state["search_mode"] == "top_down" and state["documents"] and state["sections"] and state["chunks"]
    assert all(d.metadata["level"] == "document" for d in state["documents"])
    graph = build(settings=get_settings(store=corpus_store), checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "h"}}
    graph.invoke({"question": "Where is Oldmere?"}, thread)
    second = graph.invoke({"question": "How many residents does Fenwick have?"}, thread)
    assert [s["step"] for s in second["trace"]["steps"]][0] == "index" and len(second["trace"]["steps"]) == 5
    assert "12,450" in second["answer"]


def test_select_documents_node_on_its_own(corpus_store: Path) -> None:
    from graphcraft.graphs import hierarchical_rag

    update = hierarchical_rag.select_documents(
        {"question": "How many residents does Fenwick have?", "steps": []},
        {"configurable": {"store": str(corpus_store)}},
    )
    assert Path(update["documents"][0].metadata["source"]).name == "norhaven_districts.md"
    assert update["steps"][0]["step"] == "select_documents"
    assert len(update["documents"]) == get_settings().hierarchy_documents


def test_llm_generation_over_the_tree_and_public_api(corpus_store: Path, open_chunk_store) -> None:  # type: ignore[no-untyped-def]
    from graphcraft.api import ask
    from graphcraft.graphs import available_graphs

    update_if_stale(open_chunk_store(corpus_store))  # extractive summaries: the model below only answers

    def answer_from_knowledge(call):  # type: ignore[no-untyped-def]
        knowledge = call.text.split("Knowledge:")[1].split("Question:")[0]
        line = next(ln for ln in knowledge.strip().splitlines() if "Fenwick" in ln and "residents" in ln)
        return "Fenwick has 12,450 residents " + line.split("]")[0] + "]."

    model = ScriptedChatModel(script=answer_from_knowledge)
    result = ask("How many residents does Fenwick have?", graph="hierarchical_rag", store=corpus_store, model=model)
    assert result["answer"].startswith("Fenwick has 12,450 residents [") and result["trace"]["answer_strategy"] == "llm"
    cited = int(result["answer"].split("[")[1].split("]")[0])
    assert any(s["citation"] == cited and "12,450" in s["text"] for s in result["sources"])
    assert result["trace"]["llm_calls"] == 1 and {"multihop", "hierarchical_rag"} <= set(available_graphs())


def test_multihop_hops_can_use_the_hierarchical_retriever(corpus_store: Path) -> None:
    from graphcraft.graphs.multihop import build

    graph = build(settings=get_settings(store=corpus_store), retriever="hierarchical")
    state = graph.invoke(
        {"question": "How many residents live in the district where Verdant Labs has its head office?"}
    )
    assert state["trace"]["hops"][1]["question"] == "How many residents live in Oldmere?"
    assert "27,300" in state["answer"]


def test_lazy_llm_summaries_are_counted_in_the_first_answer_trace(store_copy: Path) -> None:
    from graphcraft.graphs.hierarchical_rag import build

    def script(call):  # type: ignore[no-untyped-def]
        if call.text.startswith("Write a summary"):
            return "A summary of " + call.text.split("\n")[2][:60]
        return "Oldmere [1]."

    model = ScriptedChatModel(script=script)
    graph = build(model=model, settings=get_settings(store=store_copy))
    first = graph.invoke({"question": "Where does Verdant Labs have its head office?"})
    summaries = first["trace"]["index"]["summaries"]
    assert summaries > 0 and first["trace"]["llm_calls"] == model.call_count == summaries + 1
    second = graph.invoke({"question": "Where does Verdant Labs have its head office?"})
    assert second["trace"]["index"] == {"up_to_date": True} and second["trace"]["llm_calls"] == 1

    shutil.rmtree(store_copy / "hierarchy")  # rebuilt by the next graph, extractively this time
    calls = model.call_count
    offline = build(model=model, settings=get_settings(store=store_copy), llm_summaries=False).invoke(
        {"question": "Where is Oldmere?"}
    )
    assert offline["trace"]["index"]["summaries"] > 0 and offline["trace"]["index"]["strategy"] == "extractive"
    assert offline["trace"]["llm_calls"] == 1 and model.call_count == calls + 1
