"""Adaptive RAG: pick the retrieval strategy per query (after Jeong et al. 2024, arXiv:2403.14403).

    classify -> select_strategy --direct--------------------> answer_directly --+
                                --semantic/keyword/hybrid--> retrieve -> generate --+--> finish
                                --hierarchical-------------> hierarchical ----------+
                                --multi_hop----------------> multi_hop -------------+

classify: no_retrieval / single_hop / multi_hop / overview (chains.classify: cheap signals and a
vector probe, or an LLM when configured).
select_strategy: every strategy has a prior quality per query class; feedback scores update it
(a Bayesian mean: prior as `PRIOR_WEIGHT` pseudo-observations, so it works with no feedback and
converges to observed quality), and observed cost (LLM calls, tokens, seconds of logged runs)
replaces the cost prior. The pick maximises quality - cost_weight * cost among strategies that
are available and fit what is left of the run's budget (`max_llm_calls`, `token_budget`, also
per run in configurable); `explore` > 0 adds a UCB bonus for rarely tried strategies. The
candidates table is in the trace.
The strategies themselves are the shared chains and the multihop and hierarchical_rag graphs,
run as subgraphs built from this run's model, settings and store. finish logs the run (run id
in the trace) so `graphcraft feedback` can score it.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import uuid
from typing import Any
from weakref import WeakKeyDictionary

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from graphcraft.chains.answer import generate_answer
from graphcraft.chains.classify import classify_query
from graphcraft.chains.direct import calculate, direct_answer
from graphcraft.chains.evidence import gather_evidence
from graphcraft.chains.rewrite import load_spacy
from graphcraft.config import Settings, settings_from
from graphcraft.memory.feedback import FeedbackStore
from graphcraft.memory.feedback import stats as feedback_stats
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage, total_tokens
from graphcraft.runtime.bounds import elapsed, fresh_run, within_run
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace, trace_usage

GRAPH = "adaptive_rag"
DESCRIPTION = (
    "Adaptive RAG: classify the query, pick direct/semantic/keyword/hybrid/hierarchical/multi-hop from feedback "
    "statistics within a per-call cost budget."
)

STRATEGIES = ("direct", "semantic", "keyword", "hybrid", "hierarchical", "multi_hop")
RETRIEVERS = {"semantic": "vector", "keyword": "keyword", "hybrid": "hybrid"}

# Prior answer quality (0..1) of each strategy per query class, before any feedback.
PRIORS: dict[str, dict[str, float]] = {
    "no_retrieval": {
        "direct": 0.8,
        "hybrid": 0.3,
        "semantic": 0.25,
        "keyword": 0.25,
        "hierarchical": 0.2,
        "multi_hop": 0.1,
    },
    "single_hop": {
        "hybrid": 0.7,
        "semantic": 0.6,
        "keyword": 0.6,
        "multi_hop": 0.55,
        "hierarchical": 0.5,
        "direct": 0.1,
    },
    "multi_hop": {
        "multi_hop": 0.7,
        "hybrid": 0.45,
        "semantic": 0.4,
        "keyword": 0.4,
        "hierarchical": 0.4,
        "direct": 0.05,
    },
    "overview": {
        "hierarchical": 0.7,
        "hybrid": 0.55,
        "semantic": 0.5,
        "keyword": 0.4,
        "multi_hop": 0.4,
        "direct": 0.05,
    },
}
PRIOR_WEIGHT = 3.0
# Expected cost with a chat model (LLM calls, tokens) and seconds offline, until runs are logged.
COST_PRIORS: dict[str, dict[str, float]] = {
    "direct": {"llm_calls": 1, "tokens": 300, "seconds": 0.05},
    "semantic": {"llm_calls": 2, "tokens": 2500, "seconds": 0.3},
    "keyword": {"llm_calls": 2, "tokens": 2500, "seconds": 0.3},
    "hybrid": {"llm_calls": 2, "tokens": 2800, "seconds": 0.4},
    "hierarchical": {"llm_calls": 2, "tokens": 3000, "seconds": 0.8},
    "multi_hop": {"llm_calls": 5, "tokens": 8000, "seconds": 2.0},
}


SUBGRAPHS = {"hierarchical": "hierarchical_rag", "multi_hop": "multihop"}  # strategy -> graph module


class State(InputState, OutputState, total=False):
    query_class: str
    classification: dict
    strategy: str
    candidates: list[dict]
    documents: list[Document]
    details: dict  # strategy-specific trace (subgraph trace, grading, calculator ...)
    started_at: float  # the run's wall clock (runtime.bounds); its seconds are logged with the run
    # Plain channels (no reducer), reset by `classify`: a thread asked a second question starts a fresh run.
    usage: Usage
    steps: list[dict]


def score_candidates(
    query_class: str,
    stats: list[dict],
    *,
    available: set[str],
    max_llm_calls: int,
    token_budget: int,
    offline: bool,
    cost_weight: float = 0.1,
    explore: float = 0.0,
) -> list[dict]:
    """Every strategy with its prior, feedback, posterior quality, expected cost, budget fit and score (best first)."""
    by_strategy = {r["strategy"]: r for r in stats if r["query_class"] == query_class}
    total_feedback = sum(r["feedback"] for r in by_strategy.values())
    rows = []
    for strategy in STRATEGIES:
        prior = PRIORS.get(query_class, PRIORS["single_hop"])[strategy]
        seen = by_strategy.get(strategy, {})
        n = seen.get("feedback", 0)
        quality = (prior * PRIOR_WEIGHT + seen.get("score_sum", 0.0)) / (PRIOR_WEIGHT + n)
        bonus = explore * math.sqrt(math.log(1 + total_feedback) / (1 + n)) if explore else 0.0
        runs = seen.get("runs", 0)
        used_model = runs and seen.get("mean_llm_calls", 0) > 0  # offline runs say nothing about LLM cost
        calls = 0.0 if offline else (seen["mean_llm_calls"] if used_model else COST_PRIORS[strategy]["llm_calls"])
        tokens = 0.0 if offline else (seen["mean_tokens"] if used_model else COST_PRIORS[strategy]["tokens"])
        seconds = seen["mean_seconds"] if runs else COST_PRIORS[strategy]["seconds"]
        cost = tokens / max(1, token_budget) + seconds / 10.0
        why_not = None if strategy in available else "unavailable"
        if why_not is None and calls > max_llm_calls:
            why_not = f"needs ~{calls:g} LLM calls > budget {max_llm_calls}"
        if why_not is None and tokens > token_budget:
            why_not = f"needs ~{tokens:g} tokens > budget {token_budget}"
        rows.append(
            {
                "strategy": strategy,
                "prior": prior,
                "feedback": n,
                "quality": round(quality, 3),
                "bonus": round(bonus, 3),
                "llm_calls": calls,
                "tokens": tokens,
                "seconds": seconds,
                "score": round(quality + bonus - cost_weight * cost, 4),
                "allowed": why_not is None,
                **({"excluded": why_not} if why_not else {}),
            }
        )
    return sorted(rows, key=lambda r: (r["allowed"], r["score"]), reverse=True)


def insights(store: Any = None) -> list[dict]:
    """ "Performance insights": every logged (query class, strategy) with its cost, feedback and
    posterior quality (prior blended with feedback), best quality first within each class."""
    rows = []
    for row in feedback_stats(store):
        prior = PRIORS.get(row["query_class"], PRIORS["single_hop"]).get(row["strategy"], 0.5)
        quality = (prior * PRIOR_WEIGHT + row["score_sum"]) / (PRIOR_WEIGHT + row["feedback"])
        rows.append({**row, "prior": prior, "quality": round(quality, 3)})
    return sorted(rows, key=lambda r: (r["query_class"], -r["quality"]))


def available(ctx: Context, question: str) -> set[str]:
    """The strategies this run can use: direct needs a model (or arithmetic), subgraphs their module."""
    found = {"semantic", "keyword", "hybrid"}
    if ctx.model is not None or calculate(question) is not None:
        found.add("direct")
    for strategy, module in SUBGRAPHS.items():
        if importlib.util.find_spec(f"graphcraft.graphs.{module}") is not None:
            found.add(strategy)
    return found


_subgraphs: WeakKeyDictionary[Context, dict[str, Any]] = WeakKeyDictionary()


def subgraph(ctx: Context, module: str) -> Any:
    """The graph `module` compiled with this run's model, settings and store (built once per context)."""
    built = _subgraphs.setdefault(ctx, {})
    if module not in built:
        graph_module = importlib.import_module(f"graphcraft.graphs.{module}")
        built[module] = graph_module.build(model=ctx.model, settings=ctx.settings, store=ctx.store)
    return built[module]


# ---------------------------------------------------------------------- nodes
def classify(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Classify the query (no_retrieval / single_hop / multi_hop / overview) and start a fresh run."""
    ctx = context(config, GRAPH)
    result = classify_query(
        state["question"],
        model=ctx.model,
        store=ctx.store,
        nlp=load_spacy(ctx.settings.spacy_model),
        mode=ctx.option("classifier", "auto"),
        max_repairs=ctx.settings.max_structured_repairs,
    )
    step = {"step": "classify", "kind": result.kind, "strategy": result.strategy, "reasons": result.reasons}
    return fresh_run(
        query_class=result.kind,
        classification=result.as_dict(),
        candidates=[],
        documents=[],
        details={},
        usage=add_usage(None, result.usage),
        steps=[step],
    )


def select_strategy(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Pick the best-scoring strategy for the query class that fits what is left of the run's budget."""
    ctx = context(config, GRAPH)
    bounds, used = ctx.bounds, state.get("usage") or empty_usage()
    rows = score_candidates(
        state["query_class"],
        FeedbackStore(ctx.store.path).stats(),
        available=available(ctx, state["question"]),
        max_llm_calls=bounds.max_llm_calls - used.get("llm_calls", 0),
        token_budget=bounds.token_budget - total_tokens(used),
        offline=ctx.model is None,
        cost_weight=ctx.option("cost_weight", 0.1),
        explore=ctx.option("explore", 0.0),
    )
    allowed = [r for r in rows if r["allowed"]]
    chosen = allowed[0] if allowed else min(rows, key=lambda r: (r["llm_calls"], r["tokens"]))
    step = {
        "step": "select_strategy",
        "strategy": chosen["strategy"],
        "why": "best score within budget" if allowed else "nothing fits the budget: cheapest strategy",
        "budget": {"max_llm_calls": bounds.max_llm_calls, "token_budget": bounds.token_budget},
    }
    return {"strategy": chosen["strategy"], "candidates": rows, "steps": state["steps"] + [step]}


def answer_directly(state: State, config: RunnableConfig) -> dict[str, Any]:
    """No retrieval: the calculator for arithmetic, else the model's own knowledge."""
    ctx = context(config, GRAPH)
    answer = direct_answer(state["question"], ctx.model)
    return {
        "answer": answer.text,
        "sources": [],
        "usage": add_usage(state.get("usage"), answer.usage),
        "details": {"answer_strategy": answer.strategy},
        "steps": state["steps"] + [{"step": "answer_directly", "strategy": answer.strategy}],
    }


def retrieve(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Retrieve with the chosen retriever: vectors (semantic), BM25 (keyword) or both fused (hybrid)."""
    ctx = context(config, GRAPH)
    kind = RETRIEVERS[state["strategy"]]
    docs = ctx.retriever(kind).search(state["question"])
    return {
        "documents": docs,
        "steps": state["steps"] + [{"step": "retrieve", "retriever": kind, "documents": len(docs)}],
    }


def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Grade the documents, keep their relevant strips and answer with citations (or abstain)."""
    ctx = context(config, GRAPH)
    documents = state.get("documents", [])
    evidence = gather_evidence(state["question"], documents, ctx)
    answer = generate_answer(
        state["question"], evidence.strips, ctx.model_within(state), documents=documents, store=ctx.store
    )
    return {
        "answer": answer.text,
        "sources": answer.sources,
        "usage": add_usage(state.get("usage"), add_usage(evidence.usage, answer.usage)),
        "details": {
            "grading": {"evaluator": evidence.evaluator, "action": evidence.action},
            "answer_strategy": answer.strategy,
        },
        "steps": state["steps"] + [evidence.step("evaluate"), {"step": "generate", "strategy": answer.strategy}],
    }


def hierarchical(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Overview questions: the hierarchical_rag graph (document and section summaries, then chunks)."""
    return run_subgraph(state, config)


def multi_hop(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Chained lookups: the multihop graph (decomposed sub-questions answered in dependency order)."""
    return run_subgraph(state, config)


def run_subgraph(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Run the chosen strategy's graph on the question, with this run's configuration, and keep its trace."""
    ctx = context(config, GRAPH)
    name = SUBGRAPHS[state["strategy"]]
    with within_run(state.get("usage")):  # the subgraph's budgets count what this run already spent
        out = subgraph(ctx, name).invoke({"question": state["question"]}, config=config)
    sub = out.get("trace", {})
    usage = trace_usage(sub)
    return {
        "answer": out.get("answer", ""),
        "sources": out.get("sources", []),
        "usage": add_usage(state.get("usage"), usage),
        "details": {"subgraph": name, "subgraph_trace": {k: v for k, v in sub.items() if k != "steps"}},
        "steps": state["steps"] + [{"step": state["strategy"], "subgraph": name, "llm_calls": usage["llm_calls"]}],
    }


def finish(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Log the run for feedback (its id goes in the trace) and explain the choice."""
    ctx = context(config, GRAPH)
    seconds = elapsed(state)
    run_id = uuid.uuid4().hex[:12]
    usage = state.get("usage") or empty_usage()
    if ctx.option("log_runs", True):
        FeedbackStore(ctx.store.path).log_run(
            run_id,
            state["question"],
            state["query_class"],
            state["strategy"],
            usage.get("llm_calls", 0),
            total_tokens(usage),
            seconds,
        )
    trace = make_trace(
        GRAPH,
        state,
        action=state["strategy"],
        stop_reason=stop_reason(state),
        run_id=run_id,
        query_class=state["query_class"],
        classification=state.get("classification", {}),
        candidates=state.get("candidates", []),
        seconds=round(seconds, 3),
        **state.get("details", {}),
    )
    return {"trace": trace}


# ---------------------------------------------------------------------- routing
def stop_reason(state: State) -> str | None:
    """The bound that stopped the strategy's own graph (its hops, rounds or the run's budgets), if one did."""
    return (state.get("details") or {}).get("subgraph_trace", {}).get("stop_reason")


def route_strategy(state: State) -> str:
    strategy = state["strategy"]
    return {"direct": "answer_directly", "hierarchical": "hierarchical", "multi_hop": "multi_hop"}.get(
        strategy, "retrieve"
    )


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    classifier: str = "auto",
    cost_weight: float = 0.1,
    explore: float = 0.0,
    log_runs: bool = True,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the adaptive RAG graph.

    model: chat model for the classifier, grading and answers (None: configured or offline).
    store: a ChunkStore to use instead of the configured one.
    classifier: "auto" (LLM when a model exists), "local" or "llm".
    cost_weight: how much expected cost lowers a strategy's score; explore: UCB bonus (0 = greedy).
    log_runs: log every run in the store's feedback database (needed for `graphcraft feedback`).
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    Per run, configurable {"max_llm_calls", "token_budget"} restrict the strategies allowed.
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        store=store,
        options={"classifier": classifier, "cost_weight": cost_weight, "explore": explore, "log_runs": log_runs},
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (classify, select_strategy, answer_directly, retrieve, generate, hierarchical, multi_hop, finish):
        g.add_node(node.__name__, node)
    g.add_edge(START, "classify")
    g.add_edge("classify", "select_strategy")
    g.add_conditional_edges(
        "select_strategy", route_strategy, ["answer_directly", "retrieve", "hierarchical", "multi_hop"]
    )
    g.add_edge("retrieve", "generate")
    for node_name in ("answer_directly", "generate", "hierarchical", "multi_hop"):
        g.add_edge(node_name, "finish")
    g.add_edge("finish", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
