"""Reflection: generate a draft, critique it per criterion, refine, repeat (Self-Refine, Madaan et al. 2023,
arXiv:2303.17651).

    generate -> critique --mean score >= threshold, or a bound reached--> finalize
                   ^    |
                   |    +--otherwise--> refine
                   +----------------------+

The critic returns a 0-10 score per criterion with feedback (structured output). The loop ends
when the mean score reaches the threshold or a bound is hit (iterations, LLM calls, tokens);
the answer is the best-scored draft, not merely the last one. The wall-clock bound
(Settings.max_seconds) is checked with the others, so a slow model ends with its best draft.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, create_model

from graphcraft.config import Settings, settings_from
from graphcraft.models import invoke_llm, message_text, structured_call
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.bounds import fresh_run, start_clock
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "reflection"
DESCRIPTION = (
    "Self-refine: generate, critique with per-criterion scores, refine until a threshold or budget; keeps the "
    "best draft."
)
DEFAULT_CRITERIA = ("correctness", "completeness", "clarity")
DEFAULT_THRESHOLD = 8.0  # the mean criterion score (0-10) that passes
RECURSION_LIMIT = 1_000  # a last resort only: the loop is bounded by max_iterations and the run's budgets
FEEDBACK_CHARS = 120  # limits in the schema keep a grammar-constrained critic within its token limit

GENERATE_SYSTEM = "You are a careful expert. Answer the task fully and precisely."
CRITIQUE_SYSTEM = "You are a demanding reviewer."
CRITIQUE_PROMPT = (
    "Task:\n{question}\n\nDraft answer:\n{draft}\n\n"
    "Score the draft from 0 to 10 on each criterion: {criteria}. "
    "Be strict: 10 means nothing to improve. Give concrete feedback per criterion."
)
REFINE_SYSTEM = "You revise drafts using reviewer feedback."
REFINE_PROMPT = (
    "Task:\n{question}\n\nCurrent draft:\n{draft}\n\n"
    "Reviewer feedback:\n{feedback}\n\n"
    "Rewrite the draft to address every point. Return only the improved answer."
)


class CriterionScore(BaseModel):
    criterion: str
    score: float = Field(
        ge=0, le=10, description="0 (fails) to 10 (perfect)", json_schema_extra={"enum": list(range(11))}
    )  # whole scores: a grammar has no numeric range
    feedback: str = Field(default="", max_length=FEEDBACK_CHARS, description="what to change to score higher")


class Critique(BaseModel):
    """Scores for each requested criterion and the most important fix."""

    scores: list[CriterionScore]
    summary: str = Field(default="", max_length=FEEDBACK_CHARS)


@lru_cache(maxsize=16)
def critique_schema(criteria: tuple[str, ...]) -> type[Critique]:
    """`Critique` for these criteria: one score per criterion, named from the list (a JSON-schema
    enum, so a grammar-constrained critic names them exactly; validation stays case-insensitive)."""
    named = Field(json_schema_extra={"enum": list(criteria)})
    item = create_model("CriterionScore", __base__=CriterionScore, criterion=(str, named))
    scores = Field(min_length=1, max_length=len(criteria))
    return create_model(
        "Critique",
        __base__=Critique,
        __doc__=Critique.__doc__,
        scores=(list[item], scores),  # type: ignore[valid-type]  # a model built at runtime
    )


class State(InputState, OutputState, total=False):
    draft: str  # the latest draft
    critique: dict[str, Any]  # the latest critique: scores per criterion, feedback, summary
    score: float  # the latest draft's mean score
    best_draft: str
    best_score: float
    iterations: int  # critiques so far; bounded by max_iterations
    started_at: float  # the run's wall clock (runtime.bounds)
    # Plain channels (no reducer), reset by `generate`: a thread that is asked a second question
    # (Studio, LangGraph Server) starts a fresh run instead of adding to the previous one.
    usage: Usage
    steps: list[dict[str, Any]]


def criteria_of(ctx: Context) -> tuple[str, ...]:
    """The criteria the critic scores (the build option "criteria", or the run's override, also "a,b")."""
    criteria = ctx.option("criteria", DEFAULT_CRITERIA)
    return tuple(c.strip() for c in criteria.split(",")) if isinstance(criteria, str) else tuple(criteria)


def scores_by_criterion(critique: Critique, criteria: tuple[str, ...]) -> dict[str, float]:
    """One score per requested criterion; a criterion the critic skipped scores 0."""
    given = {s.criterion.strip().lower(): s.score for s in critique.scores}
    return {c: float(given.get(c.lower(), 0.0)) for c in criteria}


def feedback_of(critique: Critique) -> str:
    """The critic's feedback as one list for the refiner, the most important fix last."""
    lines = [f"- {s.criterion} ({s.score:g}/10): {s.feedback}" for s in critique.scores if s.feedback]
    if critique.summary:
        lines.append(f"Most important: {critique.summary}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- nodes (the paper's steps)
def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Write the first draft and start a fresh run (its clock starts before the first model call)."""
    ctx = context(config, GRAPH)
    clock = start_clock()
    model = ctx.require_model("the reflection graph")
    reply, usage = invoke_llm(model, [SystemMessage(GENERATE_SYSTEM), HumanMessage(state["question"])])
    return fresh_run(
        **clock,
        draft=message_text(reply),
        critique={},
        score=0.0,
        best_draft="",
        best_score=-1.0,
        iterations=0,
        usage=usage,
        steps=[{"step": "generate"}],
    )


def critique(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Score the draft per criterion (structured output); remember the best-scored draft."""
    ctx = context(config, GRAPH)
    criteria = criteria_of(ctx)
    prompt = CRITIQUE_PROMPT.format(question=state["question"], draft=state["draft"], criteria=", ".join(criteria))
    fallback = Critique(
        scores=[CriterionScore(criterion=c, score=0, feedback="no critique available") for c in criteria],
        summary="critique failed; draft kept unscored",
    )
    result = structured_call(
        ctx.require_model("the reflection graph"),
        critique_schema(criteria),
        [SystemMessage(CRITIQUE_SYSTEM), HumanMessage(prompt)],
        fallback=fallback,
        max_repairs=ctx.settings.max_structured_repairs,
    )
    per_criterion = scores_by_criterion(result.value, criteria)
    score = round(sum(per_criterion.values()) / len(criteria), 3)
    iteration = state.get("iterations", 0) + 1
    step = {
        "step": "critique",
        "iteration": iteration,
        "score": score,
        "scores": per_criterion,
        "critique_fallback": result.fallback,
    }
    update: dict[str, Any] = {
        "critique": {"scores": per_criterion, "feedback": feedback_of(result.value), "summary": result.value.summary},
        "score": score,
        "iterations": iteration,
        "usage": add_usage(state.get("usage"), result.usage),
        "steps": state.get("steps", []) + [step],
    }
    if score > state.get("best_score", -1.0):
        update["best_draft"], update["best_score"] = state["draft"], score
    return update


def refine(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Rewrite the draft to address every point of the critique."""
    ctx = context(config, GRAPH)
    prompt = REFINE_PROMPT.format(
        question=state["question"], draft=state["draft"], feedback=state["critique"]["feedback"]
    )
    reply, usage = invoke_llm(
        ctx.require_model("the reflection graph"), [SystemMessage(REFINE_SYSTEM), HumanMessage(prompt)]
    )
    return {
        "draft": message_text(reply),
        "usage": add_usage(state.get("usage"), usage),
        "steps": state.get("steps", []) + [{"step": "refine", "iteration": state.get("iterations", 0)}],
    }


def finalize(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer with the best-scored draft and the trace of the scores that led to it."""
    ctx = context(config, GRAPH)
    reason = stop_reason(state, ctx)
    kept = "best" if state.get("best_draft") != state.get("draft") else "last"
    steps = state.get("steps", []) + [{"step": "finalize", "kept": kept}]
    critiques = [s for s in steps if s["step"] == "critique"]
    trace = make_trace(
        GRAPH,
        state,
        action="passed" if passed(state, ctx) else "stopped",
        stop_reason=reason,
        steps=steps,
        threshold=ctx.option("threshold", DEFAULT_THRESHOLD),
        criteria=list(criteria_of(ctx)),
        best_score=state.get("best_score"),
        final_score=state.get("score"),
        scores=[s["score"] for s in critiques],
        kept=kept,
        bounds=ctx.bounds.as_dict(),
        critique_fallbacks=sum(1 for s in critiques if s["critique_fallback"]),
    )
    answer = state.get("best_draft") or state.get("draft", "")
    return {"answer": answer, "sources": [], "trace": trace, "steps": steps}


# ---------------------------------------------------------------------- routing (the loop is bounded here)
def passed(state: State, ctx: Context) -> bool:
    """The latest draft's mean score reached the threshold."""
    return state.get("score", 0.0) >= ctx.option("threshold", DEFAULT_THRESHOLD)


def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that ends the loop before the threshold is met (iterations, LLM calls, tokens, time), or None."""
    return None if passed(state, ctx) else ctx.bounds.reached(state, state.get("iterations", 0))


def after_critique(state: State, config: RunnableConfig) -> str:
    """Stop at the threshold or at the first bound reached; otherwise refine."""
    ctx = context(config, GRAPH)
    return "finalize" if passed(state, ctx) or stop_reason(state, ctx) else "refine"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    criteria: tuple[str, ...] | list[str] = DEFAULT_CRITERIA,
    threshold: float = DEFAULT_THRESHOLD,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the reflection graph.

    model: the chat model that drafts, critiques and refines (None: the configured one).
    criteria: what the critic scores, 0-10 each. threshold: the mean score that passes.
    max_iterations / max_llm_calls / token_budget / max_seconds: Settings fields, given here or per run.
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        options={"criteria": tuple(criteria), "threshold": float(threshold)},
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (generate, critique, refine, finalize):
        g.add_node(node.__name__, node)
    g.add_edge(START, "generate")
    g.add_edge("generate", "critique")
    g.add_conditional_edges("critique", after_critique, ["refine", "finalize"])
    g.add_edge("refine", "critique")
    g.add_edge("finalize", END)
    compiled = g.compile(name=GRAPH, checkpointer=checkpointer).with_config(recursion_limit=RECURSION_LIMIT)
    return bind_context(compiled, GRAPH, ctx)


graph = build()
