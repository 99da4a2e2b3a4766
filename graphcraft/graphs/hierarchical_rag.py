"""Hierarchical RAG: summaries, sections, chunks (tree-organised retrieval, RAPTOR-style).

    index -> select_documents -> select_sections -> select_chunks -> generate     (mode="top_down")
          \\-> collapsed_search ------------------------------------> generate    (mode="collapsed")

index: bring the summary tree up to date with the store (`ingest.hierarchy`: only new or
changed files are summarised; chat model when configured, extractive offline).
select_documents: rank documents by their summaries; select_sections: the best sections of
those documents; select_chunks: the best chunks of those sections, scored with their section's
and document's similarity. collapsed_search: every level of the tree ranked together (RAPTOR's
collapsed tree), so an overview question can be answered from summaries directly.
generate: relevant knowledge strips, then an answer with citations (LLM or extractive) or an
abstention. No loop: the tree bounds the search to n_documents x n_sections.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, cast

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphcraft.chains.answer import generate_answer
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.config import Settings, settings_from
from graphcraft.ingestion.hierarchy import update_if_stale
from graphcraft.models import embed_texts
from graphcraft.retrievers.hierarchical import HierarchicalRetriever
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Hierarchical RAG: document summaries -> sections -> chunks (top-down) or a collapsed RAPTOR tree; "
    "incremental summaries."
)


class HierarchicalState(TypedDict, total=False):
    question: str
    mode: Literal["top_down", "collapsed"]  # optional input; default from build()
    documents: list[Document]  # selected document-summary nodes
    sections: list[Document]  # selected section nodes
    chunks: list[Document]  # retrieved knowledge (chunks, or nodes of any level when collapsed)
    index_report: dict[str, Any]
    answer: str
    sources: list[dict]
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict], operator.add]
    trace: dict


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    mode: Literal["top_down", "collapsed"] | None = None,
    n_documents: int | None = None,
    n_sections: int | None = None,
    clusters: bool | None = None,
    llm_summaries: bool | None = None,
    **options: Any,
) -> Any:
    """Compile the hierarchical RAG graph.

    mode: "top_down" (default) or "collapsed"; the input state may override it with "mode".
    n_documents / n_sections: beam widths of the top-down search (3 / 4). clusters: RAPTOR cluster
    nodes (True). llm_summaries: summarise with the chat model when one is configured (True); the
    first question after an ingest then pays for the new documents' summaries, counted in its
    trace (False: extractive summaries, no LLM call). Unset arguments come from Settings fields
    hierarchy_* when they exist.
    """
    settings = settings_from(settings, options)
    mode = mode or getattr(settings, "hierarchy_mode", "top_down")
    n_documents = n_documents or cast(int, getattr(settings, "hierarchy_documents", 3))
    n_sections = n_sections or cast(int, getattr(settings, "hierarchy_sections", 4))
    clusters = bool(getattr(settings, "hierarchy_clusters", True)) if clusters is None else clusters
    llm_summaries = bool(getattr(settings, "hierarchy_llm_summaries", True)) if llm_summaries is None else llm_summaries
    base = Resources(settings, model=model, store=store)

    def retriever(res: Resources) -> HierarchicalRetriever:
        # The `index` node has already brought the tree up to date (and counted what it cost).
        return HierarchicalRetriever(
            store=res.store,
            k=res.settings.top_k,
            n_documents=n_documents,
            n_sections=n_sections,
            settings=res.settings,
            build_options={"clusters": clusters},
        )

    def query_vector(res: Resources, text: str) -> np.ndarray:
        return np.asarray(res.embeddings.embed_query(text), dtype=np.float32)

    # ------------------------------------------------------------------ nodes
    def index(state: HierarchicalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        report = update_if_stale(res.store, res.settings, res.model if llm_summaries else None, clusters=clusters)
        summary = report.as_dict() if report else {"up_to_date": True}
        return {
            "mode": state.get("mode") or mode,
            "usage": report.usage if report else None,
            "index_report": summary,
            "steps": [
                {
                    "step": "index",
                    **(
                        {k: summary[k] for k in ("built", "unchanged", "removed", "summaries", "clusters_new")}
                        if report
                        else {"up_to_date": True}
                    ),
                }
            ],
        }

    def select_documents(state: HierarchicalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        docs = retriever(res).select_documents(query_vector(res, state["question"]))
        return {"documents": docs, "steps": [{"step": "select_documents", "documents": _brief(docs)}]}

    def select_sections(state: HierarchicalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        sections = retriever(res).select_sections(query_vector(res, state["question"]), state["documents"])
        return {"sections": sections, "steps": [{"step": "select_sections", "sections": _brief(sections)}]}

    def select_chunks(state: HierarchicalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        chunks = retriever(res).select_chunks(query_vector(res, state["question"]), state["sections"])
        return {"chunks": chunks, "steps": [{"step": "select_chunks", "chunks": _brief(chunks)}]}

    def collapsed_search(state: HierarchicalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        nodes = retriever(res).collapsed(state["question"])
        return {"chunks": nodes, "steps": [{"step": "collapsed_search", "nodes": _brief(nodes)}]}

    def generate(state: HierarchicalState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        docs = state.get("chunks", [])
        strips = refine_documents(
            state["question"],
            query_vector(res, state["question"]),
            docs,
            [float(d.metadata.get("score") or 0.0) for d in docs],
            res.store,
            res.settings.strip_threshold,
            embed=lambda texts: embed_texts(res.embeddings, texts),
        )
        answer = generate_answer(state["question"], _distinct(strips), res.model, documents=docs, store=res.store)
        levels = {str(d.metadata.get("chunk_id")): d.metadata.get("level", "chunk") for d in docs}
        for src in answer.sources:
            src["level"] = levels.get(str(src.get("chunk_id")), "chunk")
        final = {**state, "usage": add_usage(state.get("usage"), answer.usage)}
        trace = make_trace(
            "hierarchical_rag",
            final,
            mode=state["mode"],
            index=state.get("index_report", {}),
            answer_strategy=answer.strategy,
            abstained=answer.abstained,
            levels_used=sorted({s["level"] for s in answer.sources}),
            steps=state.get("steps", []) + [{"step": "generate", "strategy": answer.strategy, "strips": len(strips)}],
        )
        return {"answer": answer.text, "sources": answer.sources, "usage": answer.usage, "trace": trace}

    def route_mode(state: HierarchicalState) -> str:
        return "collapsed_search" if state["mode"] == "collapsed" else "select_documents"

    g = StateGraph(HierarchicalState)
    for node in (index, select_documents, select_sections, select_chunks, collapsed_search, generate):
        g.add_node(node.__name__, node)
    g.add_edge(START, "index")
    g.add_conditional_edges("index", route_mode, ["select_documents", "collapsed_search"])
    g.add_edge("select_documents", "select_sections")
    g.add_edge("select_sections", "select_chunks")
    g.add_edge("select_chunks", "generate")
    g.add_edge("collapsed_search", "generate")
    g.add_edge("generate", END)
    return g.compile(name="hierarchical_rag")


def _distinct(strips: list[Strip]) -> list[Strip]:
    """One copy of each sentence: a summary node may quote the very sentence a chunk holds."""
    best: dict[str, Strip] = {}
    for strip in strips:
        key = " ".join(strip.text.lower().split())
        if key not in best or strip.score > best[key].score:
            best[key] = strip
    kept = {id(s) for s in best.values()}
    return [s for s in strips if id(s) in kept]


def _brief(docs: list[Document]) -> list[dict[str, Any]]:
    """What the trace keeps of a selection: node id, level, title or source, score."""
    return [
        {
            "id": d.metadata.get("chunk_id"),
            "level": d.metadata.get("level", "chunk"),
            "title": d.metadata.get("title") or d.metadata.get("section") or d.metadata.get("source"),
            "score": round(float(d.metadata.get("score") or 0.0), 4),
        }
        for d in docs
    ]


graph = build()
