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
  communities' chunks. The number of communities mapped is bounded by `max_communities`
  and by the LLM-call budget, checked before the map.

Run `graphcraft graph build` first; the graph is built from the store's ingested chunks.
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Literal

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from graphcraft.chains.answer import ABSTAIN, generate_answer, readable
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.config import Settings, settings_from
from graphcraft.models import invoke_llm, message_text, structured_call
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Graph RAG: entity graph (FalkorDB/Neo4j); local k-hop search fused with vectors, or global map-reduce over "
    "community summaries; cites chunks and graph paths."
)

BROAD = re.compile(
    r"\b(summari[sz]e|summary|overview|overall|main (?:themes?|topics?|points?|organi[sz]ations?|ideas?)|themes?|"
    r"in general|across (?:the|these|all)|big picture|landscape|what are the key|key topics?)\b",
    re.IGNORECASE,
)


class GraphRAGState(TypedDict, total=False):
    question: str
    route: Literal["local", "global"]
    route_reason: str
    seeds: list[dict]
    paths: list[dict]
    documents: list[Any]
    communities: list[dict]
    points: list[dict]
    iterations: int
    answer: str
    sources: list[dict]
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict], operator.add]
    trace: dict


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


def heuristic_route(question: str, seeds: list[dict]) -> tuple[Literal["local", "global"], str]:
    if BROAD.search(question):
        return "global", "broad question"
    if not seeds:
        return "local", "a specific question naming no entity of the graph: vector half of local search"
    return "local", f"names {', '.join(s['name'] for s in seeds[:3])}"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    graph_store: Any = None,
    hops: int = 2,
    max_communities: int = 6,
    points_per_community: int = 2,
    max_points: int = 5,
    base_retriever: str = "hybrid",
    **options: Any,
) -> Any:
    """Compile the graph RAG graph.

    store / graph_store: a ChunkStore and a GraphStore to use instead of the configured ones.
    hops: k of the k-hop neighbourhood; max_communities: communities mapped in global search.
    """
    settings = settings_from(settings, options)
    base = Resources(settings, model=model, store=store)
    graphs: dict[str, Any] = {}

    def graph_of(res: Resources) -> Any:
        if graph_store is not None:
            return graph_store
        key = str(res.settings.store)
        if key not in graphs:
            from graphcraft.graph_index.api import open_graph

            graphs[key] = open_graph(res.settings.store, res.settings)
        return graphs[key]

    def retriever(res: Resources) -> Any:
        from graphcraft.retrievers.graph import GraphRetriever

        chunks = res.store
        return GraphRetriever(
            graph_store=graph_of(res),
            chunk_store=chunks,
            embeddings=chunks.embeddings,
            k=res.settings.top_k,
            hops=hops,
            base=base_retriever,
            rrf_k=res.settings.rrf_k,
        )

    # ------------------------------------------------------------------ nodes
    def route_question(state: GraphRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        gs = graph_of(res)
        if gs.counts()["entities"] == 0:
            from graphcraft.errors import EmptyStoreError

            raise EmptyStoreError(
                f"{res.settings.store} (entity graph: run `graphcraft graph build --store {res.settings.store}`)"
            )
        seeds = retriever(res).link_entities(state["question"])
        route, reason = heuristic_route(state["question"], seeds)
        usage: Usage = {}
        strategy = "rules"
        if res.model is not None:
            result = structured_call(
                res.model,
                _Route,
                ROUTE_PROMPT.format(entities=", ".join(s["name"] for s in seeds) or "none", question=state["question"]),
                fallback=_Route(route=route, reason=reason),
                max_repairs=res.settings.max_structured_repairs,
            )
            usage, strategy = result.usage, "llm" if not result.fallback else "llm->rules_fallback"
            route, reason = result.value.route, result.value.reason or reason
        return {
            "route": route,
            "route_reason": reason,
            "seeds": seeds,
            "iterations": 0,
            "usage": usage,
            "steps": [
                {
                    "step": "route_question",
                    "route": route,
                    "reason": reason,
                    "strategy": strategy,
                    "entities": [s["name"] for s in seeds],
                }
            ],
        }

    def local_search(state: GraphRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        found = retriever(res).retrieve(state["question"])
        paths = [p.as_dict() for p in found.paths[:8]]
        return {
            "documents": found.documents,
            "paths": paths,
            "seeds": found.seeds or state.get("seeds", []),
            "steps": [
                {
                    "step": "local_search",
                    "seeds": [s["name"] for s in found.seeds],
                    "documents": len(found.documents),
                    "graph_documents": len(found.graph_documents),
                    "paths": [p["path"] for p in paths],
                }
            ],
        }

    def generate(state: GraphRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        docs = state.get("documents", [])
        # Second-hop chunks are judged against the question as asked of them (the bridge entity
        # in place of the seed): "where Acme has its headquarters" -> "... Dunmore ...".
        groups: dict[str, list[Any]] = {}
        for d in docs:
            groups.setdefault(d.metadata.get("graph_query") or state["question"], []).append(d)
        strips: list[Strip] = []
        for query, group in groups.items():
            qv = np.asarray(res.embeddings.embed_query(query), dtype=np.float32)
            strips += refine_documents(
                query,
                qv,
                group,
                [float(d.metadata.get("score", 0.0)) for d in group],
                res.store,
                res.settings.strip_threshold,
            )
        answer = generate_answer(state["question"], strips, res.model, documents=docs, store=res.store)
        cited = {s["chunk_id"] for s in answer.sources}
        used_paths = [p for p in state.get("paths", []) if any(c in cited for step in p["chunk_ids"] for c in step)]
        by_chunk = {str(d.metadata.get("chunk_id")): d.metadata.get("graph_paths", []) for d in docs}
        sources = [{**s, "graph_paths": by_chunk.get(s["chunk_id"], [])} for s in answer.sources]
        text = answer.text
        if used_paths and not answer.abstained:
            text += "\nGraph paths: " + "; ".join(p["path"] for p in used_paths[:3])
        return _final(state, text, sources, answer.usage, answer.strategy, answer.abstained, used_paths)

    def global_search(state: GraphRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        gs = graph_of(res)
        rows = gs.query(
            "MATCH (c:Community) RETURN c.id AS id, c.level AS level, c.title AS title, c.summary AS summary, "
            "c.chunk_ids AS chunk_ids, c.rank AS rank, c.embedding AS embedding, c.size AS size, "
            "c.entity_names AS entity_names"
        )
        qv = np.asarray(res.embeddings.embed_query(state["question"]), dtype=np.float32)
        for row in rows:
            vec = np.asarray(row.pop("embedding") or [0.0] * len(qv), dtype=np.float32)
            row["relevance"] = round(float(vec @ qv) + 0.2 * float(row.get("rank") or 0.0), 4)
        # Bound the map step: at most max_communities, and no more LLM calls than the budget allows.
        budget = max_communities
        if res.model is not None:
            budget = max(
                0, min(budget, res.settings.max_llm_calls - int(state.get("usage", {}).get("llm_calls", 0)) - 1)
            )
        chosen: list[dict] = []
        for row in sorted(rows, key=lambda r: -r["relevance"]):
            if len(chosen) >= budget:
                break
            if any(set(row["chunk_ids"] or []) == set(c["chunk_ids"] or []) for c in chosen):
                continue  # a parent with the same evidence as a chosen child adds nothing
            chosen.append(row)
        points: list[dict] = []
        usage: Usage = {}
        for community in chosen:
            if res.model is not None:
                summary = f"{community['summary']} (entities: {', '.join(community.get('entity_names') or [])})"
                result = structured_call(
                    res.model,
                    _Points,
                    MAP_PROMPT.format(title=community["title"], summary=summary, question=state["question"]),
                    fallback=_Points(),
                    max_repairs=res.settings.max_structured_repairs,
                )
                usage = add_usage(usage, result.usage)
                found = [(p.text, p.score / 100.0) for p in result.value.points]
            else:
                found = _summary_points(community["summary"], qv, res.embeddings)
            for text, score in sorted(found, key=lambda t: -t[1])[:points_per_community]:
                points.append(
                    {
                        "text": text,
                        "score": round(float(score), 4),
                        "community": community["id"],
                        "title": community["title"],
                        "chunk_ids": community["chunk_ids"] or [],
                    }
                )
        return {
            "communities": [{k: c[k] for k in ("id", "level", "title", "relevance", "size")} for c in chosen],
            "points": points,
            "usage": usage,
            "iterations": 1,
            "steps": [
                {
                    "step": "global_search",
                    "communities": [c["id"] for c in chosen],
                    "points": len(points),
                    "mapped_with": "llm" if res.model is not None else "summary_sentences",
                }
            ],
        }

    def reduce(state: GraphRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        unique: dict[str, dict] = {}
        for p in sorted(state.get("points", []), key=lambda p: -p["score"]):
            unique.setdefault(readable(p["text"]).lower(), p)  # nested communities share sentences
        points = list(unique.values())[:max_points]
        if not points:
            return _final(state, ABSTAIN, [], {}, "abstain", True, [])
        chunk_text = {
            d.metadata["chunk_id"]: d for d in res.store.get(sorted({c for p in points for c in p["chunk_ids"]}))
        }
        sources: list[dict] = []
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
        if res.model is not None:
            listing = "\n".join(f"[{p['citation']}] ({p['title']}) {p['text']}" for p in points)
            reply, usage = invoke_llm(
                res.model, REDUCE_PROMPT.format(points=listing, question=state["question"], abstain=ABSTAIN)
            )
            text = message_text(reply).strip() or ABSTAIN
            abstained = text.rstrip(".").lower() == ABSTAIN.rstrip(".").lower()
            return _final(state, text, [] if abstained else sources, usage, "llm_map_reduce", abstained, [])
        text = " ".join(f"{readable(p['text'])} [{p['citation']}]" for p in points)
        return _final(state, text, sources, {}, "extractive_map_reduce", False, [])

    def _final(
        state: GraphRAGState,
        text: str,
        sources: list[dict],
        usage: Usage,
        strategy: str,
        abstained: bool,
        paths: list[dict],
    ) -> dict:
        final_usage = add_usage(state.get("usage"), usage)
        trace = make_trace(
            "graph_rag",
            {**state, "usage": final_usage},
            route=state.get("route"),
            route_reason=state.get("route_reason"),
            entities=[s["name"] for s in state.get("seeds", [])],
            graph_paths=[p["path"] for p in paths],
            communities=[c["id"] for c in state.get("communities", [])],
            answer_strategy=strategy,
            abstained=abstained,
            steps=state.get("steps", []),
        )
        return {
            "answer": text,
            "sources": sources,
            "usage": usage,
            "trace": trace,
            "steps": [{"step": "generate" if state.get("route") == "local" else "reduce", "strategy": strategy}],
        }

    # ------------------------------------------------------------------ routing (no loop: each path runs once)
    def after_route(state: GraphRAGState) -> str:
        return "global_search" if state["route"] == "global" else "local_search"

    g = StateGraph(GraphRAGState)
    for node in (route_question, local_search, generate, global_search, reduce):
        g.add_node(node.__name__, node)
    g.add_edge(START, "route_question")
    g.add_conditional_edges("route_question", after_route, ["local_search", "global_search"])
    g.add_edge("local_search", "generate")
    g.add_edge("generate", END)
    g.add_edge("global_search", "reduce")
    g.add_edge("reduce", END)
    return g.compile(name="graph_rag")


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
    from graphcraft.models import embed_texts

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
