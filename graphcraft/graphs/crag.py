"""Corrective Retrieval Augmented Generation (Yan et al. 2024, arXiv:2401.15884).

    retrieve -> evaluate --Correct----> refine -----------------------------> generate
                         --Ambiguous--> refine -> rewrite_query -> web_search -> generate
                         --Incorrect--------------> rewrite_query -> web_search -> generate
                                                        ^             |
                                                        +-- nothing relevant found, while
                                                            iterations < max_search_rounds

The retrieval evaluator scores every document; with an upper and a lower threshold it picks
Correct (some score above upper), Incorrect (all below lower) or Ambiguous (otherwise).
Knowledge refinement decomposes documents into strips, keeps the relevant ones and
recomposes them. External knowledge comes from a web search tool or, offline, a second store.
Generation answers with citations, or abstains when no knowledge survived.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphcraft.chains.answer import generate_answer
from graphcraft.chains.evidence import make_evaluator
from graphcraft.chains.grade import LLMEvaluator, LocalEvaluator, decide_action
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.chains.rewrite import rewrite_query as rewrite
from graphcraft.config import Settings, settings_from
from graphcraft.ingest.calibration import evaluator_thresholds
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import Bounds, start_clock
from graphcraft.runtime.resources import Resources
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Corrective RAG: grade retrieval (Correct/Incorrect/Ambiguous), refine knowledge strips, search externally, "
    "answer with citations or abstain."
)


class CRAGState(TypedDict, total=False):
    question: str
    documents: list[Document]
    scores: list[float]
    strip_scores: list[list[float]] | None  # the local evaluator's strip scores, reused by refine
    action: Literal["correct", "incorrect", "ambiguous"]
    internal: list[dict]  # refined internal knowledge strips
    external: list[dict]  # refined external knowledge strips
    queries: list[str]  # search queries tried
    external_source: str
    iterations: int  # external search rounds; bounded by max_search_rounds
    started_at: float  # the run's wall clock (runtime.bounds)
    answer: str
    sources: list[dict]
    # Plain channels (no reducer), reset by `retrieve`: a thread that is asked a second question
    # (Studio, LangGraph Server) starts a fresh run instead of adding to the previous one.
    usage: Usage
    steps: list[dict]
    trace: dict


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    external: Any = None,
    evaluator: str = "auto",
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the CRAG graph.

    model: chat model for the LLM evaluator, rewriting and generation (None: configured or offline).
    store / external: a ChunkStore and an ExternalSearch to use instead of the configured ones.
    evaluator: "auto" (LLM when a model exists), "local" or "llm".
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    """
    from graphcraft.runtime.resources import _UNSET

    settings = settings_from(settings, options)
    base = Resources(settings, model=model, store=store, external=external if external is not None else _UNSET)

    def grader(res: Resources) -> LocalEvaluator | LLMEvaluator:
        return make_evaluator(res, evaluator)

    def query_vector(res: Resources, text: str) -> np.ndarray:
        return np.asarray(res.embeddings.embed_query(text), dtype=np.float32)

    # ------------------------------------------------------------------ nodes
    def retrieve(state: CRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        docs = res.retriever("hybrid").search(state["question"])
        return {
            **start_clock(),
            "documents": docs,
            "iterations": 0,
            "queries": [],
            "internal": [],
            "external": [],
            "strip_scores": None,
            "external_source": "not needed",
            "usage": empty_usage(),
            "answer": "",
            "sources": [],
            "trace": {},
            "steps": [{"step": "retrieve", "documents": len(docs)}],
        }

    def evaluate(state: CRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        judge = grader(res)
        grading = judge.evaluate(state["question"], state["documents"], query_vector(res, state["question"]))
        action = decide_action(grading.scores, judge.upper, judge.lower)
        return {
            "scores": grading.scores,
            "strip_scores": grading.strip_scores,
            "action": action,
            "usage": add_usage(state.get("usage"), grading.usage),
            "steps": state["steps"]
            + [
                {
                    "step": "evaluate",
                    "evaluator": grading.strategy,
                    "scores": grading.scores,
                    "action": action,
                    "upper": judge.upper,
                    "lower": judge.lower,
                    **({"details": grading.details} if grading.details else {}),
                }
            ],
        }

    def refine(state: CRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        lower = grader(res).lower
        known = state.get("strip_scores")
        kept = [i for i, s in enumerate(state["scores"]) if s >= lower]
        strips = refine_documents(
            state["question"],
            query_vector(res, state["question"]),
            [state["documents"][i] for i in kept],
            [state["scores"][i] for i in kept],
            res.store,
            res.settings.strip_threshold,
            strip_scores=[known[i] for i in kept] if known else None,
        )
        return {
            "internal": [s.as_dict() for s in strips],
            "steps": state["steps"] + [{"step": "refine", "documents": len(kept), "strips_kept": len(strips)}],
        }

    def rewrite_query(state: CRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        if res.external is None:
            return {
                "external_source": "none",
                "steps": state["steps"] + [{"step": "rewrite_query", "skipped": "no external source configured"}],
            }
        query, usage, strategy = rewrite(
            state["question"], res.model, res.settings.spacy_model, state.get("queries", [])
        )
        return {
            "queries": state.get("queries", []) + [query],
            "usage": add_usage(state.get("usage"), usage),
            "external_source": res.external.name,
            "steps": state["steps"] + [{"step": "rewrite_query", "strategy": strategy, "query": query}],
        }

    def web_search(state: CRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        query = state["queries"][-1]
        step = {"step": "web_search", "source": res.external.name, "query": query}
        try:
            docs = res.external.search(query, res.settings.top_k)
        except Exception as exc:  # noqa: BLE001 - a search outage must not lose the internal knowledge
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return {"iterations": state.get("iterations", 0) + 1, "steps": state["steps"] + [{**step, "error": error}]}
        # External knowledge is graded and refined locally, as the paper does with its small evaluator:
        # strip vectors come from the external store when it is one; an LLM is not asked again.
        external_store = getattr(res.external, "store", None)
        upper, lower, _ = evaluator_thresholds(res.settings, external_store)
        judge = LocalEvaluator(external_store, res.embeddings, upper, lower)
        qv = query_vector(res, state["question"])
        grading = judge.evaluate(state["question"], docs, qv)
        kept = [i for i, s in enumerate(grading.scores) if s >= judge.lower]
        strips = refine_documents(
            state["question"],
            qv,
            [docs[i] for i in kept],
            [grading.scores[i] for i in kept],
            external_store,
            res.settings.strip_threshold,
            embed=judge.embed,
            origin="external",
            strip_scores=[grading.strip_scores[i] for i in kept] if grading.strip_scores else None,
        )
        return {
            "external": [s.as_dict() for s in strips],
            "iterations": state.get("iterations", 0) + 1,
            "steps": state["steps"]
            + [{**step, "documents": len(docs), "scores": grading.scores, "strips_kept": len(strips)}],
        }

    def generate(state: CRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        knowledge = (state.get("internal", []) if state.get("action") != "incorrect" else []) + state.get(
            "external", []
        )
        answer = generate_answer(
            state["question"],
            [Strip(**s) for s in knowledge],
            res.model,
            documents=state.get("documents", []),
            store=res.store,
        )
        steps = state["steps"] + [{"step": "generate", "strategy": answer.strategy}]
        final: CRAGState = {**state, "usage": add_usage(state.get("usage"), answer.usage), "steps": steps}
        trace = make_trace(
            "crag",
            final,
            action=state.get("action"),
            evaluator=_evaluator_name(final),
            external_source=state.get("external_source", "not needed"),
            queries=state.get("queries", []),
            answer_strategy=answer.strategy,
            abstained=answer.abstained,
            steps=steps,
        )
        return {
            "answer": answer.text,
            "sources": answer.sources,
            "usage": final["usage"],
            "trace": trace,
            "steps": steps,
        }

    # ------------------------------------------------------------------ routing (every loop bounded here)
    def after_evaluate(state: CRAGState) -> str:
        return "rewrite_query" if state["action"] == "incorrect" else "refine"

    def after_refine(state: CRAGState) -> str:
        return "rewrite_query" if state["action"] == "ambiguous" else "generate"

    def after_rewrite(state: CRAGState) -> str:
        return "generate" if state.get("external_source") == "none" else "web_search"

    def after_web_search(state: CRAGState, config: RunnableConfig) -> str:
        s = base.for_config(config).settings
        found = bool(state.get("external"))
        out_of_budget = Bounds.from_settings(s).reached(state)  # LLM calls, tokens, wall clock
        return (
            "rewrite_query"
            if not found and state.get("iterations", 0) < s.max_search_rounds and not out_of_budget
            else "generate"
        )

    g = StateGraph(CRAGState)
    for node in (retrieve, evaluate, refine, rewrite_query, web_search, generate):
        g.add_node(node.__name__, node)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "evaluate")
    g.add_conditional_edges("evaluate", after_evaluate, ["refine", "rewrite_query"])
    g.add_conditional_edges("refine", after_refine, ["rewrite_query", "generate"])
    g.add_conditional_edges("rewrite_query", after_rewrite, ["web_search", "generate"])
    g.add_conditional_edges("web_search", after_web_search, ["rewrite_query", "generate"])
    g.add_edge("generate", END)
    return g.compile(name="crag", checkpointer=checkpointer)


def _evaluator_name(state: CRAGState) -> str:
    return next((s["evaluator"] for s in state.get("steps", []) if s.get("step") == "evaluate"), "none")


graph = build()
