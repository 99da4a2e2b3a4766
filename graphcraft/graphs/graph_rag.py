"""Graph RAG: local search over the entity graph, global search over community summaries.

    route_question --local--> local_search --> generate --> END
                   --global-> global_search (map over communities) --> reduce --> END

- route_question: a broad question (summarise, overview, main themes ...) goes global, as in
  Microsoft GraphRAG, where global search serves sense-making over the whole collection; every
  specific question goes local, also when it names no entity the graph knows (local search
  then rests on its vector half; measured on technical manuals, sending those questions to
  the community summaries lost most answers). With a chat model the route is asked for with a
  schema (a bad reply falls back to these rules).
- local_search: question entities -> k-hop neighbourhood (parameterised Cypher) -> bridge
  chunks, fused with vector results by RRF (graphcraft.retrievers.graph).
- generate: the best sentences of those chunks answer (extractive offline, the chat model
  when configured), citing chunks [n] and naming the graph paths used.
- global_search + reduce: map-reduce (as in Microsoft GraphRAG) over the community summaries
  most related to the question: each community yields scored points (its summary sentences
  offline, or one LLM call), the best points are combined into the answer, citing the
  communities' chunks. The map stops at `max_communities` or at a bound of the run (LLM calls,
  tokens, wall clock), checked in `stop_reason` before every community; the answer is written
  without the model once a bound is reached.

Run `graphcraft graph build` first; the graph is built from the store's ingested chunks.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Literal

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from graphcraft.chains.answer import ABSTAIN, Answer, generate_answer, readable
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.config import Settings, settings_from
from graphcraft.errors import EmptyStoreError
from graphcraft.models import embed_texts, invoke_llm, message_text, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import fresh_run
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "graph_rag"
DESCRIPTION = (
    "Graph RAG: entity graph (FalkorDB/Neo4j); local k-hop search fused with vectors, or global map-reduce over "
    "community summaries; cites chunks and graph paths."
)

ROUTE_PROMPT = """Decide how to search a knowledge graph for this question.
"local": the question is about specific named entities and their relations.
"global": the question is broad (themes, overview, summary of the whole collection).
Entities of the graph found in the question: {entities}
Question: {question}"""

MAP_PROMPT = """From the community summary below, list the points that help answer the question,
each with a score from 0 (useless) to 100 (essential). No points if nothing helps.

Community: {title}
Summary: {summary}

Question: {question}"""

REDUCE_PROMPT = """Answer the question from the numbered points below, which come from summaries of
communities of related entities. Cite the points' numbers in square brackets, like [1].
If the points do not answer it, reply exactly: {abstain}

Points:
{points}

Question: {question}
Answer:"""

COMMUNITIES_QUERY = (
    "MATCH (c:Community) RETURN c.id AS id, c.level AS level, c.title AS title, c.summary AS summary, "
    "c.chunk_ids AS chunk_ids, c.rank AS rank, c.embedding AS embedding, c.size AS size, "
    "c.entity_names AS entity_names"
)

BROAD = re.compile(
    r"\b(summari[sz]e|summary|overview|overall|main (?:themes?|topics?|points?|organi[sz]ations?|ideas?)|themes?|"
    r"in general|across (?:the|these|all)|big picture|landscape|what are the key|key topics?)\b",
    re.IGNORECASE,
)

# Build options' defaults.
HOPS = 2
MAX_COMMUNITIES = 6
POINTS_PER_COMMUNITY = 2
MAX_POINTS = 5
BASE_RETRIEVER = "hybrid"
SHOWN_PATHS = 8  # graph paths a local search keeps in its state and trace


class State(InputState, OutputState, total=False):
    route: Literal["local", "global"]
    route_reason: str
    seeds: list[dict]  # the graph's entities named in the question
    paths: list[dict]  # graph paths local search walked
    documents: list[Document]
    communities: list[dict]  # the communities global search mapped
    points: list[dict]  # the map step's scored points
    iterations: int  # map-reduce rounds (0 local, 1 global)
    stopped: str | None  # the bound that ended the map before every relevant community was read
    started_at: float  # the run's wall clock (runtime.bounds)
    # Plain channels (no reducer), reset by `route_question`: a thread that is asked a second
    # question (Studio, LangGraph Server) starts a fresh run instead of adding to the previous one.
    usage: Usage
    steps: list[dict]


class _Route(BaseModel):
    route: Literal["local", "global"] = Field(
        description="local: about specific named entities; global: broad, about the whole collection"
    )
    reason: str = ""


class _Point(BaseModel):
    text: str
    score: int = Field(ge=0, le=100, description="how much this point helps answer the question")


class _Points(BaseModel):
    points: list[_Point] = Field(default_factory=list)


def heuristic_route(question: str, seeds: list[dict]) -> tuple[Literal["local", "global"], str]:
    if BROAD.search(question):
        return "global", "broad question"
    if not seeds:
        return "local", "a specific question naming no entity of the graph: vector half of local search"
    return "local", f"names {', '.join(s['name'] for s in seeds[:3])}"


_GRAPHS: dict[tuple[str, ...], Any] = {}  # entity graphs this module opened, one per store and backend
_GRAPHS_LOCK = threading.Lock()


def entity_graph(ctx: Context) -> Any:
    """The entity graph: the build option "graph_store", else the store's own, opened once."""
    given = ctx.option("graph_store")
    if given is not None:
        return _as_cleared(ctx, given)
    s = ctx.settings
    key = (str(s.store), s.neo4j_uri, s.falkordb_host, str(s.falkordb_port))
    with _GRAPHS_LOCK:
        if key not in _GRAPHS:
            from graphcraft.graph_index.api import open_graph

            _GRAPHS[key] = open_graph(s.store, s)
        return _as_cleared(ctx, _GRAPHS[key])


def _as_cleared(ctx: Context, graph: Any) -> Any:
    """The graph as the run's clearance sees it (guards/access_graph.py); itself at full clearance."""
    from graphcraft.guards.access import LEVELS
    from graphcraft.guards.access_graph import cleared_graph

    return graph if ctx.settings.clearance == LEVELS[-1] else cleared_graph(graph, ctx.store)


def graph_retriever(ctx: Context) -> Any:
    """Entity linking and k-hop neighbourhoods, fused with the base retriever by RRF."""
    from graphcraft.retrievers.graph import GraphRetriever

    chunks = ctx.store
    return GraphRetriever(
        graph_store=entity_graph(ctx),
        chunk_store=chunks,
        embeddings=chunks.embeddings,
        k=ctx.settings.top_k,
        hops=ctx.option("hops", HOPS),
        base=ctx.option("base_retriever", BASE_RETRIEVER),
        rrf_k=ctx.settings.rrf_k,
    )


def query_vector(ctx: Context, text: str) -> np.ndarray:
    return np.asarray(ctx.embeddings.embed_query(text), dtype=np.float32)


# ---------------------------------------------------------------------- nodes (the method's steps)
def route_question(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Link the question's entities and choose local or global search; start a fresh run."""
    ctx = context(config, GRAPH)
    if entity_graph(ctx).counts()["entities"] == 0:
        raise EmptyStoreError(ctx.settings.store, "the entity graph of store", "graphcraft graph build --store {store}")
    question = state["question"]
    seeds = graph_retriever(ctx).link_entities(question)
    route, reason = heuristic_route(question, seeds)
    usage, strategy = empty_usage(), "rules"
    if ctx.model is not None:
        result = structured_call(
            ctx.model,
            _Route,
            ROUTE_PROMPT.format(entities=", ".join(s["name"] for s in seeds) or "none", question=question),
            fallback=_Route(route=route, reason=reason),
            max_repairs=ctx.settings.max_structured_repairs,
        )
        usage, strategy = result.usage, "llm" if not result.fallback else "llm->rules_fallback"
        route, reason = result.value.route, result.value.reason or reason
    entities = [s["name"] for s in seeds]
    step = {"step": "route_question", "route": route, "reason": reason, "strategy": strategy, "entities": entities}
    return fresh_run(
        route=route,
        route_reason=reason,
        seeds=seeds,
        paths=[],
        documents=[],
        communities=[],
        points=[],
        iterations=0,
        stopped=None,
        usage=usage,
        steps=[step],
    )


def local_search(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Walk the k-hop neighbourhood of the question's entities and fuse its chunks with the base retriever's."""
    ctx = context(config, GRAPH)
    found = graph_retriever(ctx).retrieve(state["question"])
    paths = [p.as_dict() for p in found.paths[:SHOWN_PATHS]]
    step = {
        "step": "local_search",
        "seeds": [s["name"] for s in found.seeds],
        "documents": len(found.documents),
        "graph_documents": len(found.graph_documents),
        "paths": [p["path"] for p in paths],
    }
    return {
        "documents": found.documents,
        "paths": paths,
        "seeds": found.seeds or state.get("seeds", []),
        "steps": state["steps"] + [step],
    }


def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the best sentences of the chunks found, citing them and naming the graph paths used."""
    ctx = context(config, GRAPH)
    docs = state.get("documents", [])
    reason = stop_reason(state, ctx)
    strips = local_strips(ctx, state["question"], docs)
    answer = generate_answer(state["question"], strips, None if reason else ctx.model, documents=docs, store=ctx.store)
    cited = {s["chunk_id"] for s in answer.sources}
    used = [p for p in state.get("paths", []) if any(c in cited for step in p["chunk_ids"] for c in step)]
    by_chunk = {str(d.metadata.get("chunk_id")): d.metadata.get("graph_paths", []) for d in docs}
    answer.sources = [{**s, "graph_paths": by_chunk.get(s["chunk_id"], [])} for s in answer.sources]
    if used and not answer.abstained:
        answer.text += "\nGraph paths: " + "; ".join(p["path"] for p in used[:3])
    return finish(state, "generate", answer, used, reason)


def global_search(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Map: read the communities most related to the question, each yielding scored points."""
    ctx = context(config, GRAPH)
    qv = query_vector(ctx, state["question"])
    usage, stopped = state.get("usage") or empty_usage(), None
    chosen: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for community in ranked_communities(ctx, qv):
        if any(set(community["chunk_ids"] or []) == set(c["chunk_ids"] or []) for c in chosen):
            continue  # a parent with the same evidence as a chosen child adds nothing
        if stopped := stop_reason({**state, "usage": usage}, ctx, mapped=len(chosen)):
            break
        found, cost = map_community(ctx, community, state["question"], qv)
        usage, points = add_usage(usage, cost), points + found
        chosen.append(community)
    step = {
        "step": "global_search",
        "communities": [c["id"] for c in chosen],
        "points": len(points),
        "mapped_with": "llm" if ctx.model is not None else "summary_sentences",
        **({"stopped": stopped} if stopped else {}),
    }
    return {
        "communities": [{k: c[k] for k in ("id", "level", "title", "relevance", "size")} for c in chosen],
        "points": points,
        "usage": usage,
        "iterations": 1,
        "stopped": stopped,
        "steps": state["steps"] + [step],
    }


def reduce(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Reduce: combine the best points into one answer citing the communities' chunks, or abstain."""
    ctx = context(config, GRAPH)
    unique: dict[str, dict] = {}
    for p in sorted(state.get("points", []), key=lambda p: -p["score"]):
        unique.setdefault(readable(p["text"]).lower(), p)  # nested communities share sentences
    points = list(unique.values())[: ctx.option("max_points", MAX_POINTS)]
    reason = stop_reason(state, ctx)
    if not points:
        return finish(state, "reduce", Answer(ABSTAIN, [], "abstain", abstained=True), [], reason)
    sources = cite_points(ctx, points)
    if ctx.model is None or reason:
        text = " ".join(f"{readable(p['text'])} [{p['citation']}]" for p in points)
        return finish(state, "reduce", Answer(text, sources, "extractive_map_reduce"), [], reason)
    listing = "\n".join(f"[{p['citation']}] ({p['title']}) {p['text']}" for p in points)
    prompt = REDUCE_PROMPT.format(points=listing, question=state["question"], abstain=ABSTAIN)
    reply, usage = invoke_llm(ctx.model, prompt)
    text = message_text(reply).strip() or ABSTAIN
    abstained = text.rstrip(".").lower() == ABSTAIN.rstrip(".").lower()
    answer = Answer(text, [] if abstained else sources, "llm_map_reduce", usage, abstained)
    return finish(state, "reduce", answer, [], None)


def finish(state: State, step: str, answer: Answer, paths: list[dict], reason: str | None) -> dict[str, Any]:
    """The final update of either path: the answer, its sources and the trace."""
    usage = add_usage(state.get("usage"), answer.usage)
    steps = state["steps"] + [{"step": step, "strategy": answer.strategy}]
    trace = make_trace(
        GRAPH,
        state,
        action=state.get("route"),
        stop_reason=state.get("stopped") or reason,
        steps=steps,
        usage=usage,
        route_reason=state.get("route_reason"),
        entities=[s["name"] for s in state.get("seeds", [])],
        graph_paths=[p["path"] for p in paths],
        communities=[c["id"] for c in state.get("communities", [])],
        answer_strategy=answer.strategy,
        abstained=answer.abstained,
    )
    return {"answer": answer.text, "sources": answer.sources, "usage": usage, "trace": trace, "steps": steps}


# ---------------------------------------------------------------------- bounds and routing (no cycle in the graph)
def stop_reason(state: State, ctx: Context, mapped: int | None = None) -> str | None:
    """The bound that stops the next model call: the run's budgets; in the map, also max_communities."""
    if reached := ctx.bounds.reached(state):
        return reached
    if mapped is not None and mapped >= ctx.option("max_communities", MAX_COMMUNITIES):
        return "max_communities"
    return None


def after_route(state: State) -> str:
    return "global_search" if state["route"] == "global" else "local_search"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    graph_store: Any = None,
    hops: int = HOPS,
    max_communities: int = MAX_COMMUNITIES,
    points_per_community: int = POINTS_PER_COMMUNITY,
    max_points: int = MAX_POINTS,
    base_retriever: str = BASE_RETRIEVER,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the graph RAG graph.

    store / graph_store: a ChunkStore and a GraphStore to use instead of the configured ones.
    hops: k of the k-hop neighbourhood; max_communities: communities mapped in global search;
    points_per_community / max_points: points kept per community and in the reduce;
    base_retriever: what local search fuses the graph with. Each can be overridden per run in
    config["configurable"]. checkpointer: a LangGraph checkpointer for threads.
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        store=store,
        options={
            "graph_store": graph_store,
            "hops": hops,
            "max_communities": max_communities,
            "points_per_community": points_per_community,
            "max_points": max_points,
            "base_retriever": base_retriever,
        },
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (route_question, local_search, generate, global_search, reduce):
        g.add_node(node.__name__, node)
    g.add_edge(START, "route_question")
    g.add_conditional_edges("route_question", after_route, ["local_search", "global_search"])
    g.add_edge("local_search", "generate")
    g.add_edge("generate", END)
    g.add_edge("global_search", "reduce")
    g.add_edge("reduce", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


# ---------------------------------------------------------------------- helpers of the steps
def local_strips(ctx: Context, question: str, docs: list[Document]) -> list[Strip]:
    """Relevant strips of the chunks found; second-hop chunks judged against the question asked of them.

    A second-hop chunk was reached with the bridge entity in place of the seed ("where Acme has its
    headquarters" -> "... Dunmore ..."), and its metadata keeps that query.
    """
    groups: dict[str, list[Document]] = {}
    for d in docs:
        groups.setdefault(d.metadata.get("graph_query") or question, []).append(d)
    strips: list[Strip] = []
    for query, group in groups.items():
        scores = [float(d.metadata.get("score", 0.0)) for d in group]
        strips += refine_documents(
            query, query_vector(ctx, query), group, scores, ctx.store, ctx.settings.strip_threshold
        )
    return strips


def ranked_communities(ctx: Context, qv: np.ndarray) -> list[dict[str, Any]]:
    """Every community, most related to the question first (summary similarity plus a little of its rank)."""
    rows = entity_graph(ctx).query(COMMUNITIES_QUERY)
    for row in rows:
        vec = np.asarray(row.pop("embedding") or [0.0] * len(qv), dtype=np.float32)
        row["relevance"] = round(float(vec @ qv) + 0.2 * float(row.get("rank") or 0.0), 4)
    return sorted(rows, key=lambda r: -r["relevance"])


def map_community(
    ctx: Context, community: dict[str, Any], question: str, qv: np.ndarray
) -> tuple[list[dict[str, Any]], Usage]:
    """One community's best points: one LLM call, or offline its summary's sentences by similarity."""
    usage = empty_usage()
    if ctx.model is not None:
        summary = f"{community['summary']} (entities: {', '.join(community.get('entity_names') or [])})"
        result = structured_call(
            ctx.model,
            _Points,
            MAP_PROMPT.format(title=community["title"], summary=summary, question=question),
            fallback=_Points(),
            max_repairs=ctx.settings.max_structured_repairs,
        )
        usage = result.usage
        found = [(p.text, p.score / 100.0) for p in result.value.points]
    else:
        found = _summary_points(community["summary"], qv, ctx.embeddings)
    best = sorted(found, key=lambda t: -t[1])[: ctx.option("points_per_community", POINTS_PER_COMMUNITY)]
    return [
        {
            "text": text,
            "score": round(float(score), 4),
            "community": community["id"],
            "title": community["title"],
            "chunk_ids": community["chunk_ids"] or [],
        }
        for text, score in best
    ], usage


def cite_points(ctx: Context, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One source per chunk a point came from (or per community), numbered; each point gets its citation."""
    wanted = sorted({c for p in points for c in p["chunk_ids"]})
    chunk_text = {d.metadata["chunk_id"]: d for d in ctx.store.get(wanted)}
    sources: list[dict[str, Any]] = []
    numbers: dict[str, int] = {}
    for p in points:
        cid = _source_chunk(p["text"], p["chunk_ids"], chunk_text)
        key = cid or p["community"]
        if key not in numbers:
            numbers[key] = len(numbers) + 1
            doc = chunk_text.get(cid) if cid else None
            sources.append(
                {
                    "source": doc.metadata.get("source", "") if doc else "",
                    "chunk_id": cid or "",
                    "page": doc.metadata.get("page") if doc else None,
                    "score": p["score"],
                    "text": p["text"],
                    "community": p["community"],
                    "citation": numbers[key],
                }
            )
        p["citation"] = numbers[key]
    return sources


def _sentences(text: str) -> list[str]:
    """Sentences of a summary (a names-only summary, "Entities: ...", has none worth citing)."""
    parts = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)]
    # strips cut mid-sentence start in lower case: as a stand-alone point they read as noise
    return [s for s in parts if len(s.split()) >= 4 and not s.startswith("Entities:") and not s[:1].islower()]


def _summary_points(summary: str, qv: np.ndarray, embeddings: Any) -> list[tuple[str, float]]:
    """Offline map step: the summary's sentences scored by similarity to the question."""
    sentences = _sentences(summary)
    if not sentences:
        return []
    vectors = embed_texts(embeddings, sentences)
    return [(s, float(v @ qv)) for s, v in zip(sentences, vectors, strict=False)]


def _source_chunk(text: str, chunk_ids: list[str], docs: dict[str, Any]) -> str | None:
    """The community chunk a point's sentence came from (extractive summaries copy sentences)."""
    probe = readable(text)[:60].lower()
    for cid in chunk_ids:
        doc = docs.get(cid)
        if doc is not None and probe and probe in readable(doc.page_content).lower():
            return cid
    return chunk_ids[0] if chunk_ids else None


graph = build()
