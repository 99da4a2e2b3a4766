"""Hierarchical RAG: summaries, sections, chunks (tree-organised retrieval, RAPTOR-style).

    index -> select_documents -> select_sections -> select_chunks -> generate     (mode="top_down")
          \\-> collapsed_search ------------------------------------> generate    (mode="collapsed")

index: bring the summary tree up to date with the store (`ingestion.hierarchy`: only new or
changed files are summarised; chat model when configured, extractive offline).
select_documents: rank documents by their summaries; select_sections: the best sections of
those documents; select_chunks: the best chunks of those sections, scored with their section's
and document's similarity. collapsed_search: every level of the tree ranked together (RAPTOR's
collapsed tree), so an overview question can be answered from summaries directly.
generate: relevant knowledge strips, then an answer with citations (LLM or extractive) or an
abstention. No loop: the tree bounds the search to n_documents x n_sections.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from graphcraft.chains.answer import generate_answer
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.config import Settings, settings_from
from graphcraft.ingestion.hierarchy import update_if_stale
from graphcraft.models import embed_texts
from graphcraft.retrievers.hierarchical import HierarchicalRetriever
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import fresh_run
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState as QuestionInput
from graphcraft.runtime.result import OutputState, make_trace

GRAPH = "hierarchical_rag"
DESCRIPTION = (
    "Hierarchical RAG: document summaries -> sections -> chunks (top-down) or a collapsed RAPTOR tree; "
    "incremental summaries."
)

Mode = Literal["top_down", "collapsed"]
INDEX_REPORT_KEYS = ("built", "unchanged", "removed", "summaries", "clusters_new")  # what the trace's index step shows


class InputState(QuestionInput, total=False):
    """The question, and optionally this run's search mode (default: the build option "mode")."""

    mode: Mode


class State(InputState, OutputState, total=False):
    search_mode: Mode  # the mode this run searches in
    documents: list[Document]  # selected document-summary nodes
    sections: list[Document]  # selected section nodes
    chunks: list[Document]  # retrieved knowledge (chunks, or nodes of any level when collapsed)
    index_report: dict[str, Any]
    started_at: float  # the run's wall clock (runtime.bounds)
    # Plain channels (no reducer), reset by `index`: a thread that is asked a second question
    # (Studio, LangGraph Server) starts a fresh run instead of adding to the previous one.
    usage: Usage
    steps: list[dict]


def tree_retriever(ctx: Context) -> HierarchicalRetriever:
    """The summary tree's retriever with the run's beam widths (`index` has already brought the tree up to date)."""
    return HierarchicalRetriever(
        store=ctx.store,
        k=ctx.settings.top_k,
        n_documents=ctx.option("n_documents", ctx.settings.hierarchy_documents),
        n_sections=ctx.option("n_sections", ctx.settings.hierarchy_sections),
        settings=ctx.settings,
        build_options={"clusters": ctx.option("clusters", ctx.settings.hierarchy_clusters)},
    )


def query_vector(ctx: Context, text: str) -> np.ndarray:
    return np.asarray(ctx.embeddings.embed_query(text), dtype=np.float32)


# ---------------------------------------------------------------------- nodes (the method's steps)
def index(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Summarise what is new or changed in the store, so the tree matches it, and start a fresh run."""
    ctx = context(config, GRAPH)
    summarizer = ctx.model if ctx.option("llm_summaries", ctx.settings.hierarchy_llm_summaries) else None
    clusters = ctx.option("clusters", ctx.settings.hierarchy_clusters)
    report = update_if_stale(ctx.store, ctx.settings, summarizer, clusters=clusters)
    summary = report.as_dict() if report else {"up_to_date": True}
    shown = {k: summary[k] for k in INDEX_REPORT_KEYS} if report else summary
    return fresh_run(
        search_mode=state.get("mode") or ctx.option("mode", ctx.settings.hierarchy_mode),
        usage=add_usage(empty_usage(), report.usage if report else None),
        index_report=summary,
        steps=[{"step": "index", **shown}],
    )


def select_documents(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Rank the documents by their summaries and keep the best n_documents."""
    ctx = context(config, GRAPH)
    docs = tree_retriever(ctx).select_documents(query_vector(ctx, state["question"]))
    return {"documents": docs, "steps": state["steps"] + [{"step": "select_documents", "documents": _brief(docs)}]}


def select_sections(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Within the chosen documents, keep the best n_sections sections."""
    ctx = context(config, GRAPH)
    sections = tree_retriever(ctx).select_sections(query_vector(ctx, state["question"]), state["documents"])
    return {"sections": sections, "steps": state["steps"] + [{"step": "select_sections", "sections": _brief(sections)}]}


def select_chunks(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Within the chosen sections, keep the best chunks, scored with their section's and document's similarity."""
    ctx = context(config, GRAPH)
    chunks = tree_retriever(ctx).select_chunks(query_vector(ctx, state["question"]), state["sections"])
    return {"chunks": chunks, "steps": state["steps"] + [{"step": "select_chunks", "chunks": _brief(chunks)}]}


def collapsed_search(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Rank every level of the tree together, so an overview question can be answered from summaries."""
    ctx = context(config, GRAPH)
    nodes = tree_retriever(ctx).collapsed(state["question"])
    return {"chunks": nodes, "steps": state["steps"] + [{"step": "collapsed_search", "nodes": _brief(nodes)}]}


def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Keep the relevant strips of what was found and answer with citations, or abstain."""
    ctx = context(config, GRAPH)
    docs = state.get("chunks", [])
    strips = refine_documents(
        state["question"],
        query_vector(ctx, state["question"]),
        docs,
        [float(d.metadata.get("score") or 0.0) for d in docs],
        ctx.store,
        ctx.settings.strip_threshold,
        embed=partial(embed_texts, ctx.embeddings),
    )
    answer = generate_answer(
        state["question"], _distinct(strips), ctx.model_within(state), documents=docs, store=ctx.store
    )
    levels = {str(d.metadata.get("chunk_id")): d.metadata.get("level", "chunk") for d in docs}
    for src in answer.sources:
        src["level"] = levels.get(str(src.get("chunk_id")), "chunk")
    usage = add_usage(state.get("usage"), answer.usage)
    steps = state["steps"] + [{"step": "generate", "strategy": answer.strategy, "strips": len(strips)}]
    trace = make_trace(
        GRAPH,
        state,
        action=state["search_mode"],
        stop_reason=None,  # no loop: the tree bounds the search
        steps=steps,
        usage=usage,
        index=state.get("index_report", {}),
        answer_strategy=answer.strategy,
        abstained=answer.abstained,
        levels_used=sorted({s["level"] for s in answer.sources}),
    )
    return {"answer": answer.text, "sources": answer.sources, "usage": usage, "trace": trace, "steps": steps}


# ---------------------------------------------------------------------- routing (no loop)
def route_mode(state: State) -> str:
    return "collapsed_search" if state["search_mode"] == "collapsed" else "select_documents"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    mode: Mode | None = None,
    n_documents: int | None = None,
    n_sections: int | None = None,
    clusters: bool | None = None,
    llm_summaries: bool | None = None,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the hierarchical RAG graph.

    mode: "top_down" (default) or "collapsed"; the input may set it per question with "mode".
    n_documents / n_sections: beam widths of the top-down search (3 / 4). clusters: RAPTOR cluster
    nodes (True). llm_summaries: summarise with the chat model when one is configured (True); the
    first question after an ingest then pays for the new documents' summaries, counted in its
    trace (False: extractive summaries, no LLM call). Unset arguments come from the Settings fields
    hierarchy_*; each can be overridden per run in config["configurable"].
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    """
    s = settings_from(settings, options)
    ctx = Context(
        s,
        model=model,
        store=store,
        options={
            "mode": mode or s.hierarchy_mode,
            "n_documents": n_documents or s.hierarchy_documents,
            "n_sections": n_sections or s.hierarchy_sections,
            "clusters": s.hierarchy_clusters if clusters is None else clusters,
            "llm_summaries": s.hierarchy_llm_summaries if llm_summaries is None else llm_summaries,
        },
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (index, select_documents, select_sections, select_chunks, collapsed_search, generate):
        g.add_node(node.__name__, node)
    g.add_edge(START, "index")
    g.add_conditional_edges("index", route_mode, ["select_documents", "collapsed_search"])
    g.add_edge("select_documents", "select_sections")
    g.add_edge("select_sections", "select_chunks")
    g.add_edge("select_chunks", "generate")
    g.add_edge("collapsed_search", "generate")
    g.add_edge("generate", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


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
