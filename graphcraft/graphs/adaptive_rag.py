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
are available and fit the call's budget (`max_llm_calls`, `token_budget` in configurable);
`explore` > 0 adds a UCB bonus for rarely tried strategies. The candidates table is in the trace.
The strategies themselves are the shared chains and part B's graphs (multihop, hierarchical_rag)
run as subgraphs. finish logs the run (run id in the trace) so `graphcraft feedback` can score it.
"""

from __future__ import annotations

import importlib.util
import math
import operator
import time
import uuid
from typing import Annotated, Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphcraft.chains.answer import generate_answer
from graphcraft.chains.classify import classify_query
from graphcraft.chains.direct import calculate, direct_answer
from graphcraft.chains.evidence import gather_evidence
from graphcraft.chains.rewrite import load_spacy
from graphcraft.config import Settings, settings_from
from graphcraft.memory.feedback import FeedbackStore
from graphcraft.runtime.accounting import Usage, add_usage, total_tokens
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.result import make_trace

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


class AdaptiveState(TypedDict, total=False):
    question: str
    query_class: str
    classification: dict
    strategy: str
    candidates: list[dict]
    documents: list[Document]
    answer: str
    sources: list[dict]
    details: dict  # strategy-specific trace (subgraph trace, evaluator, calculator ...)
    started: float
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict], operator.add]
    trace: dict


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
    from graphcraft.memory.feedback import stats

    rows = []
    for row in stats(store):
        prior = PRIORS.get(row["query_class"], PRIORS["single_hop"]).get(row["strategy"], 0.5)
        quality = (prior * PRIOR_WEIGHT + row["score_sum"]) / (PRIOR_WEIGHT + row["feedback"])
        rows.append({**row, "prior": prior, "quality": round(quality, 3)})
    return sorted(rows, key=lambda r: (r["query_class"], -r["quality"]))


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    classifier: str = "auto",
    cost_weight: float = 0.1,
    explore: float = 0.0,
    log_runs: bool = True,
    **options: Any,
) -> Any:
    """Compile the adaptive RAG graph.

    classifier: "auto" (LLM when a model exists), "local" or "llm".
    cost_weight: how much expected cost lowers a strategy's score; explore: UCB bonus (0 = greedy).
    log_runs: log every run in the store's feedback database (needed for `graphcraft feedback`).
    Per call, configurable {"max_llm_calls", "token_budget"} restrict the strategies allowed.
    """
    settings = settings_from(settings, options)
    base = Resources(settings, model=model, store=store)
    subgraphs: dict[tuple[str, int], Any] = {}

    def subgraph(name: str, res: Resources) -> Any:
        """Part B's graph `name`, built once per resource set, with this graph's model and store."""
        key = (name, id(res))
        if key not in subgraphs:
            module = importlib.import_module(f"graphcraft.graphs.{name}")
            subgraphs[key] = module.build(model=res.model, settings=res.settings, store=res.store)
        return subgraphs[key]

    def available(res: Resources, question: str) -> set[str]:
        found = {"semantic", "keyword", "hybrid"}
        if res.model is not None or calculate(question) is not None:
            found.add("direct")
        for strategy, module in (("hierarchical", "hierarchical_rag"), ("multi_hop", "multihop")):
            if importlib.util.find_spec(f"graphcraft.graphs.{module}") is not None:
                found.add(strategy)
        return found

    # ------------------------------------------------------------------ nodes
    def classify(state: AdaptiveState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        result = classify_query(
            state["question"],
            model=res.model,
            store=res.store,
            nlp=load_spacy(res.settings.spacy_model),
            mode=classifier,
            max_repairs=res.settings.max_structured_repairs,
        )
        return {
            "query_class": result.kind,
            "classification": result.as_dict(),
            "usage": result.usage,
            "started": time.perf_counter(),
            "steps": [
                {"step": "classify", "kind": result.kind, "strategy": result.strategy, "reasons": result.reasons}
            ],
        }

    def select_strategy(state: AdaptiveState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        s = res.settings
        used = state.get("usage") or {}
        rows = score_candidates(
            state["query_class"],
            FeedbackStore(res.store.path).stats(),
            available=available(res, state["question"]),
            max_llm_calls=s.max_llm_calls - used.get("llm_calls", 0),
            token_budget=s.token_budget - total_tokens(used),
            offline=res.model is None,
            cost_weight=cost_weight,
            explore=explore,
        )
        allowed = [r for r in rows if r["allowed"]]
        chosen = (
            allowed[0]["strategy"] if allowed else min(rows, key=lambda r: (r["llm_calls"], r["tokens"]))["strategy"]
        )
        why = "best score within budget" if allowed else "nothing fits the budget: cheapest strategy"
        return {
            "strategy": chosen,
            "candidates": rows,
            "steps": [
                {
                    "step": "select_strategy",
                    "strategy": chosen,
                    "why": why,
                    "budget": {"max_llm_calls": s.max_llm_calls, "token_budget": s.token_budget},
                }
            ],
        }

    def answer_directly(state: AdaptiveState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        answer = direct_answer(state["question"], res.model)
        return {
            "answer": answer.text,
            "sources": [],
            "usage": answer.usage,
            "details": {"answer_strategy": answer.strategy},
            "steps": [{"step": "answer_directly", "strategy": answer.strategy}],
        }

    def retrieve(state: AdaptiveState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        docs = res.retriever(RETRIEVERS[state["strategy"]]).search(state["question"])
        return {
            "documents": docs,
            "steps": [{"step": "retrieve", "retriever": RETRIEVERS[state["strategy"]], "documents": len(docs)}],
        }

    def generate(state: AdaptiveState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        evidence = gather_evidence(state["question"], state.get("documents", []), res)
        answer = generate_answer(
            state["question"], evidence.strips, res.model, documents=state.get("documents", []), store=res.store
        )
        return {
            "answer": answer.text,
            "sources": answer.sources,
            "usage": add_usage(evidence.usage, answer.usage),
            "details": {"evaluator": evidence.evaluator, "action": evidence.action, "answer_strategy": answer.strategy},
            "steps": [evidence.step("evaluate"), {"step": "generate", "strategy": answer.strategy}],
        }

    def run_subgraph(name: str, state: AdaptiveState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        out = subgraph(name, res).invoke({"question": state["question"]}, config=config)
        sub = out.get("trace", {})
        return {
            "answer": out.get("answer", ""),
            "sources": out.get("sources", []),
            "usage": out.get("usage"),
            "details": {"subgraph": name, "subgraph_trace": {k: v for k, v in sub.items() if k != "steps"}},
            "steps": [{"step": state["strategy"], "subgraph": name, "llm_calls": sub.get("llm_calls", 0)}],
        }

    def hierarchical(state: AdaptiveState, config: RunnableConfig) -> dict:
        return run_subgraph("hierarchical_rag", state, config)

    def multi_hop(state: AdaptiveState, config: RunnableConfig) -> dict:
        return run_subgraph("multihop", state, config)

    def finish(state: AdaptiveState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        seconds = time.perf_counter() - state.get("started", time.perf_counter())
        run_id = uuid.uuid4().hex[:12]
        usage = state.get("usage") or {}
        if log_runs:
            FeedbackStore(res.store.path).log_run(
                run_id,
                state["question"],
                state["query_class"],
                state["strategy"],
                usage.get("llm_calls", 0),
                total_tokens(usage),
                seconds,
            )
        trace = make_trace(
            "adaptive_rag",
            state,
            run_id=run_id,
            query_class=state["query_class"],
            strategy=state["strategy"],
            classification=state.get("classification", {}),
            candidates=state.get("candidates", []),
            seconds=round(seconds, 3),
            **state.get("details", {}),
            steps=state.get("steps", []),
        )
        return {"trace": trace}

    # ------------------------------------------------------------------ routing
    def route_strategy(state: AdaptiveState) -> str:
        strategy = state["strategy"]
        return {"direct": "answer_directly", "hierarchical": "hierarchical", "multi_hop": "multi_hop"}.get(
            strategy, "retrieve"
        )

    g = StateGraph(AdaptiveState)
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
    return g.compile(name="adaptive_rag")


graph = build()
