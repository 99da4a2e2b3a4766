"""Planning: decompose a goal into phases of steps with dependencies and success criteria,
execute them in order, verify each result, take the step's contingency or replan on failure
(a hierarchical task decomposition, as in HTN planning, whose every step is checked and repaired).

    plan -> select_step --a step is ready--> execute -> verify --passed--------------------> select_step
                                                          |--failed, has a contingency--> contingency -> verify
                                                          |--failed, within max_replans--> replan -> select_step
                                                          +--failed, past the bounds-----> give_up -> select_step
            select_step --nothing ready, or a budget--> finalize
    (with approve_plan: plan -> review_plan -> select_step, see below)

Each step carries a success criterion and an optional contingency (an alternative action).
A failed verification first tries the contingency once, then replans the remaining work
(bounded by max_replans); past that bound the step is recorded as failed and independent steps
continue. The run's LLM-call, token and wall-clock budgets (Settings) are checked in every
routing function; a run stopped by one reports the progress of every step instead of a summary.

With the option approve_plan (a checkpointer and a thread are needed), `review_plan` pauses the
run after planning and shows a person the plan: they approve it, edit it (the edited plan is shown
again, at most max_iterations edits, then run) or reject it with a reason, which ends the run.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, create_model

from graphcraft.chains.approval import (
    Decision,
    after_plan_review,
    ask_plan_review,
    rejection_answer,
    resume_clock,
)
from graphcraft.chains.plans import unique_id, write_up
from graphcraft.chains.react import run_step
from graphcraft.config import Settings, settings_from
from graphcraft.models import StructuredResult, structured_call
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.bounds import fresh_run, start_clock
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace

GRAPH = "planning"
DESCRIPTION = (
    "Hierarchical planning: phases and steps with dependencies, per-step verification against success criteria, "
    "contingencies and bounded replanning."
)
WHAT = "the planning graph"  # how errors name this graph (e.g. when no chat model is configured)

PLANNER_SYSTEM = "You are an expert project planner."
PLAN_PROMPT = (
    "Goal: {goal}\n\nBreak the goal into phases (e.g. research, build, check) of concrete steps, at most "
    "{max_steps} steps in all. Give every step a success criterion that a reviewer can check from its result, "
    "its dependencies, and a contingency when a sensible alternative exists. Keep every description, criterion "
    "and contingency to one short sentence."
)
REPLAN_PROMPT = (
    "\n\nAlready done (reuse their ids in depends_on): {done}\nStep {id} ('{description}') failed: {reason}."
    "\nPlan only the remaining work, with a different approach for the failed step. Use new ids."
)
EXECUTOR_SYSTEM = "You execute one step of a plan and report its concrete result."
VERIFIER_SYSTEM = "You are a strict verifier."
REPORTER_SYSTEM = "Report the outcome of the plan: the result for the goal, then any step that failed and why."

# The graph's own limits (build options, and per-run options in config["configurable"]).
MAX_STEPS, MAX_REPLANS = 12, 2

# Length limits are part of the JSON schemas, so a grammar-constrained model cannot run past its
# token limit in the middle of a plan; other providers are asked to shorten (a repair).
ID_CHARS, NAME_CHARS, TEXT_CHARS = 16, 60, 200


class PlanStep(BaseModel):
    id: str = Field(max_length=ID_CHARS, description="short unique id, e.g. p1s1")
    description: str = Field(max_length=TEXT_CHARS)
    depends_on: list[Annotated[str, Field(max_length=ID_CHARS)]] = Field(default_factory=list, max_length=8)
    success_criterion: str = Field(max_length=TEXT_CHARS, description="how to tell the step succeeded")
    contingency: str = Field(
        default="", max_length=TEXT_CHARS, description="alternative action if the step fails; empty if none"
    )


class Phase(BaseModel):
    name: str = Field(max_length=NAME_CHARS)
    steps: list[PlanStep] = Field(min_length=1)


class PhasedPlan(BaseModel):
    """A goal broken into ordered phases of steps."""

    phases: list[Phase]


class Verdict(BaseModel):
    """Whether a step's result meets its success criterion."""

    passed: bool
    reason: str = Field(default="", max_length=TEXT_CHARS)


class State(InputState, OutputState, total=False):
    plan_steps: list[dict[str, Any]]  # the plan in phase order: id, phase, description, depends_on, criterion ...
    status: dict[str, dict[str, Any]]  # step id -> done or failed, with its result
    current: str  # the step being executed ("" when none is ready)
    attempt: str  # primary or contingency
    result: str  # the current attempt's result
    verdict: dict[str, Any]
    replans: int  # bounded by max_replans
    started_at: float  # the run's wall clock (runtime.bounds)
    asked_at: float  # when the plan was shown for approval: a person's time does not count against the run's
    plan_edits: int  # a person's edits of the plan; bounded by max_iterations
    approval: list[dict[str, Any]]  # the person's decisions, in order
    review_error: str  # why the last edited plan was refused (shown at the next review)
    # Plain channels (no reducer), reset by `plan`: each question on a thread is a fresh run.
    usage: Usage
    steps: list[dict]


# ---------------------------------------------------------------------- nodes (the method's steps)
def plan(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Decompose the goal into phases of steps with dependencies, success criteria and contingencies."""
    ctx = context(config, GRAPH)
    clock = start_clock()  # before the first model call: the run's time includes it
    steps, usage, outcome = draft_plan(ctx, state["question"])
    return fresh_run(
        **clock,
        plan_steps=steps,
        status={},
        replans=0,
        asked_at=time.time(),
        plan_edits=0,
        approval=[],
        review_error="",
        usage=usage,
        steps=[{"step": "plan", "plan": [s["id"] for s in steps], **outcome}],
    )


def review_plan(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Show a person the plan (option approve_plan): approved, it runs; edited, the edited plan is shown
    again (at most max_iterations edits, then it runs); rejected, the run ends with the reason."""
    ctx = context(config, GRAPH)
    edits = state.get("plan_edits", 0)
    decision = ask_plan_review(GRAPH, state, ctx.settings.max_iterations)
    update: dict[str, Any] = {**resume_clock(state), "review_error": "", **edit_update(ctx, decision, edits)}
    record = {
        "kind": "plan",
        **decision.record(),
        **({"error": update["review_error"]} if update["review_error"] else {}),
    }
    approval = state.get("approval", []) + [record]
    steps = state.get("steps", []) + [{"step": "review_plan", **record}]
    if decision.action != "reject":
        return {**update, "approval": approval, "steps": steps}
    trace = make_trace(
        GRAPH,
        state,
        action="rejected",
        iterations=0,
        steps=steps,
        phases=phases_view(state["plan_steps"], {}),
        approval=approval,
        bounds=ctx.bounds.as_dict(),
    )
    answer = rejection_answer("the plan", decision.reason)
    return {**update, "answer": answer, "sources": [], "approval": approval, "steps": steps, "trace": trace}


def edit_update(ctx: Context, decision: Decision, edits: int) -> dict[str, Any]:
    """What an edit changes: the plan (steps given flat, each with its phase), or why it was refused."""
    if decision.action != "edit":
        return {}
    max_steps = ctx.option("max_steps", MAX_STEPS)
    try:
        phases: dict[str, list[dict[str, Any]]] = {}
        for step in decision.value:
            fields = {"success_criterion": step.get("description", ""), **step}
            phases.setdefault(str(step.get("phase") or "do"), []).append(fields)
        edited = plan_schema(max_steps).model_validate(
            {"phases": [{"name": name, "steps": steps} for name, steps in phases.items()]}
        )
    except (ValueError, TypeError, AttributeError) as exc:  # pydantic's ValidationError is a ValueError
        return {
            "plan_edits": edits + 1,
            "review_error": f"the edited plan was not used: {' '.join(str(exc).split())[:300]}",
        }
    return {"plan_edits": edits + 1, "plan_steps": flatten(edited, set(), max_steps)}


def select_step(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Select the first step, in phase order, whose dependencies all passed."""
    status = state.get("status", {})
    for step in state["plan_steps"]:
        if step["id"] not in status and all(status.get(d, {}).get("status") == "done" for d in step["depends_on"]):
            return {"current": step["id"], "attempt": "primary"}
    return {"current": ""}


def execute(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Execute the current step from the results of the completed ones (with the tools, if any)."""
    ctx = context(config, GRAPH)
    step = current(state)
    result, usage = carry_out(ctx, state, step["description"])
    return {
        "result": result,
        "usage": add_usage(state.get("usage"), usage),
        "steps": state.get("steps", []) + [{"step": "execute", "id": step["id"]}],
    }


def contingency(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Take the failed step's contingency: its alternative action, tried once."""
    ctx = context(config, GRAPH)
    step = current(state)
    result, usage = carry_out(ctx, state, f"{step['contingency']} (contingency for: {step['description']})")
    return {
        "result": result,
        "usage": add_usage(state.get("usage"), usage),
        "attempt": "contingency",
        "steps": state.get("steps", []) + [{"step": "contingency", "id": step["id"], "action": step["contingency"]}],
    }


def verify(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Verify the result against the step's success criterion; a passed step is done."""
    ctx = context(config, GRAPH)
    step = current(state)
    attempt = f"\nAttempt: contingency ({step['contingency']})" if state.get("attempt") == "contingency" else ""
    prompt = (
        f"Step: {step['description']}{attempt}\nSuccess criterion: {step['success_criterion']}\n\n"
        f"Result:\n{state['result']}\n\nDoes the result meet the criterion?"
    )
    result = structured_call(
        ctx.require_model(WHAT),
        Verdict,
        [SystemMessage(VERIFIER_SYSTEM), HumanMessage(prompt)],
        fallback=Verdict(passed=False, reason="verification failed"),
        max_repairs=ctx.settings.max_structured_repairs,
    )
    verdict = result.value
    taken = {"step": "verify", "id": step["id"], "attempt": state.get("attempt"), **verdict.model_dump()}
    update: dict[str, Any] = {
        "verdict": verdict.model_dump(),
        "usage": add_usage(state.get("usage"), result.usage),
        "steps": state.get("steps", []) + [{**taken, **structured_outcome(result)}],
    }
    if verdict.passed:
        done = {"status": "done", "result": state["result"], "attempt": state.get("attempt")}
        update["status"] = {**state.get("status", {}), step["id"]: done}
    return update


def replan(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Replan the remaining work with a different approach for the failed step; completed steps stay."""
    ctx = context(config, GRAPH)
    status, step, reason = state.get("status", {}), current(state), state["verdict"]["reason"]
    done = {k for k, v in status.items() if v["status"] == "done"}
    extra = REPLAN_PROMPT.format(
        done="; ".join(f"{k}: {status[k]['result'][:200]}" for k in sorted(done)) or "nothing",
        id=step["id"],
        description=step["description"],
        reason=reason,
    )
    new, usage, outcome = draft_plan(ctx, state["question"], extra, done)
    taken = {"step": "replan", "after": step["id"], "reason": reason, "plan": [s["id"] for s in new], **outcome}
    return {
        "plan_steps": [s for s in state["plan_steps"] if s["id"] in done] + new,
        "replans": state.get("replans", 0) + 1,
        "usage": add_usage(state.get("usage"), usage),
        "steps": state.get("steps", []) + [taken],
    }


def give_up(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Record the step as failed, so that the steps that do not depend on it can still run."""
    step, reason = current(state), state["verdict"]["reason"]
    failed = {"status": "failed", "result": state.get("result", ""), "reason": reason}
    return {
        "status": {**state.get("status", {}), step["id"]: failed},
        "steps": state.get("steps", []) + [{"step": "give_up", "id": step["id"], "reason": reason}],
    }


def finalize(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Report the outcome of the plan or, when a budget ran out, the progress of every step."""
    ctx = context(config, GRAPH)
    status, steps = state.get("status", {}), state["plan_steps"]
    lines = "\n".join(
        f"[{s['phase']}] {s['id']} {s['description']}: "
        + (f"{status[s['id']]['status']} - {status[s['id']]['result'][:500]}" if s["id"] in status else "not run")
        for s in steps
    )
    complete = all(status.get(s["id"], {}).get("status") == "done" for s in steps)
    spent = ctx.bounds.reached(state)
    answer, action, usage = write_up(
        ctx.require_model(WHAT),
        [SystemMessage(REPORTER_SYSTEM), HumanMessage(f"Goal: {state['question']}\n\nSteps:\n{lines}")],
        complete=complete,
        spent=spent,
        stopped=f"Stopped ({spent}) before the plan was finished. Progress:\n{lines}",
    )
    taken = state.get("steps", []) + [{"step": "finalize", "action": action}]
    total = add_usage(state.get("usage"), usage)
    trace = make_trace(
        GRAPH,
        state,
        action=action,
        stop_reason=spent or (None if complete else stop_reason(state, ctx)),
        iterations=sum(1 for s in taken if s["step"] == "verify"),
        steps=taken,
        usage=total,
        replans=state.get("replans", 0),
        max_replans=ctx.option("max_replans", MAX_REPLANS),
        phases=phases_view(steps, status),
        contingencies=sum(1 for s in taken if s["step"] == "contingency"),
        failed_steps=[k for k, v in status.items() if v["status"] == "failed"],
        approval=state.get("approval", []),
        bounds=ctx.bounds.as_dict(),
    )
    return {"answer": answer, "sources": [], "usage": total, "steps": taken, "trace": trace}


# ---------------------------------------------------------------------- helpers
def draft_plan(
    ctx: Context, goal: str, extra: str = "", done: set[str] | None = None
) -> tuple[list[dict[str, Any]], Usage, dict[str, Any]]:
    """A phased plan of at most max_steps steps (`extra`: what a replan adds to the prompt), flattened."""
    max_steps = ctx.option("max_steps", MAX_STEPS)
    first = PlanStep(id="s1", description=goal[:TEXT_CHARS], success_criterion="the goal is achieved")
    result = structured_call(
        ctx.require_model(WHAT),
        plan_schema(max_steps),
        [SystemMessage(PLANNER_SYSTEM), HumanMessage(PLAN_PROMPT.format(goal=goal, max_steps=max_steps) + extra)],
        # A first plan falls back to the goal as one step; a replan to nothing more to do.
        fallback=PhasedPlan(phases=[Phase(name="do", steps=[first])]) if done is None else PhasedPlan(phases=[]),
        max_repairs=ctx.settings.max_structured_repairs,
    )
    return flatten(result.value, done or set(), max_steps), result.usage, structured_outcome(result)


def carry_out(ctx: Context, state: State, action: str) -> tuple[str, Usage]:
    """Ask the model to carry out `action` for the current step, given the completed steps' results."""
    step, status = current(state), state.get("status", {})
    done = "\n".join(
        f"- {s['id']}: {status[s['id']]['result'][:400]}"
        for s in state["plan_steps"]
        if status.get(s["id"], {}).get("status") == "done"
    )
    messages = [
        SystemMessage(EXECUTOR_SYSTEM),
        HumanMessage(
            f"Goal: {state['question']}\n\nCompleted steps:\n{done or '(none)'}\n\n"
            f"Step ({step['phase']}): {action}\nSuccess criterion: {step['success_criterion']}"
        ),
    ]
    run, _with_tools = run_step(ctx.require_model(WHAT), messages, ctx.option("tools") or [])
    return run.text, run.usage


def current(state: State) -> dict[str, Any]:
    """The step being executed."""
    return next(s for s in state["plan_steps"] if s["id"] == state["current"])


def structured_outcome(result: StructuredResult) -> dict[str, Any]:
    """How a structured call went, for the steps: a fallback carries the errors that caused it."""
    return {"fallback": True, "errors": result.errors[-2:]} if result.fallback else {"fallback": False}


def plan_schema(max_steps: int) -> type[PhasedPlan]:
    """`PhasedPlan` with at most `max_steps` phases and steps per phase (limits a grammar enforces)."""
    phase = create_model("Phase", __base__=Phase, steps=(list[PlanStep], Field(min_length=1, max_length=max_steps)))
    return create_model(
        "PhasedPlan",
        __base__=PhasedPlan,
        __doc__=PhasedPlan.__doc__,
        phases=(list[phase], Field(min_length=1, max_length=max_steps)),  # type: ignore[valid-type]  # a model built at runtime
    )


def flatten(plan: PhasedPlan, done: set[str], max_steps: int) -> list[dict[str, Any]]:
    """Steps in phase order with unique ids; dependencies only on earlier or completed steps (no cycles)."""
    out: list[dict[str, Any]] = []
    known = set(done)
    for phase in plan.phases:
        for step in phase.steps:
            if len(out) >= max_steps:
                return out
            sid = unique_id(step.id, known, len(out) + 1)
            out.append(
                {
                    "id": sid,
                    "phase": phase.name,
                    "description": step.description,
                    "depends_on": [d for d in dict.fromkeys(step.depends_on) if d in known],
                    "success_criterion": step.success_criterion,
                    "contingency": step.contingency,
                }
            )
            known.add(sid)
    return out


def phases_view(steps: list[dict[str, Any]], status: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's phases with the status of each step (done, failed, not_run), for the trace."""
    phases: dict[str, list] = {}
    for s in steps:
        phases.setdefault(s["phase"], []).append(
            {"id": s["id"], "status": status.get(s["id"], {}).get("status", "not_run")}
        )
    return [{"name": name, "steps": items} for name, items in phases.items()]


# ---------------------------------------------------------------------- routing (every loop bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that ends the run: its LLM calls, tokens or time, or max_replans once replanning is used up."""
    if reached := ctx.bounds.reached(state):
        return reached
    return "max_replans" if state.get("replans", 0) >= ctx.option("max_replans", MAX_REPLANS) else None


def after_plan(state: State, config: RunnableConfig) -> str:
    """A person reviews the plan first when the option approve_plan is on."""
    return "review_plan" if context(config, GRAPH).option("approve_plan", False) else "select_step"


def after_review(state: State, config: RunnableConfig) -> str:
    """Approved: run it. Rejected: end. Edited (or a refused edit): show it again while edits are left."""
    outcome = after_plan_review(state, context(config, GRAPH).settings.max_iterations)
    return {"reject": END, "again": "review_plan"}.get(outcome, "select_step")


def after_select(state: State, config: RunnableConfig) -> str:
    """Execute the selected step within the budgets; finish when none is ready."""
    return "execute" if state.get("current") and not context(config, GRAPH).bounds.reached(state) else "finalize"


def after_verify(state: State, config: RunnableConfig) -> str:
    """Passed: next step. Failed: the contingency once, then replan within bounds, else give up on the step."""
    ctx = context(config, GRAPH)
    if state["verdict"]["passed"]:
        return "select_step"
    if ctx.bounds.reached(state):
        return "give_up"
    if state.get("attempt") == "primary" and current(state).get("contingency"):
        return "contingency"
    return "give_up" if stop_reason(state, ctx) else "replan"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    tools: list[BaseTool] | None = None,
    max_steps: int = MAX_STEPS,
    max_replans: int = MAX_REPLANS,
    approve_plan: bool = False,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the planning graph.

    tools: available to step execution (optional). max_steps bounds the plan size, max_replans the replan loop.
    approve_plan: pause after planning for a person's approve / edit / reject (needs a checkpointer).
    options: Settings fields (max_llm_calls, token_budget, max_seconds ...) for this graph.
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        options={"tools": tools, "max_steps": max_steps, "max_replans": max_replans, "approve_plan": approve_plan},
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (plan, review_plan, select_step, execute, verify, contingency, replan, give_up, finalize):
        g.add_node(node.__name__, node)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", after_plan, ["review_plan", "select_step"])
    g.add_conditional_edges("review_plan", after_review, ["review_plan", "select_step", END])
    g.add_conditional_edges("select_step", after_select, ["execute", "finalize"])
    g.add_edge("execute", "verify")
    g.add_edge("contingency", "verify")
    g.add_conditional_edges("verify", after_verify, ["select_step", "contingency", "replan", "give_up"])
    g.add_edge("replan", "select_step")
    g.add_edge("give_up", "select_step")
    g.add_edge("finalize", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
