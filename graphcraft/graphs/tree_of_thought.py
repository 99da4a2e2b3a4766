"""Tree-of-Thought: search over partial reasoning paths with scored, pruned thoughts (BFS/beam).

expand -> evaluate -> (expand ...) -> answer

At each depth every path in the frontier proposes `breadth` next thoughts; a scorer rates each
candidate 0-10 and flags complete solutions; the best `beam` candidates scoring at least
`prune_below` survive. Search stops at a solution, at `max_depth`, when every candidate was
pruned, at the LLM/token budget or the wall-clock bound; the answer is written from the best
path found (without a further model call once a budget or the time is spent).

A structured call that still fails after its repairs is not a pruned thought: when no thought
could be proposed ("no_thoughts") or none could be scored ("unscored"), the search stops with
that reason and the trace lists the failed calls and their errors. A model that cannot be
reached raises its ModelError.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from graphcraft.chains.chain_of_thought import extract_final_answer
from graphcraft.config import Settings
from graphcraft.models import invoke_llm, message_text, require_chat_model, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import Bounds, make_trace, start_clock

DESCRIPTION = (
    "Tree-of-Thought: beam search over reasoning steps with bounded breadth/depth, scored thoughts and pruning."
)


THOUGHT_CHARS = 200  # limits in the schemas keep a grammar-constrained model within its token limit


class Thoughts(BaseModel):
    """Distinct candidate next steps of reasoning."""

    thoughts: list[Annotated[str, Field(max_length=THOUGHT_CHARS)]]


class ThoughtScore(BaseModel):
    index: int = Field(description="1-based index of the candidate")
    score: float = Field(
        ge=0,
        le=10,
        description="promise of this path: 0 dead end, 10 solves the problem",
        json_schema_extra={"enum": list(range(11))},
    )  # whole scores: a grammar has no numeric range
    is_solution: bool = Field(default=False, description="true if the path already gives the final answer")


class Evaluation(BaseModel):
    """Scores for the candidate thoughts."""

    scores: list[ThoughtScore]


class ToTState(TypedDict, total=False):
    question: str
    frontier: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    best: dict[str, Any]
    depth: int
    started_at: float
    solved: bool
    failures: Annotated[list[dict[str, Any]], lambda a, b: (a or []) + (b or [])]  # structured calls that fell back
    usage: Annotated[Usage, add_usage]
    log: Annotated[list[dict[str, Any]], lambda a, b: (a or []) + (b or [])]
    answer: str
    sources: list[dict[str, Any]]
    trace: dict[str, Any]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    breadth: int = 3,
    beam: int = 2,
    max_depth: int = 3,
    prune_below: float = 3.0,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    checkpointer: Any = None,
):
    """Compile the Tree-of-Thought graph (breadth thoughts per path, beam paths kept per depth)."""
    bounds = Bounds.from_settings(
        settings, max_iterations=max_depth, max_llm_calls=max_llm_calls, token_budget=token_budget
    )
    repairs = settings.max_structured_repairs if settings else 2
    # As many thoughts as asked for, as many scores as there can be candidates.
    thoughts_schema = create_model(
        "Thoughts",
        __base__=Thoughts,
        __doc__=Thoughts.__doc__,
        thoughts=(Thoughts.model_fields["thoughts"].annotation, Field(min_length=1, max_length=breadth)),
    )
    indexed = create_model(
        "ThoughtScore",
        __base__=ThoughtScore,
        index=(
            int,
            Field(
                description="1-based index of the candidate",
                json_schema_extra={"enum": list(range(1, breadth * beam + 1))},
            ),
        ),
    )
    evaluation_schema = create_model(
        "Evaluation",
        __base__=Evaluation,
        __doc__=Evaluation.__doc__,
        scores=(list[indexed], Field(max_length=breadth * beam)),  # type: ignore[valid-type]  # a model built at runtime
    )

    def llm() -> BaseChatModel:
        return require_chat_model(model, "the tree_of_thought graph", settings)

    def expand(state: ToTState) -> dict:
        clock = start_clock() if not state.get("depth") else {}  # the first expansion starts the run's clock
        frontier = state.get("frontier") or [{"path": [], "score": 0.0}]
        candidates, usage, failures = [], empty_usage(), []
        for parent in frontier:
            if bounds.reached({**state, **clock, "usage": add_usage(state.get("usage"), usage)}):
                break
            prompt = (
                f"Problem: {state['question']}\n\nReasoning so far:\n{_render(parent['path'])}\n\n"
                f"Propose {breadth} different possible next steps (one or two sentences each). "
                "If the reasoning can be finished now, one proposal should state the final answer."
            )
            result = structured_call(
                llm(),
                thoughts_schema,
                [SystemMessage("You explore alternative lines of reasoning."), HumanMessage(prompt)],
                fallback=Thoughts(thoughts=[]),
                max_repairs=repairs,
            )
            usage = add_usage(usage, result.usage)
            if result.fallback:
                failures.append(_failure("expand", state.get("depth", 0) + 1, result.errors))
            for thought in list(dict.fromkeys(t.strip() for t in result.value.thoughts if t.strip()))[:breadth]:
                candidates.append({"path": parent["path"] + [thought], "score": 0.0})
        return {
            **clock,
            "candidates": candidates,
            "depth": state.get("depth", 0) + 1,
            "usage": usage,
            "failures": failures,
        }

    def evaluate(state: ToTState) -> dict:
        """Score all candidates, prune the weak ones, keep the best `beam` as the next frontier."""
        candidates = state.get("candidates", [])
        usage, failures, scored = empty_usage(), [], False
        if candidates and not bounds.reached(state):
            listing = "\n\n".join(f"Candidate {i}:\n{_render(c['path'])}" for i, c in enumerate(candidates, 1))
            prompt = (
                f"Problem: {state['question']}\n\n{listing}\n\nRate every candidate reasoning path from 0 to 10 "
                "for how likely it leads to a correct answer, and flag paths that already reach a correct final answer."
            )
            result = structured_call(
                llm(),
                evaluation_schema,
                [SystemMessage("You evaluate reasoning paths critically."), HumanMessage(prompt)],
                fallback=Evaluation(scores=[]),
                max_repairs=repairs,
            )
            usage, scored = result.usage, not result.fallback
            if result.fallback:
                failures.append(_failure("evaluate", state.get("depth", 0), result.errors))
            for s in result.value.scores:
                if 1 <= s.index <= len(candidates):
                    candidates[s.index - 1] = {
                        **candidates[s.index - 1],
                        "score": s.score,
                        "is_solution": s.is_solution,
                    }
        ranked = sorted(candidates, key=lambda c: -c["score"])
        kept = [c for c in ranked if c["score"] >= prune_below][:beam]
        best = state.get("best") or {"path": [], "score": -1.0}
        if ranked and ranked[0]["score"] >= best["score"]:  # ties go to the deeper path
            best = ranked[0]
        solved = any(c.get("is_solution") for c in kept)
        if solved:
            best = next(c for c in kept if c.get("is_solution"))
        if candidates and not scored:  # unscored candidates were not judged weak: nothing is pruned
            kept = []
        return {
            "frontier": kept,
            "best": best,
            "solved": solved,
            "usage": usage,
            "failures": failures,
            "log": [
                {
                    "depth": state.get("depth", 0),
                    "candidates": len(candidates),
                    "kept": len(kept),
                    "scored": scored,
                    "pruned": len(candidates) - len(kept) if scored else 0,
                    "scores": [c["score"] for c in ranked],
                }
            ],
        }

    def should_continue(state: ToTState) -> str:
        if state.get("solved") or not state.get("frontier"):
            return "answer"
        return "answer" if bounds.reached(state, state.get("depth", 0)) else "expand"

    def answer(state: ToTState) -> dict:
        best = state.get("best") or {"path": [], "score": 0.0}
        usage = empty_usage()
        levels = state.get("log", [])
        spent = bounds.reached(state)
        reason = _stop_reason(state, levels, spent)
        if not best["path"]:
            text = f"No answer: the search stopped ({reason}) before any reasoning path was found."
        elif spent:  # no budget or time left for one more call: the best path's last step is the answer
            text = extract_final_answer(best["path"][-1]) or best["path"][-1]
        else:
            reply, usage = invoke_llm(
                llm(),
                [
                    SystemMessage(
                        "Give the final answer to the problem using the reasoning path. End with 'Answer: <answer>'."
                    ),
                    HumanMessage(f"Problem: {state['question']}\n\nReasoning path:\n{_render(best['path'])}"),
                ],
            )
            text = extract_final_answer(message_text(reply)) or message_text(reply)
        total = add_usage(state.get("usage"), usage)
        trace = make_trace(
            "tree_of_thought",
            total,
            state.get("depth", 0),
            stop_reason=reason,
            breadth=breadth,
            beam=beam,
            max_depth=max_depth,
            prune_below=prune_below,
            best_path=best["path"],
            best_score=best["score"],
            levels=levels,
            pruned=sum(level["pruned"] for level in levels),
            structured_failures=state.get("failures", []),
            bounds=bounds.as_dict(),
        )
        return {"answer": text, "sources": [], "usage": usage, "trace": trace}

    def _stop_reason(state: ToTState, levels: list[dict[str, Any]], spent: str | None) -> str:
        if state.get("solved"):
            return "solution_found"
        if state.get("frontier"):
            return "max_depth" if state.get("depth", 0) >= max_depth else (spent or "stopped")
        last = levels[-1] if levels else {"candidates": 0, "scored": False}
        if not last["candidates"]:
            return spent or "no_thoughts"  # nothing was proposed: a budget ran out or every expansion failed
        return "all_pruned" if last["scored"] else (spent or "unscored")

    g = StateGraph(ToTState)
    g.add_node("expand", expand)
    g.add_node("evaluate", evaluate)
    g.add_node("answer", answer)
    g.add_edge(START, "expand")
    g.add_edge("expand", "evaluate")
    g.add_conditional_edges("evaluate", should_continue, ["expand", "answer"])
    g.add_edge("answer", END)
    return g.compile(checkpointer=checkpointer).with_config(recursion_limit=2 * max_depth + 20)


def _failure(node: str, depth: int, errors: list[str]) -> dict[str, Any]:
    """A structured call that fell back after its repairs: where, and its last errors."""
    return {"node": node, "depth": depth, "errors": errors[-2:]}


def _render(path: list[str]) -> str:
    return "\n".join(f"{i}. {step}" for i, step in enumerate(path, 1)) or "(nothing yet)"


graph = build()
