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

from graphcraft.chains.answer import generate_answer
from graphcraft.chains.evidence import make_evaluator
from graphcraft.chains.grade import LLMEvaluator, LocalEvaluator, decide_action
from graphcraft.chains.refine import Strip, refine_documents
from graphcraft.chains.rewrite import rewrite_query as rewrite
from graphcraft.config import Settings, settings_from
from graphcraft.ingestion.calibration import evaluator_thresholds
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.bounds import fresh_run
from graphcraft.runtime.context import UNSET, Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "crag"
DESCRIPTION = (
    "Corrective RAG: grade retrieval (Correct/Incorrect/Ambiguous), refine knowledge strips, search externally, "
    "answer with citations or abstain."
)


class State(InputState, OutputState, total=False):
    documents: list[Document]
    scores: list[float]
    strip_scores: list[list[float]] | None  # the local evaluator's strip scores, reused by refine
    action: Literal["correct", "incorrect", "ambiguous"]
    evaluator: str  # which evaluator graded: local or llm
    internal: list[dict]  # refined internal knowledge strips
    external: list[dict]  # refined external knowledge strips
    queries: list[str]  # search queries tried
    external_source: str
    iterations: int  # external search rounds; bounded by max_search_rounds
    started_at: float  # the run's wall clock (runtime.bounds)
    # Plain channels (no reducer), reset by `retrieve`: a thread that is asked a second question
    # (Studio, LangGraph Server) starts a fresh run instead of adding to the previous one.
    usage: Usage
    steps: list[dict]


def grader(ctx: Context, state: State | None = None) -> LocalEvaluator | LLMEvaluator:
    """The retrieval evaluator: the build option "evaluator" is auto (LLM when a model exists), local or llm;
    the local one once the run's call, token or time budget is spent."""
    spent = state is not None and ctx.bounds.reached(state) is not None
    return make_evaluator(ctx, "local" if spent else ctx.option("evaluator", "auto"))


def query_vector(ctx: Context, text: str) -> np.ndarray:
    return np.asarray(ctx.embeddings.embed_query(text), dtype=np.float32)


# ---------------------------------------------------------------------- nodes (the paper's steps)
def retrieve(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Retrieve the top-k chunks (hybrid: vectors and BM25 fused) and start a fresh run."""
    docs = context(config, GRAPH).retriever("hybrid").search(state["question"])
    return fresh_run(
        documents=docs,
        iterations=0,
        queries=[],
        internal=[],
        external=[],
        strip_scores=None,
        external_source="not needed",
        steps=[{"step": "retrieve", "documents": len(docs)}],
    )


def evaluate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Score every document and decide Correct / Incorrect / Ambiguous from the two thresholds."""
    ctx = context(config, GRAPH)
    judge = grader(ctx, state)
    grading = judge.evaluate(state["question"], state["documents"], query_vector(ctx, state["question"]))
    action = decide_action(grading.scores, judge.upper, judge.lower)
    step = {
        "step": "evaluate",
        "evaluator": grading.strategy,
        "scores": grading.scores,
        "action": action,
        "upper": judge.upper,
        "lower": judge.lower,
        **({"details": grading.details} if grading.details else {}),
    }
    return {
        "scores": grading.scores,
        "strip_scores": grading.strip_scores,
        "action": action,
        "evaluator": grading.strategy,
        "usage": add_usage(state.get("usage"), grading.usage),
        "steps": state["steps"] + [step],
    }


def refine(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Knowledge refinement: split the kept documents into strips and keep the relevant strips."""
    ctx = context(config, GRAPH)
    known = state.get("strip_scores")
    kept = [i for i, s in enumerate(state["scores"]) if s >= grader(ctx).lower]
    strips = refine_documents(
        state["question"],
        query_vector(ctx, state["question"]),
        [state["documents"][i] for i in kept],
        [state["scores"][i] for i in kept],
        ctx.store,
        ctx.settings.strip_threshold,
        strip_scores=[known[i] for i in kept] if known else None,
    )
    return {
        "internal": [s.as_dict() for s in strips],
        "steps": state["steps"] + [{"step": "refine", "documents": len(kept), "strips_kept": len(strips)}],
    }


def rewrite_query(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Rewrite the question into a search query (LLM, or spaCy keywords offline)."""
    ctx = context(config, GRAPH)
    if ctx.external is None:
        return {
            "external_source": "none",
            "steps": state["steps"] + [{"step": "rewrite_query", "skipped": "no external source configured"}],
        }
    model = ctx.model_within(state)
    query, usage, strategy = rewrite(state["question"], model, ctx.settings.spacy_model, state.get("queries", []))
    return {
        "queries": state.get("queries", []) + [query],
        "usage": add_usage(state.get("usage"), usage),
        "external_source": ctx.external.name,
        "steps": state["steps"] + [{"step": "rewrite_query", "strategy": strategy, "query": query}],
    }


def web_search(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Search the external source and refine what it returns like internal knowledge."""
    ctx = context(config, GRAPH)
    query = state["queries"][-1]
    step = {"step": "web_search", "source": ctx.external.name, "query": query}
    rounds = state.get("iterations", 0) + 1
    try:
        docs = ctx.external.search(query, ctx.settings.top_k)
    except Exception as exc:  # noqa: BLE001 - a search outage must not lose the internal knowledge
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return {"iterations": rounds, "steps": state["steps"] + [{**step, "error": error}]}
    # External knowledge is graded and refined locally, as the paper does with its small evaluator:
    # strip vectors come from the external store when it is one; an LLM is not asked again.
    external_store = getattr(ctx.external, "store", None)
    upper, lower, _ = evaluator_thresholds(ctx.settings, external_store)
    judge = LocalEvaluator(external_store, ctx.embeddings, upper, lower)
    qv = query_vector(ctx, state["question"])
    grading = judge.evaluate(state["question"], docs, qv)
    kept = [i for i, s in enumerate(grading.scores) if s >= judge.lower]
    strips = refine_documents(
        state["question"],
        qv,
        [docs[i] for i in kept],
        [grading.scores[i] for i in kept],
        external_store,
        ctx.settings.strip_threshold,
        embed=judge.embed,
        origin="external",
        strip_scores=[grading.strip_scores[i] for i in kept] if grading.strip_scores else None,
    )
    found = {"documents": len(docs), "scores": grading.scores, "strips_kept": len(strips)}
    return {
        "external": [s.as_dict() for s in strips],
        "iterations": rounds,
        "steps": state["steps"] + [{**step, **found}],
    }


def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the kept strips with citations, or abstain when no knowledge survived (extractively once
    the run's budget is spent: the best answer so far, never a call past the budget)."""
    ctx = context(config, GRAPH)
    internal = state.get("internal", []) if state.get("action") != "incorrect" else []
    limited = stop_reason(state, ctx)  # before answering: a spent budget means the extractive answer
    answer = generate_answer(
        state["question"],
        [Strip(**s) for s in internal + state.get("external", [])],
        ctx.model_within(state),
        documents=state.get("documents", []),
        store=ctx.store,
    )
    steps = state["steps"] + [{"step": "generate", "strategy": answer.strategy}]
    usage = add_usage(state.get("usage"), answer.usage)
    trace = make_trace(
        GRAPH,
        state,
        action=state.get("action"),
        stop_reason=limited,
        steps=steps,
        usage=usage,
        evaluator=state.get("evaluator", "none"),
        external_source=state.get("external_source", "not needed"),
        queries=state.get("queries", []),
        answer_strategy=answer.strategy,
        abstained=answer.abstained,
    )
    return {"answer": answer.text, "sources": answer.sources, "usage": usage, "trace": trace, "steps": steps}


# ---------------------------------------------------------------------- routing (every loop bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that limited the run: a spent budget (the rest runs offline), or the search rounds used up."""
    if reached := ctx.bounds.reached(state):
        return reached
    if not state.get("queries") or state.get("external"):
        return None
    return "max_search_rounds" if state.get("iterations", 0) >= ctx.settings.max_search_rounds else None


def after_evaluate(state: State) -> str:
    return "rewrite_query" if state["action"] == "incorrect" else "refine"


def after_refine(state: State) -> str:
    return "rewrite_query" if state["action"] == "ambiguous" else "generate"


def after_rewrite(state: State) -> str:
    return "generate" if state.get("external_source") == "none" else "web_search"


def after_web_search(state: State, config: RunnableConfig) -> str:
    """Search again only if nothing relevant was found, within max_search_rounds and the run's budgets."""
    ctx = context(config, GRAPH)
    return "generate" if state.get("external") or stop_reason(state, ctx) else "rewrite_query"


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
    ctx = Context(
        settings_from(settings, options),
        model=model,
        store=store,
        external=external if external is not None else UNSET,
        options={"evaluator": evaluator},
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (retrieve, evaluate, refine, rewrite_query, web_search, generate):
        g.add_node(node.__name__, node)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "evaluate")
    g.add_conditional_edges("evaluate", after_evaluate, ["refine", "rewrite_query"])
    g.add_conditional_edges("refine", after_refine, ["rewrite_query", "generate"])
    g.add_conditional_edges("rewrite_query", after_rewrite, ["web_search", "generate"])
    g.add_conditional_edges("web_search", after_web_search, ["rewrite_query", "generate"])
    g.add_edge("generate", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
