"""Self-reflective RAG (after Self-RAG, Asai et al. 2023, arXiv:2310.11511).

    retrieve -> grade -> generate -> check --grounded and useful---------------------> finish
                                          --bound reached (iterations / tokens / calls)-> finish
                                          --otherwise--> critique --no new query-------> finish
                                                                  --> refine_query -> retrieve

Self-RAG reflects on its own output: are the retrieved passages relevant (grade), is every
claim supported by them (grounding), does the answer answer the question (usefulness)? When the
answer fails, a critic says why and a refined query retrieves new evidence for another round.
The loop is bounded by a maximum number of rounds AND a token budget (and the LLM-call cap),
all held in the state's `budget` and checked in `after_check`; the trace records why each loop
ran and why the graph stopped. When a bound stops the loop, the best grounded attempt is
returned (flagged unverified), or an abstention if no attempt was grounded.
"""

from __future__ import annotations

import operator
from dataclasses import replace
from typing import Annotated, Any, Literal

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Overwrite
from typing_extensions import TypedDict

from graphcraft.chains.answer import ABSTAIN, generate_answer
from graphcraft.chains.critique import critique_answer
from graphcraft.chains.evidence import gather_evidence, strip_vectors
from graphcraft.chains.grounding import check_answer
from graphcraft.chains.question import AnswerType, expected_answer_type, has_answer_type
from graphcraft.chains.refine import Strip
from graphcraft.chains.rewrite import load_spacy
from graphcraft.config import Settings, settings_from
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage, total_tokens
from graphcraft.runtime.bounds import Bounds, start_clock
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Self-reflective RAG: grade, generate, check grounding and usefulness, critique and re-query until verified "
    "or a round/token budget runs out."
)

MAX_KNOWLEDGE_STRIPS = 8


class SelfRAGState(TypedDict, total=False):
    question: str
    started_at: float  # the run's wall clock (runtime.bounds), checked with the call and token budgets
    budget: dict  # {"max_iterations", "max_llm_calls", "token_budget"}; may be given in the input
    query: str  # the current search query
    queries: list[str]  # every query tried
    documents: list[Document]
    knowledge: list[dict]  # graded strips, accumulated over rounds
    focus: AnswerType | None  # answer type the critic found missing (local generation prefers strips with it)
    critique: str
    answer: str
    sources: list[dict]
    check: dict  # the last verdict
    attempts: list[dict]  # every answer and its verdict
    iterations: int  # rounds of generate + check done; bounded by budget["max_iterations"]
    loops: list[dict]  # why each extra round ran
    stop_reason: str
    looping: bool  # set by refine_query: the next retrieve continues this run instead of starting one
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict], operator.add]
    trace: dict


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    store: Any = None,
    checker: str = "auto",
    evaluator: str = "auto",
    unverified: Literal["best", "abstain"] = "best",
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the self-reflective RAG graph.

    checker / evaluator: "auto" (LLM when a model exists), "local" or "llm".
    unverified: what to return when a bound stops the loop: the best grounded attempt, or abstain.
    options: Settings fields (max_iterations, token_budget, max_llm_calls, top_k ...).
    """
    settings = settings_from(settings, options)
    base = Resources(settings, model=model, store=store)

    # ------------------------------------------------------------------ nodes
    def retrieve(state: SelfRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        update: dict[str, Any] = {"looping": False}
        if not state.get("looping"):  # a new run (also a new question on a reused thread): reset per-run state
            given = state.get("budget") or {}
            update.update(
                **start_clock(),
                budget=Bounds.from_settings(res.settings, **given).as_dict(),
                iterations=0,
                loops=[],
                attempts=[],
                knowledge=[],
                queries=[],
                focus=None,
                critique="",
                query="",
                stop_reason="",
                check={},
                usage=Overwrite(empty_usage()),
                steps=Overwrite([]),
            )
        query = (state.get("query") if state.get("looping") else "") or state["question"]
        docs = res.retriever("hybrid").search(query)
        queries = (update.get("queries", state.get("queries", [])) or []) + [query]
        step = {"step": "retrieve", "query": query, "documents": len(docs)}
        steps = Overwrite([step]) if "steps" in update else [step]
        return {**update, "query": query, "queries": queries, "documents": docs, "steps": steps}

    def grade(state: SelfRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        evidence = gather_evidence(state["question"], state["documents"], res, evaluator)
        merged = {(s["chunk_id"], s["position"]): s for s in state.get("knowledge", [])}
        for strip in evidence.strips:
            key = (strip.chunk_id, strip.position)
            if key not in merged or merged[key]["score"] < strip.score:
                merged[key] = strip.as_dict()
        knowledge = sorted(merged.values(), key=lambda s: s["score"], reverse=True)[:MAX_KNOWLEDGE_STRIPS]
        return {"knowledge": knowledge, "usage": evidence.usage, "steps": [evidence.step("grade")]}

    def generate(state: SelfRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        strips = [Strip(**s) for s in state.get("knowledge", [])]
        question = state["question"]
        prompt_question = question
        if res.model is None and state.get("focus"):  # local: lead with strips holding what the critic found missing
            focus = state["focus"]
            nlp = load_spacy(res.settings.spacy_model)
            strips = [
                replace(s, score=s.score + 1.0) if has_answer_type(s.text, focus, question, nlp) else s for s in strips
            ]
        elif res.model is not None and state.get("critique"):
            prompt_question = f"{question}\n(A reviewer rejected an earlier answer: {state['critique']})"
        answer = generate_answer(prompt_question, strips, res.model, store=res.store)
        return {
            "answer": answer.text,
            "sources": answer.sources,
            "usage": answer.usage,
            "steps": [
                {"step": "generate", "strategy": answer.strategy, "strips": len(strips), "abstained": answer.abstained}
            ],
        }

    def check(state: SelfRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        texts = [s["text"] for s in state.get("knowledge", [])]
        # Sentences the answer quotes verbatim from its sources (an extract may add the sentence that
        # follows the best one) support it as much as the knowledge strips do.
        known = {t.strip() for t in texts}
        quoted = [
            src["text"][a:b].strip()
            for src in state.get("sources", [])
            for a, b in src.get("spans", [])
            if src.get("text")
        ]
        extra = [q for q in dict.fromkeys(quoted) if q and q not in known]
        verdict = check_answer(
            state["question"],
            state["answer"],
            texts + extra,
            model=res.model,
            embeddings=res.embeddings,
            strategy=checker,
            max_repairs=res.settings.max_structured_repairs,
            nlp=load_spacy(res.settings.spacy_model),
            source_vectors=None if extra else strip_vectors(res.store, state.get("knowledge", [])),
        )
        record = verdict.as_dict()
        attempt = {
            "round": state.get("iterations", 0) + 1,
            "answer": state["answer"],
            "sources": state.get("sources", []),
            "grounded": verdict.grounded,
            "useful": verdict.useful,
            "support": verdict.support,
            "usefulness": verdict.usefulness,
        }
        return {
            "check": record,
            "attempts": state.get("attempts", []) + [attempt],
            "iterations": state.get("iterations", 0) + 1,
            "usage": verdict.usage,
            "steps": [
                {
                    "step": "check",
                    "strategy": verdict.strategy,
                    "grounded": verdict.grounded,
                    "useful": verdict.useful,
                    "reason": verdict.reason,
                }
            ],
        }

    def critique(state: SelfRAGState, config: RunnableConfig) -> dict:
        res = base.for_config(config)
        from graphcraft.chains.grounding import AnswerCheck

        verdict = AnswerCheck(**{k: v for k, v in state["check"].items() if k in AnswerCheck.__dataclass_fields__})
        result = critique_answer(
            state["question"],
            state["answer"],
            verdict,
            state.get("queries", []),
            res.model,
            res.settings.spacy_model,
            res.settings.max_structured_repairs,
        )
        kind = expected_answer_type(state["question"])
        focus = kind if any(m == f"a {kind}" for m in verdict.missing) else state.get("focus")
        loop = {
            "round": state.get("iterations", 0) + 1,
            "because": verdict.reason or "failed check",
            "grounded": verdict.grounded,
            "useful": verdict.useful,
            "critique": result.text,
            "critic": result.strategy,
        }
        return {
            "critique": result.text,
            "query": result.query or "",
            "focus": focus,
            "usage": result.usage,
            "loops": state.get("loops", []) + ([loop] if result.query else []),
            "steps": [{"step": "critique", **result.as_dict()}],
        }

    def refine_query(state: SelfRAGState) -> dict:
        return {
            "looping": True,
            "steps": [{"step": "refine_query", "query": state["query"], "previous": state.get("queries", [])}],
        }

    def finish(state: SelfRAGState) -> dict:
        attempts = state.get("attempts", [])
        verified = bool(state.get("check", {}).get("grounded") and state.get("check", {}).get("useful"))
        chosen = attempts[-1] if attempts else {"answer": ABSTAIN, "sources": []}
        if not verified:
            grounded = [a for a in attempts if a["grounded"] and a["answer"] != ABSTAIN]
            ranked = sorted(grounded, key=lambda a: (a["useful"], a["support"] + a["usefulness"]), reverse=True)
            chosen = ranked[0] if ranked and unverified == "best" else {"answer": ABSTAIN, "sources": [], "round": None}
        trace = make_trace(
            "self_rag",
            state,
            stop_reason=state.get("stop_reason", "grounded_and_useful"),
            verified=verified,
            chosen_round=chosen.get("round"),
            budget=state.get("budget", {}),
            queries=state.get("queries", []),
            loops=state.get("loops", []),
            attempts=[{k: v for k, v in a.items() if k != "sources"} for a in attempts],
            abstained=chosen["answer"] == ABSTAIN,
            tokens=total_tokens(state.get("usage")),
            steps=state.get("steps", []) + [{"step": "finish"}],
        )
        return {
            "answer": chosen["answer"],
            "sources": chosen.get("sources", []),
            "trace": trace,
            "steps": [{"step": "finish"}],
        }

    # ------------------------------------------------------------------ routing (the loop's bounds live here)
    def after_check(state: SelfRAGState) -> str:
        return "finish" if _stop_reason(state) else "critique"

    def after_critique(state: SelfRAGState) -> str:
        return "refine_query" if state.get("query") else "finish"

    def record_stop(state: SelfRAGState) -> dict:
        return {
            "stop_reason": _stop_reason(state) or ("no_new_query" if not state.get("query") else "grounded_and_useful")
        }

    g = StateGraph(SelfRAGState)
    for node in (retrieve, grade, generate, check, critique, refine_query, finish):
        g.add_node(node.__name__, node)
    g.add_node("stop", record_stop)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "grade")
    g.add_edge("grade", "generate")
    g.add_edge("generate", "check")
    g.add_conditional_edges("check", after_check, {"finish": "stop", "critique": "critique"})
    g.add_edge("stop", "finish")
    g.add_conditional_edges("critique", after_critique, {"refine_query": "refine_query", "finish": "stop"})
    g.add_edge("refine_query", "retrieve")
    g.add_edge("finish", END)
    return g.compile(name="self_rag", checkpointer=checkpointer)


def _stop_reason(state: SelfRAGState) -> str | None:
    """Why the loop must stop now (None: run another round). Checked after every answer check.

    A verified answer stops it; so does any bound: rounds done, LLM calls, or tokens, where a
    round that would need more tokens than are left (judged by the mean cost of the rounds so
    far) is not started.
    """
    verdict = state.get("check", {})
    if verdict.get("grounded") and verdict.get("useful"):
        return "grounded_and_useful"
    budget = state.get("budget") or Bounds().as_dict()
    bounds = Bounds(**budget)
    usage = state.get("usage") or {}
    rounds = state.get("iterations", 0)
    hit = bounds.reached(state, rounds)
    if hit:
        return hit
    used = total_tokens(usage)
    per_round = used / max(1, rounds)
    if used and used + per_round > bounds.token_budget:
        return "token_budget"
    per_round_calls = usage.get("llm_calls", 0) / max(1, rounds)
    if per_round_calls and usage.get("llm_calls", 0) + per_round_calls > bounds.max_llm_calls:
        return "max_llm_calls"
    return None


graph = build()
