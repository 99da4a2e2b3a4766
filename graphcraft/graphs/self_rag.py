"""Self-reflective RAG (after Self-RAG, Asai et al. 2023, arXiv:2310.11511).

    retrieve -> grade -> generate -> check --grounded and useful--------------------------> finish
                                          --bound reached (rounds / tokens / calls / time)-> finish
                                          --otherwise--> critique --no new query----------> finish
                                                                  --> refine_query -> retrieve

Self-RAG reflects on its own output: are the retrieved passages relevant (grade), is every
claim supported by them (grounding), does the answer answer the question (usefulness)? When the
answer fails, a critic says why and a refined query retrieves new evidence for another round.
The loop is bounded by the run's bounds (max_iterations rounds, the token budget, the LLM-call
cap, the wall clock), checked in `after_check` through `stop_reason`; a round that would cross a
budget, judged by the mean cost of the rounds so far, is not started. The trace records why each
loop ran and why the graph stopped. When a bound stops the loop, the best grounded attempt is
returned (flagged unverified), or an abstention if no attempt was grounded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, cast

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from graphcraft.chains.answer import ABSTAIN, generate_answer
from graphcraft.chains.critique import critique_answer
from graphcraft.chains.evidence import gather_evidence, strip_vectors
from graphcraft.chains.grounding import AnswerCheck, check_answer
from graphcraft.chains.question import AnswerType, expected_answer_type, has_answer_type
from graphcraft.chains.refine import Strip
from graphcraft.chains.rewrite import load_spacy
from graphcraft.config import Settings, settings_from
from graphcraft.runtime.accounting import USAGE_KEYS, Usage, add_usage, empty_usage, total_tokens
from graphcraft.runtime.bounds import fresh_run
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "self_rag"
DESCRIPTION = (
    "Self-reflective RAG: grade, generate, check grounding and usefulness, critique and re-query until verified "
    "or a round/token budget runs out."
)

MAX_KNOWLEDGE_STRIPS = 8
CRITIQUED_QUESTION = "{question}\n(A reviewer rejected an earlier answer: {critique})"


class State(InputState, OutputState, total=False):
    query: str  # the current search query
    queries: list[str]  # every query tried
    documents: list[Document]
    knowledge: list[dict]  # graded strips, accumulated over rounds
    focus: AnswerType | None  # answer type the critic found missing (local generation prefers strips with it)
    critique: str
    check: dict  # the last verdict
    attempts: list[dict]  # every answer and its verdict
    iterations: int  # rounds of generate + check done; bounded by max_iterations
    loops: list[dict]  # why each extra round ran
    looping: bool  # set by refine_query: the next retrieve continues this run instead of starting one
    started_at: float  # the run's wall clock (runtime.bounds)
    # Plain channels (no reducer), reset by `retrieve` on a new question: a thread asked a second
    # question (Studio, LangGraph Server) starts a fresh run instead of adding to the previous one.
    usage: Usage
    steps: list[dict]


# ---------------------------------------------------------------------- nodes (the paper's steps)
def retrieve(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Retrieve for the question, or for the critic's refined query; a new question starts a fresh run."""
    ctx = context(config, GRAPH)
    looping = bool(state.get("looping"))
    query = (state.get("query") if looping else "") or state["question"]
    docs = ctx.retriever("hybrid").search(query)
    step = {"step": "retrieve", "query": query, "documents": len(docs)}
    if looping:
        return {
            "looping": False,
            "query": query,
            "queries": state.get("queries", []) + [query],
            "documents": docs,
            "steps": state["steps"] + [step],
        }
    return fresh_run(
        looping=False,
        query=query,
        queries=[query],
        documents=docs,
        iterations=0,
        loops=[],
        attempts=[],
        knowledge=[],
        focus=None,
        critique="",
        check={},
        steps=[step],
    )


def grade(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Grade the retrieved passages (IsRel) and add their relevant strips to the knowledge of earlier rounds."""
    ctx = context(config, GRAPH)
    evidence = gather_evidence(state["question"], state["documents"], ctx, ctx.option("evaluator", "auto"))
    merged = {(s["chunk_id"], s["position"]): s for s in state.get("knowledge", [])}
    for strip in evidence.strips:
        key = (strip.chunk_id, strip.position)
        if key not in merged or merged[key]["score"] < strip.score:
            merged[key] = strip.as_dict()
    knowledge = sorted(merged.values(), key=lambda s: s["score"], reverse=True)[:MAX_KNOWLEDGE_STRIPS]
    return {
        "knowledge": knowledge,
        "usage": add_usage(state.get("usage"), evidence.usage),
        "steps": state["steps"] + [evidence.step("grade")],
    }


def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the knowledge with citations, taking the critic's last objection into account."""
    ctx = context(config, GRAPH)
    strips = [Strip(**s) for s in state.get("knowledge", [])]
    question = prompt_question = state["question"]
    focus = state.get("focus")
    if ctx.model is None and focus:  # local: lead with strips holding what the critic found missing
        nlp = load_spacy(ctx.settings.spacy_model)
        strips = [
            replace(s, score=s.score + 1.0) if has_answer_type(s.text, focus, question, nlp) else s for s in strips
        ]
    elif ctx.model is not None and state.get("critique"):
        prompt_question = CRITIQUED_QUESTION.format(question=question, critique=state["critique"])
    answer = generate_answer(prompt_question, strips, ctx.model_within(state), store=ctx.store)
    step = {"step": "generate", "strategy": answer.strategy, "strips": len(strips), "abstained": answer.abstained}
    return {
        "answer": answer.text,
        "sources": answer.sources,
        "usage": add_usage(state.get("usage"), answer.usage),
        "steps": state["steps"] + [step],
    }


def check(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Is every claim supported by the knowledge (IsSup) and does the answer answer the question (IsUse)?"""
    ctx = context(config, GRAPH)
    texts = [s["text"] for s in state.get("knowledge", [])]
    extra = quoted_sentences(state, texts)
    verdict = check_answer(
        state["question"],
        state["answer"],
        texts + extra,
        model=ctx.model,
        embeddings=ctx.embeddings,
        strategy=ctx.option("checker", "auto"),
        max_repairs=ctx.settings.max_structured_repairs,
        nlp=load_spacy(ctx.settings.spacy_model),
        source_vectors=None if extra else strip_vectors(ctx.store, state.get("knowledge", [])),
    )
    rounds = state.get("iterations", 0) + 1
    attempt = {
        "round": rounds,
        "answer": state["answer"],
        "sources": state.get("sources", []),
        "grounded": verdict.grounded,
        "useful": verdict.useful,
        "support": verdict.support,
        "usefulness": verdict.usefulness,
    }
    step = {
        "step": "check",
        "strategy": verdict.strategy,
        "grounded": verdict.grounded,
        "useful": verdict.useful,
        "reason": verdict.reason,
    }
    return {
        "check": verdict.as_dict(),
        "attempts": state.get("attempts", []) + [attempt],
        "iterations": rounds,
        "usage": add_usage(state.get("usage"), verdict.usage),
        "steps": state["steps"] + [step],
    }


def quoted_sentences(state: State, known_texts: list[str]) -> list[str]:
    """Sentences the answer quotes verbatim from its sources that are not knowledge strips already:
    an extract may add the sentence that follows the best one, which supports it as much."""
    known = {t.strip() for t in known_texts}
    quoted = [
        src["text"][a:b].strip() for src in state.get("sources", []) for a, b in src.get("spans", []) if src.get("text")
    ]
    return [q for q in dict.fromkeys(quoted) if q and q not in known]


def critique(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Say why the answer failed and propose a new search query (none when nothing new is left to try)."""
    ctx = context(config, GRAPH)
    verdict = AnswerCheck(**{k: v for k, v in state["check"].items() if k in AnswerCheck.__dataclass_fields__})
    result = critique_answer(
        state["question"],
        state["answer"],
        verdict,
        state.get("queries", []),
        ctx.model,
        ctx.settings.spacy_model,
        ctx.settings.max_structured_repairs,
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
        "usage": add_usage(state.get("usage"), result.usage),
        "loops": state.get("loops", []) + ([loop] if result.query else []),
        "steps": state["steps"] + [{"step": "critique", **result.as_dict()}],
    }


def refine_query(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Search again with the critic's query, keeping this run's knowledge and budgets."""
    step = {"step": "refine_query", "query": state["query"], "previous": state.get("queries", [])}
    return {"looping": True, "steps": state["steps"] + [step]}


def finish(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Return the verified answer; when unverified, the best grounded attempt (or abstain); explain why."""
    ctx = context(config, GRAPH)
    attempts = state.get("attempts", [])
    chosen = attempts[-1] if attempts else {"answer": ABSTAIN, "sources": []}
    if verified(state):
        action, reason = "verified", None
    else:
        grounded = [a for a in attempts if a["grounded"] and a["answer"] != ABSTAIN]
        ranked = sorted(grounded, key=lambda a: (a["useful"], a["support"] + a["usefulness"]), reverse=True)
        best = ranked[0] if ranked and ctx.option("unverified", "best") == "best" else None
        chosen = best or {"answer": ABSTAIN, "sources": [], "round": None}
        # The critic ended the loop when it had no new query; otherwise a bound did.
        action, reason = ("no_new_query", None) if not state.get("query") else ("stopped", stop_reason(state, ctx))
    steps = state["steps"] + [{"step": "finish"}]
    trace = make_trace(
        GRAPH,
        state,
        action=action,
        stop_reason=reason,
        steps=steps,
        verified=action == "verified",
        chosen_round=chosen.get("round"),
        budget=ctx.bounds.as_dict(),
        queries=state.get("queries", []),
        loops=state.get("loops", []),
        attempts=[{k: v for k, v in a.items() if k != "sources"} for a in attempts],
        abstained=chosen["answer"] == ABSTAIN,
        tokens=total_tokens(state.get("usage")),
    )
    return {"answer": chosen["answer"], "sources": chosen.get("sources", []), "trace": trace, "steps": steps}


# ---------------------------------------------------------------------- routing (the loop's bounds live here)
def verified(state: State) -> bool:
    """The last answer was judged grounded and useful."""
    verdict = state.get("check") or {}
    return bool(verdict.get("grounded") and verdict.get("useful"))


def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that ends the loop now (None: another round may run), checked after every answer check.

    Rounds done, LLM calls, tokens and the wall clock; a round that would cross the call cap or
    the token budget, judged by the mean usage of the rounds so far, is not started either.
    """
    rounds = state.get("iterations", 0)
    usage = state.get("usage") or empty_usage()
    mean_round = cast(Usage, {key: usage.get(key, 0) / max(1, rounds) for key in USAGE_KEYS})
    after_next_round = {**state, "usage": add_usage(usage, mean_round)}
    return ctx.bounds.reached(state, rounds) or ctx.bounds.reached(after_next_round, rounds)


def after_check(state: State, config: RunnableConfig) -> str:
    """Finish once verified or bounded; otherwise ask the critic."""
    ctx = context(config, GRAPH)
    return "finish" if verified(state) or stop_reason(state, ctx) else "critique"


def after_critique(state: State) -> str:
    return "refine_query" if state.get("query") else "finish"


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

    model: chat model for grading, generation, the check and the critic (None: configured or offline).
    store: a ChunkStore to use instead of the configured one.
    checker / evaluator: "auto" (LLM when a model exists), "local" or "llm".
    unverified: what to return when a bound stops the loop: the best grounded attempt, or abstain.
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    options: Settings fields (max_iterations, token_budget, max_llm_calls, top_k ...).
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        store=store,
        options={"checker": checker, "evaluator": evaluator, "unverified": unverified},
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (retrieve, grade, generate, check, critique, refine_query, finish):
        g.add_node(node.__name__, node)
    g.add_edge(START, "retrieve")
    g.add_edge("retrieve", "grade")
    g.add_edge("grade", "generate")
    g.add_edge("generate", "check")
    g.add_conditional_edges("check", after_check, ["critique", "finish"])
    g.add_conditional_edges("critique", after_critique, ["refine_query", "finish"])
    g.add_edge("refine_query", "retrieve")
    g.add_edge("finish", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
