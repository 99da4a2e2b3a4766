"""Tree-of-Thought: search over partial reasoning paths with scored, pruned thoughts (BFS/beam).

expand -> evaluate -> (expand ...) -> answer

At each depth every path in the frontier proposes `breadth` next thoughts; a scorer rates each
candidate 0-10 and flags complete solutions; the best `beam` candidates scoring at least
`prune_below` survive. Search stops at a solution, at `max_depth`, when every candidate was
pruned, or at the LLM/token budget; the answer is written from the best path found.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from graphcraft.chains.chain_of_thought import extract_final_answer
from graphcraft.config import Settings
from graphcraft.models import invoke_llm, message_text, require_chat_model, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import Bounds, make_trace

DESCRIPTION = "Tree-of-Thought: beam search over reasoning steps with bounded breadth/depth, scored thoughts and pruning."


class Thoughts(BaseModel):
    """Distinct candidate next steps of reasoning."""

    thoughts: list[str]


class ThoughtScore(BaseModel):
    index: int = Field(description="1-based index of the candidate")
    score: float = Field(ge=0, le=10, description="promise of this path: 0 dead end, 10 solves the problem")
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
    solved: bool
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
    bounds = Bounds.from_settings(settings, max_iterations=max_depth, max_llm_calls=max_llm_calls, token_budget=token_budget)
    repairs = settings.max_structured_repairs if settings else 2

    def llm() -> BaseChatModel:
        return require_chat_model(model, "the tree_of_thought graph", settings)

    def expand(state: ToTState) -> dict:
        frontier = state.get("frontier") or [{"path": [], "score": 0.0}]
        candidates, usage = [], empty_usage()
        for parent in frontier:
            if bounds.exhausted(add_usage(state.get("usage"), usage)):
                break
            prompt = (f"Problem: {state['question']}\n\nReasoning so far:\n{_render(parent['path'])}\n\n"
                      f"Propose {breadth} different possible next steps (one or two sentences each). "
                      "If the reasoning can be finished now, one proposal should state the final answer.")
            result = structured_call(llm(), Thoughts, [SystemMessage("You explore alternative lines of reasoning."),
                                                       HumanMessage(prompt)], fallback=Thoughts(thoughts=[]), max_repairs=repairs)
            usage = add_usage(usage, result.usage)
            for thought in list(dict.fromkeys(t.strip() for t in result.value.thoughts if t.strip()))[:breadth]:
                candidates.append({"path": parent["path"] + [thought], "score": 0.0})
        return {"candidates": candidates, "depth": state.get("depth", 0) + 1, "usage": usage}

    def evaluate(state: ToTState) -> dict:
        """Score all candidates, prune the weak ones, keep the best `beam` as the next frontier."""
        candidates = state.get("candidates", [])
        usage = empty_usage()
        if candidates and not bounds.exhausted(state.get("usage")):
            listing = "\n\n".join(f"Candidate {i}:\n{_render(c['path'])}" for i, c in enumerate(candidates, 1))
            prompt = (f"Problem: {state['question']}\n\n{listing}\n\nRate every candidate reasoning path from 0 to 10 "
                      "for how likely it leads to a correct answer, and flag paths that already reach a correct final answer.")
            result = structured_call(llm(), Evaluation, [SystemMessage("You evaluate reasoning paths critically."),
                                                         HumanMessage(prompt)], fallback=Evaluation(scores=[]), max_repairs=repairs)
            usage = result.usage
            for s in result.value.scores:
                if 1 <= s.index <= len(candidates):
                    candidates[s.index - 1] = {**candidates[s.index - 1], "score": s.score, "is_solution": s.is_solution}
        ranked = sorted(candidates, key=lambda c: -c["score"])
        kept = [c for c in ranked if c["score"] >= prune_below][:beam]
        best = state.get("best") or {"path": [], "score": -1.0}
        if ranked and ranked[0]["score"] >= best["score"]:  # ties go to the deeper path
            best = ranked[0]
        solved = any(c.get("is_solution") for c in kept)
        if solved:
            best = next(c for c in kept if c.get("is_solution"))
        return {"frontier": kept, "best": best, "solved": solved, "usage": usage,
                "log": [{"depth": state.get("depth", 0), "candidates": len(candidates), "kept": len(kept),
                         "pruned": len(candidates) - len(kept), "scores": [c["score"] for c in ranked]}]}

    def should_continue(state: ToTState) -> str:
        if state.get("solved") or not state.get("frontier"):
            return "answer"
        return "answer" if bounds.exhausted(state.get("usage"), state.get("depth", 0)) else "expand"

    def answer(state: ToTState) -> dict:
        best = state.get("best") or {"path": [], "score": 0.0}
        usage = empty_usage()
        if bounds.exhausted(state.get("usage")):
            text = best["path"][-1] if best["path"] else ""
        else:
            reply, usage = invoke_llm(llm(), [
                SystemMessage("Give the final answer to the problem using the reasoning path. End with 'Answer: <answer>'."),
                HumanMessage(f"Problem: {state['question']}\n\nReasoning path:\n{_render(best['path'])}")])
            text = message_text(reply)
        if state.get("solved"):
            reason = "solution_found"
        elif not state.get("frontier"):
            reason = "all_pruned"
        else:
            reason = "max_depth" if state.get("depth", 0) >= max_depth else (bounds.exhausted(state.get("usage")) or "stopped")
        total = add_usage(state.get("usage"), usage)
        trace = make_trace("tree_of_thought", total, state.get("depth", 0), stop_reason=reason, breadth=breadth, beam=beam,
                           max_depth=max_depth, prune_below=prune_below, best_path=best["path"], best_score=best["score"],
                           levels=state.get("log", []), pruned=sum(level["pruned"] for level in state.get("log", [])))
        return {"answer": extract_final_answer(text) or text, "sources": [], "usage": usage, "trace": trace}

    g = StateGraph(ToTState)
    g.add_node("expand", expand)
    g.add_node("evaluate", evaluate)
    g.add_node("answer", answer)
    g.add_edge(START, "expand")
    g.add_edge("expand", "evaluate")
    g.add_conditional_edges("evaluate", should_continue, ["expand", "answer"])
    g.add_edge("answer", END)
    return g.compile(checkpointer=checkpointer).with_config(recursion_limit=2 * max_depth + 20)


def _render(path: list[str]) -> str:
    return "\n".join(f"{i}. {step}" for i, step in enumerate(path, 1)) or "(nothing yet)"


graph = build()
