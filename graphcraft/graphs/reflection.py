"""Reflection: generate a draft, critique it per criterion, refine, repeat (Self-Refine style).

generate -> critique -> (refine -> critique)* -> finalize

The critic returns a 0-10 score per criterion with feedback (structured output). The loop ends
when the mean score reaches the threshold or a bound is hit (iterations, LLM calls, tokens);
the answer is the best-scored draft, not merely the last one. The wall-clock bound
(Settings.max_seconds) is checked with the others, so a slow model ends with its best draft.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from graphcraft.config import Settings
from graphcraft.models import invoke_llm, message_text, require_chat_model, structured_call
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.bounds import Bounds, make_trace, start_clock

DESCRIPTION = (
    "Self-refine: generate, critique with per-criterion scores, refine until a threshold or budget; keeps the "
    "best draft."
)
DEFAULT_CRITERIA = ("correctness", "completeness", "clarity")


FEEDBACK_CHARS = 120  # limits in the schema keep a grammar-constrained critic within its token limit


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


class ReflectionState(TypedDict, total=False):
    question: str
    draft: str
    critique: dict[str, Any]
    score: float
    best_draft: str
    best_score: float
    iterations: int
    started_at: float
    history: Annotated[list[dict[str, Any]], lambda a, b: (a or []) + (b or [])]
    usage: Annotated[Usage, add_usage]
    stop_reason: str
    answer: str
    sources: list[dict[str, Any]]
    trace: dict[str, Any]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    criteria: tuple[str, ...] | list[str] = DEFAULT_CRITERIA,
    threshold: float = 8.0,
    max_iterations: int | None = None,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    checkpointer: Any = None,
):
    """Compile the reflection graph. `threshold` is the mean criterion score (0-10) that passes."""
    bounds = Bounds.from_settings(
        settings, max_iterations=max_iterations, max_llm_calls=max_llm_calls, token_budget=token_budget
    )
    criteria = tuple(criteria)
    schema = critique_schema(criteria)
    repairs = settings.max_structured_repairs if settings else 2

    def llm() -> BaseChatModel:
        return require_chat_model(model, "the reflection graph", settings)

    def generate(state: ReflectionState) -> dict:
        clock = start_clock()  # before the first model call: the run's time includes it
        reply, usage = invoke_llm(
            llm(),
            [
                SystemMessage("You are a careful expert. Answer the task fully and precisely."),
                HumanMessage(state["question"]),
            ],
        )
        return {**clock, "draft": message_text(reply), "iterations": 0, "usage": usage}

    def critique(state: ReflectionState) -> dict:
        prompt = (
            f"Task:\n{state['question']}\n\nDraft answer:\n{state['draft']}\n\n"
            f"Score the draft from 0 to 10 on each criterion: {', '.join(criteria)}. "
            "Be strict: 10 means nothing to improve. Give concrete feedback per criterion."
        )
        fallback = Critique(
            scores=[CriterionScore(criterion=c, score=0, feedback="no critique available") for c in criteria],
            summary="critique failed; draft kept unscored",
        )
        result = structured_call(
            llm(),
            schema,
            [SystemMessage("You are a demanding reviewer."), HumanMessage(prompt)],
            fallback=fallback,
            max_repairs=repairs,
        )
        per_criterion = _scores_by_criterion(result.value, criteria)
        score = round(sum(per_criterion.values()) / len(criteria), 3)
        iteration = state.get("iterations", 0) + 1
        update: dict[str, Any] = {
            "critique": {"scores": per_criterion, "feedback": _feedback(result.value), "summary": result.value.summary},
            "score": score,
            "iterations": iteration,
            "usage": result.usage,
            "history": [
                {"iteration": iteration, "score": score, "scores": per_criterion, "critique_fallback": result.fallback}
            ],
        }
        if score > state.get("best_score", -1.0):
            update["best_draft"], update["best_score"] = state["draft"], score
        return update

    def should_refine(state: ReflectionState) -> str:
        """Stop at the threshold or at the first bound reached; otherwise refine."""
        if state["score"] >= threshold:
            return "finalize"
        return "finalize" if bounds.reached(state, state.get("iterations", 0)) else "refine"

    def refine(state: ReflectionState) -> dict:
        prompt = (
            f"Task:\n{state['question']}\n\nCurrent draft:\n{state['draft']}\n\n"
            f"Reviewer feedback:\n{state['critique']['feedback']}\n\n"
            "Rewrite the draft to address every point. Return only the improved answer."
        )
        reply, usage = invoke_llm(
            llm(), [SystemMessage("You revise drafts using reviewer feedback."), HumanMessage(prompt)]
        )
        return {"draft": message_text(reply), "usage": usage}

    def finalize(state: ReflectionState) -> dict:
        if state["score"] >= threshold:
            reason = "threshold"
        else:
            reason = bounds.reached(state, state.get("iterations", 0)) or "unknown"
        trace = make_trace(
            "reflection",
            state.get("usage"),
            state.get("iterations", 0),
            stop_reason=reason,
            threshold=threshold,
            best_score=state.get("best_score"),
            final_score=state.get("score"),
            scores=[h["score"] for h in state.get("history", [])],
            kept=("best" if state.get("best_draft") != state.get("draft") else "last"),
            bounds=bounds.as_dict(),
            critique_fallbacks=sum(1 for h in state.get("history", []) if h["critique_fallback"]),
        )
        return {
            "answer": state.get("best_draft", state.get("draft", "")),
            "sources": [],
            "stop_reason": reason,
            "trace": trace,
        }

    g = StateGraph(ReflectionState)
    g.add_node("generate", generate)
    g.add_node("critique", critique)
    g.add_node("refine", refine)
    g.add_node("finalize", finalize)
    g.add_edge(START, "generate")
    g.add_edge("generate", "critique")
    g.add_conditional_edges("critique", should_refine, ["refine", "finalize"])
    g.add_edge("refine", "critique")
    g.add_edge("finalize", END)
    return g.compile(checkpointer=checkpointer).with_config(recursion_limit=2 * bounds.max_iterations + 20)


def _scores_by_criterion(critique: Critique, criteria: tuple[str, ...]) -> dict[str, float]:
    """One score per requested criterion; a criterion the critic skipped scores 0."""
    given = {s.criterion.strip().lower(): s.score for s in critique.scores}
    return {c: float(given.get(c.lower(), 0.0)) for c in criteria}


def _feedback(critique: Critique) -> str:
    lines = [f"- {s.criterion} ({s.score:g}/10): {s.feedback}" for s in critique.scores if s.feedback]
    if critique.summary:
        lines.append(f"Most important: {critique.summary}")
    return "\n".join(lines)


graph = build()
