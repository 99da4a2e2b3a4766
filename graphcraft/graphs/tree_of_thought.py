"""Tree-of-Thought: breadth-first search over partial reasoning paths with scored, pruned thoughts
(Yao et al. 2023, arXiv:2305.10601, ToT-BFS).

    root -> expand -> evaluate --a solution, nothing kept, max_depth or a budget--> answer
              ^          |
              +----------+--otherwise (the next depth)

The search starts from the problem itself (the root: one empty path). At each depth every path
in the frontier proposes `breadth` next thoughts; a scorer rates each candidate 0-10 and flags
complete solutions; the best `beam` candidates scoring at least `prune_below` survive. Search
stops at a solution, at `max_depth`, when every candidate was pruned, at the LLM/token budget or
the wall-clock bound; the answer is written from the best path found (without a further model
call once a budget or the time is spent).

A structured call that still fails after its repairs is not a pruned thought: when no thought
could be proposed ("no_thoughts") or none could be scored ("unscored"), the search stops with
that outcome and the trace lists the failed calls and their errors. A model that cannot be
reached raises its ModelError.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, create_model

from graphcraft.chains.chain_of_thought import extract_final_answer
from graphcraft.config import Settings, settings_from
from graphcraft.models import StructuredResult, invoke_llm, message_text, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import fresh_run
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "tree_of_thought"
DESCRIPTION = (
    "Tree-of-Thought: beam search over reasoning steps with bounded breadth/depth, scored thoughts and pruning."
)
BREADTH = 3  # thoughts proposed per path
BEAM = 2  # paths kept per depth
MAX_DEPTH = 3
PRUNE_BELOW = 3.0  # a candidate scoring less is dropped
RECURSION_LIMIT = 1_000  # a last resort only: the search is bounded by max_depth and the run's budgets
THOUGHT_CHARS = 200  # limits in the schemas keep a grammar-constrained model within its token limit

EXPAND_SYSTEM = "You explore alternative lines of reasoning."
EXPAND_PROMPT = (
    "Problem: {question}\n\nReasoning so far:\n{path}\n\n"
    "Propose {breadth} different possible next steps (one or two sentences each). "
    "If the reasoning can be finished now, one proposal should state the final answer."
)
EVALUATE_SYSTEM = "You evaluate reasoning paths critically."
EVALUATE_PROMPT = (
    "Problem: {question}\n\n{listing}\n\nRate every candidate reasoning path from 0 to 10 "
    "for how likely it leads to a correct answer, and flag paths that already reach a correct final answer."
)
ANSWER_SYSTEM = "Give the final answer to the problem using the reasoning path. End with 'Answer: <answer>'."
ANSWER_PROMPT = "Problem: {question}\n\nReasoning path:\n{path}"
NO_ANSWER = "No answer: the search stopped ({why}) before any reasoning path was found."


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


@lru_cache(maxsize=16)
def thoughts_schema(breadth: int) -> type[Thoughts]:
    """`Thoughts` with as many thoughts as asked for (a grammar-constrained model stops there)."""
    return create_model(
        "Thoughts",
        __base__=Thoughts,
        __doc__=Thoughts.__doc__,
        thoughts=(Thoughts.model_fields["thoughts"].annotation, Field(min_length=1, max_length=breadth)),
    )


@lru_cache(maxsize=16)
def evaluation_schema(candidates: int) -> type[Evaluation]:
    """`Evaluation` with as many scores as there can be candidates, each naming one of them."""
    index = Field(
        description="1-based index of the candidate", json_schema_extra={"enum": list(range(1, candidates + 1))}
    )
    indexed = create_model("ThoughtScore", __base__=ThoughtScore, index=(int, index))
    return create_model(
        "Evaluation",
        __base__=Evaluation,
        __doc__=Evaluation.__doc__,
        scores=(list[indexed], Field(max_length=candidates)),  # type: ignore[valid-type]  # a model built at runtime
    )


class State(InputState, OutputState, total=False):
    frontier: list[dict[str, Any]]  # the paths kept at this depth: {"path": [thought, ...], "score"}
    candidates: list[dict[str, Any]]  # the paths proposed at this depth, before they are scored
    best: dict[str, Any]  # the best-scored path so far
    depth: int  # bounded by max_depth
    solved: bool
    failures: list[dict[str, Any]]  # structured calls that fell back after their repairs
    started_at: float  # the run's wall clock (runtime.bounds)
    # Plain channels (no reducer), reset by `root`: a thread that is asked a second question
    # (Studio, LangGraph Server) starts a fresh search instead of continuing the previous one.
    usage: Usage
    steps: list[dict[str, Any]]


def score_candidates(
    state: State, ctx: Context
) -> tuple[list[dict[str, Any]], bool, StructuredResult[Evaluation] | None]:
    """(the candidates with their scores, whether they were scored, the structured call's result or None
    when there was nothing to score or no budget left to score it)."""
    candidates = list(state.get("candidates", []))
    if not candidates or ctx.bounds.reached(state):
        return candidates, False, None
    listing = "\n\n".join(f"Candidate {i}:\n{render(c['path'])}" for i, c in enumerate(candidates, 1))
    result = structured_call(
        ctx.require_model("the tree_of_thought graph"),
        evaluation_schema(ctx.option("breadth", BREADTH) * ctx.option("beam", BEAM)),
        [
            SystemMessage(EVALUATE_SYSTEM),
            HumanMessage(EVALUATE_PROMPT.format(question=state["question"], listing=listing)),
        ],
        fallback=Evaluation(scores=[]),
        max_repairs=ctx.settings.max_structured_repairs,
    )
    for s in result.value.scores:
        if 1 <= s.index <= len(candidates):
            candidates[s.index - 1] = {**candidates[s.index - 1], "score": s.score, "is_solution": s.is_solution}
    return candidates, not result.fallback, result


def failure(node: str, depth: int, errors: list[str]) -> dict[str, Any]:
    """A structured call that fell back after its repairs: where, and its last errors."""
    return {"node": node, "depth": depth, "errors": errors[-2:]}


def render(path: list[str]) -> str:
    """A reasoning path as a numbered list for the prompts."""
    return "\n".join(f"{i}. {step}" for i, step in enumerate(path, 1)) or "(nothing yet)"


# ---------------------------------------------------------------------- nodes (the paper's steps)
def root(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Start the search from the problem itself: one empty path at depth 0, a fresh run and its clock."""
    return fresh_run(
        frontier=[{"path": [], "score": 0.0}],
        candidates=[],
        best={"path": [], "score": -1.0},
        depth=0,
        solved=False,
        failures=[],
        steps=[{"step": "root"}],
    )


def expand(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Thought generation: every path in the frontier proposes `breadth` next steps (while the budget lasts)."""
    ctx = context(config, GRAPH)
    breadth = ctx.option("breadth", BREADTH)
    depth = state.get("depth", 0) + 1
    candidates: list[dict[str, Any]] = []
    usage, failures = state.get("usage") or empty_usage(), list(state.get("failures", []))
    for parent in state.get("frontier", []):
        if ctx.bounds.reached({**state, "usage": usage}):
            break
        result = structured_call(
            ctx.require_model("the tree_of_thought graph"),
            thoughts_schema(breadth),
            [
                SystemMessage(EXPAND_SYSTEM),
                HumanMessage(
                    EXPAND_PROMPT.format(question=state["question"], path=render(parent["path"]), breadth=breadth)
                ),
            ],
            fallback=Thoughts(thoughts=[]),
            max_repairs=ctx.settings.max_structured_repairs,
        )
        usage = add_usage(usage, result.usage)
        if result.fallback:
            failures.append(failure("expand", depth, result.errors))
        for thought in list(dict.fromkeys(t.strip() for t in result.value.thoughts if t.strip()))[:breadth]:
            candidates.append({"path": parent["path"] + [thought], "score": 0.0})
    step = {"step": "expand", "depth": depth, "paths": len(state.get("frontier", [])), "candidates": len(candidates)}
    return {
        "candidates": candidates,
        "depth": depth,
        "usage": usage,
        "failures": failures,
        "steps": state.get("steps", []) + [step],
    }


def evaluate(state: State, config: RunnableConfig) -> dict[str, Any]:
    """State evaluation: score all candidates, prune the weak ones, keep the best `beam` as the next frontier."""
    ctx = context(config, GRAPH)
    candidates, scored, result = score_candidates(state, ctx)
    ranked = sorted(candidates, key=lambda c: -c["score"])
    kept = [c for c in ranked if c["score"] >= ctx.option("prune_below", PRUNE_BELOW)][: ctx.option("beam", BEAM)]
    best = state.get("best") or {"path": [], "score": -1.0}
    if ranked and ranked[0]["score"] >= best["score"]:  # ties go to the deeper path
        best = ranked[0]
    solved = any(c.get("is_solution") for c in kept)
    if solved:
        best = next(c for c in kept if c.get("is_solution"))
    if candidates and not scored:  # unscored candidates were not judged weak: nothing is pruned
        kept = []
    failures = list(state.get("failures", []))
    if result is not None and result.fallback:
        failures.append(failure("evaluate", state.get("depth", 0), result.errors))
    level = {
        "depth": state.get("depth", 0),
        "candidates": len(candidates),
        "kept": len(kept),
        "scored": scored,
        "pruned": len(candidates) - len(kept) if scored else 0,
        "scores": [c["score"] for c in ranked],
    }
    return {
        "frontier": kept,
        "best": best,
        "solved": solved,
        "usage": add_usage(state.get("usage"), result.usage if result is not None else None),
        "failures": failures,
        "steps": state.get("steps", []) + [{"step": "evaluate", **level}],
    }


def answer(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Write the answer from the best path found (no further call once a budget or the time is spent)."""
    ctx = context(config, GRAPH)
    best = state.get("best") or {"path": [], "score": 0.0}
    action, reason = outcome(state, ctx)
    usage: Usage | None = None
    if not best["path"]:
        text, strategy = NO_ANSWER.format(why=reason or action), "none"
    elif ctx.bounds.reached(state):  # no budget or time left for one more call: the last step is the answer
        text, strategy = extract_final_answer(best["path"][-1]) or best["path"][-1], "best_path"
    else:
        prompt = ANSWER_PROMPT.format(question=state["question"], path=render(best["path"]))
        reply, usage = invoke_llm(
            ctx.require_model("the tree_of_thought graph"), [SystemMessage(ANSWER_SYSTEM), HumanMessage(prompt)]
        )
        text, strategy = extract_final_answer(message_text(reply)) or message_text(reply), "llm"
    total = add_usage(state.get("usage"), usage)
    steps = state.get("steps", []) + [{"step": "answer", "strategy": strategy}]
    levels = [{k: v for k, v in s.items() if k != "step"} for s in steps if s["step"] == "evaluate"]
    trace = make_trace(
        GRAPH,
        state,
        action=action,
        stop_reason=reason,
        iterations=state.get("depth", 0),
        steps=steps,
        usage=total,
        breadth=ctx.option("breadth", BREADTH),
        beam=ctx.option("beam", BEAM),
        max_depth=ctx.option("max_depth", MAX_DEPTH),
        prune_below=ctx.option("prune_below", PRUNE_BELOW),
        best_path=best["path"],
        best_score=best["score"],
        levels=levels,
        pruned=sum(level["pruned"] for level in levels),
        structured_failures=state.get("failures", []),
        bounds=ctx.bounds.as_dict(),
    )
    return {"answer": text, "sources": [], "usage": total, "trace": trace, "steps": steps}


# ---------------------------------------------------------------------- routing (the search is bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that ends the search: max_depth (the graph's own) or the run's LLM-call, token or time budget."""
    if state.get("depth", 0) >= ctx.option("max_depth", MAX_DEPTH):
        return "max_depth"
    return ctx.bounds.reached(state)


def outcome(state: State, ctx: Context) -> tuple[str, str | None]:
    """(action, stop_reason): how the search ended, and the bound that ended it when one did."""
    if state.get("solved"):
        return "solution_found", None
    if state.get("frontier"):
        return "stopped", stop_reason(state, ctx)
    last: dict[str, Any] = next((s for s in reversed(state.get("steps", [])) if s["step"] == "evaluate"), {})
    if last.get("scored"):
        return "all_pruned", None
    spent = ctx.bounds.reached(state)  # a spent budget explains a level with no thoughts or no scores
    if spent:
        return "stopped", spent
    return ("unscored" if last.get("candidates") else "no_thoughts"), None


def after_evaluate(state: State, config: RunnableConfig) -> str:
    """Answer at a solution, when nothing survived, or at a bound; otherwise search one level deeper."""
    if state.get("solved") or not state.get("frontier"):
        return "answer"
    return "answer" if stop_reason(state, context(config, GRAPH)) else "expand"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    breadth: int = BREADTH,
    beam: int = BEAM,
    max_depth: int = MAX_DEPTH,
    prune_below: float = PRUNE_BELOW,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the Tree-of-Thought graph.

    model: the chat model that proposes, scores and answers (None: the configured one).
    breadth thoughts per path, beam paths kept per depth, max_depth levels at most; a candidate
    scoring below prune_below is dropped. Each is also a per-run option (config["configurable"]).
    max_llm_calls / token_budget / max_seconds: Settings fields, given here or per run.
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh search).
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        options={"breadth": breadth, "beam": beam, "max_depth": max_depth, "prune_below": float(prune_below)},
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (root, expand, evaluate, answer):
        g.add_node(node.__name__, node)
    g.add_edge(START, "root")
    g.add_edge("root", "expand")
    g.add_edge("expand", "evaluate")
    g.add_conditional_edges("evaluate", after_evaluate, ["expand", "answer"])
    g.add_edge("answer", END)
    compiled = g.compile(name=GRAPH, checkpointer=checkpointer).with_config(recursion_limit=RECURSION_LIMIT)
    return bind_context(compiled, GRAPH, ctx)


graph = build()
