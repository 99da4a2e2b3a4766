"""Planning: decompose a goal into phases of steps with dependencies and success criteria,
execute them in order, verify each result, take the step's contingency or replan on failure.

plan -> select_step -> execute -> verify -> select_step ... -> finalize
                                    \\-> contingency -> verify
                                    \\-> replan -> select_step

Each step carries a success criterion and an optional contingency (an alternative action).
A failed verification first tries the contingency once, then replans the remaining work
(bounded by max_replans); past that bound the step is recorded as failed and independent steps
continue. LLM-call, token and wall-clock (Settings.max_seconds) budgets are checked in every
routing function; a run stopped by one reports the progress of every step instead of a summary.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from graphcraft.chains.tool_calls import run_with_tools
from graphcraft.config import Settings
from graphcraft.models import StructuredResult, invoke_llm, message_text, require_chat_model, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import Bounds, make_trace, start_clock

DESCRIPTION = (
    "Hierarchical planning: phases and steps with dependencies, per-step verification against success criteria, "
    "contingencies and bounded replanning."
)


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


def _append(left: list | None, right: list | None) -> list:
    return (left or []) + (right or [])


class PlanningState(TypedDict, total=False):
    question: str
    steps: list[dict[str, Any]]
    status: dict[str, dict[str, Any]]
    current: str
    attempt: str
    result: str
    verdict: dict[str, Any]
    replans: int
    started_at: float
    usage: Annotated[Usage, add_usage]
    log: Annotated[list[dict[str, Any]], _append]
    answer: str
    sources: list[dict[str, Any]]
    trace: dict[str, Any]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    tools: list[BaseTool] | None = None,
    max_steps: int = 12,
    max_replans: int = 2,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    checkpointer: Any = None,
):
    """Compile the planning graph. `tools` (optional) are available to step execution."""
    bounds = Bounds.from_settings(
        settings, max_iterations=max_replans, max_llm_calls=max_llm_calls, token_budget=token_budget
    )
    repairs = settings.max_structured_repairs if settings else 2
    step_tools = list(tools or [])
    plan_schema = _plan_schema(max_steps)

    def llm() -> BaseChatModel:
        return require_chat_model(model, "the planning graph", settings)

    def make_plan(
        state: PlanningState, extra: str = "", done: set[str] | None = None
    ) -> tuple[list[dict], Usage, dict]:
        prompt = (
            f"Goal: {state['question']}\n\nBreak the goal into phases (e.g. research, build, check) of concrete "
            f"steps, at most {max_steps} steps in all. Give every step a success criterion that a reviewer can "
            "check from its result, its dependencies, and a contingency when a sensible alternative exists. "
            "Keep every description, criterion and contingency to one short sentence." + extra
        )
        fallback = PhasedPlan(
            phases=[
                Phase(
                    name="do",
                    steps=[
                        PlanStep(
                            id="s1",
                            description=state["question"][:TEXT_CHARS],
                            success_criterion="the goal is achieved",
                        )
                    ],
                )
            ]
        )
        result = structured_call(
            llm(),
            plan_schema,
            [SystemMessage("You are an expert project planner."), HumanMessage(prompt)],
            fallback=fallback if done is None else PhasedPlan(phases=[]),
            max_repairs=repairs,
        )
        return _flatten(result.value, done or set(), max_steps), result.usage, _outcome(result)

    def plan(state: PlanningState) -> dict:
        clock = start_clock()  # before the first model call: the run's time includes it
        steps, usage, outcome = make_plan(state)
        return {
            **clock,
            "steps": steps,
            "status": {},
            "replans": 0,
            "usage": usage,
            "log": [{"event": "plan", "steps": [s["id"] for s in steps], **outcome}],
        }

    def select_step(state: PlanningState) -> dict:
        """The first step, in phase order, whose dependencies all passed."""
        status = state.get("status", {})
        for step in state["steps"]:
            if step["id"] not in status and all(status.get(d, {}).get("status") == "done" for d in step["depends_on"]):
                return {"current": step["id"], "attempt": "primary"}
        return {"current": ""}

    def route_select(state: PlanningState) -> str:
        if state.get("current") and not bounds.reached(state):
            return "execute"
        return "finalize"

    def _run(state: PlanningState, action: str) -> tuple[str, Usage]:
        step = _step(state)
        done = "\n".join(
            f"- {s['id']}: {state['status'][s['id']]['result'][:400]}"
            for s in state["steps"]
            if state.get("status", {}).get(s["id"], {}).get("status") == "done"
        )
        messages = [
            SystemMessage("You execute one step of a plan and report its concrete result."),
            HumanMessage(
                f"Goal: {state['question']}\n\nCompleted steps:\n{done or '(none)'}\n\n"
                f"Step ({step['phase']}): {action}\nSuccess criterion: {step['success_criterion']}"
            ),
        ]
        if step_tools:
            run = run_with_tools(llm(), messages, step_tools)
            return run.text, run.usage
        reply, usage = invoke_llm(llm(), messages)
        return message_text(reply), usage

    def execute(state: PlanningState) -> dict:
        result, usage = _run(state, _step(state)["description"])
        return {"result": result, "usage": usage}

    def contingency(state: PlanningState) -> dict:
        step = _step(state)
        result, usage = _run(state, f"{step['contingency']} (contingency for: {step['description']})")
        return {
            "result": result,
            "usage": usage,
            "attempt": "contingency",
            "log": [{"event": "contingency", "step": step["id"], "action": step["contingency"]}],
        }

    def verify(state: PlanningState) -> dict:
        step = _step(state)
        attempt = f"\nAttempt: contingency ({step['contingency']})" if state.get("attempt") == "contingency" else ""
        prompt = (
            f"Step: {step['description']}{attempt}\nSuccess criterion: {step['success_criterion']}\n\n"
            f"Result:\n{state['result']}\n\nDoes the result meet the criterion?"
        )
        result = structured_call(
            llm(),
            Verdict,
            [SystemMessage("You are a strict verifier."), HumanMessage(prompt)],
            fallback=Verdict(passed=False, reason="verification failed"),
            max_repairs=repairs,
        )
        verdict = result.value
        update: dict[str, Any] = {
            "verdict": verdict.model_dump(),
            "usage": result.usage,
            "log": [
                {
                    "event": "verify",
                    "step": step["id"],
                    "attempt": state.get("attempt"),
                    "passed": verdict.passed,
                    "reason": verdict.reason,
                    **_outcome(result),
                }
            ],
        }
        if verdict.passed:
            update["status"] = {
                **state.get("status", {}),
                step["id"]: {"status": "done", "result": state["result"], "attempt": state.get("attempt")},
            }
        return update

    def route_verify(state: PlanningState) -> str:
        """Passed: next step. Failed: contingency once, then replan within bounds, else give up on the step."""
        if state["verdict"]["passed"]:
            return "select_step"
        if bounds.reached(state):
            return "give_up"
        if state.get("attempt") == "primary" and _step(state).get("contingency"):
            return "contingency"
        if not bounds.reached(state, state.get("replans", 0)):
            return "replan"
        return "give_up"

    def give_up(state: PlanningState) -> dict:
        step = _step(state)
        return {
            "status": {
                **state.get("status", {}),
                step["id"]: {
                    "status": "failed",
                    "result": state.get("result", ""),
                    "reason": state["verdict"]["reason"],
                },
            },
            "log": [{"event": "failed", "step": step["id"], "reason": state["verdict"]["reason"]}],
        }

    def replan(state: PlanningState) -> dict:
        status = state.get("status", {})
        done = {k for k, v in status.items() if v["status"] == "done"}
        step = _step(state)
        extra = (
            "\n\nAlready done (reuse their ids in depends_on): "
            + ("; ".join(f"{k}: {status[k]['result'][:200]}" for k in sorted(done)) or "nothing")
            + f"\nStep {step['id']} ('{step['description']}') failed: {state['verdict']['reason']}."
            "\nPlan only the remaining work, with a different approach for the failed step. Use new ids."
        )
        new_steps, usage, outcome = make_plan(state, extra, done)
        kept = [s for s in state["steps"] if s["id"] in done]
        return {
            "steps": kept + new_steps,
            "replans": state.get("replans", 0) + 1,
            "usage": usage,
            "log": [
                {
                    "event": "replan",
                    "after": step["id"],
                    "reason": state["verdict"]["reason"],
                    "steps": [s["id"] for s in new_steps],
                    **outcome,
                }
            ],
        }

    def finalize(state: PlanningState) -> dict:
        status = state.get("status", {})
        lines = [
            f"[{s['phase']}] {s['id']} {s['description']}: "
            + (f"{status[s['id']]['status']} - {status[s['id']]['result'][:500]}" if s["id"] in status else "not run")
            for s in state["steps"]
        ]
        usage = empty_usage()
        reason = bounds.reached(state)
        if reason:
            answer = f"Stopped ({reason}) before the plan was finished. Progress:\n" + "\n".join(lines)
        else:
            reply, usage = invoke_llm(
                llm(),
                [
                    SystemMessage(
                        "Report the outcome of the plan: the result for the goal, then any step that failed and why."
                    ),
                    HumanMessage(f"Goal: {state['question']}\n\nSteps:\n" + "\n".join(lines)),
                ],
            )
            answer = message_text(reply)
            done = all(status.get(s["id"], {}).get("status") == "done" for s in state["steps"])
            reason = (
                "completed" if done else ("max_replans" if state.get("replans", 0) >= max_replans else "incomplete")
            )
        total = add_usage(state.get("usage"), usage)
        log = state.get("log", [])
        trace = make_trace(
            "planning",
            total,
            sum(1 for e in log if e["event"] == "verify"),
            stop_reason=reason,
            replans=state.get("replans", 0),
            max_replans=max_replans,
            phases=_phases_view(state["steps"], status),
            contingencies=sum(1 for e in log if e["event"] == "contingency"),
            failed_steps=[k for k, v in status.items() if v["status"] == "failed"],
            log=log,
            bounds=bounds.as_dict(),
        )
        return {"answer": answer, "sources": [], "usage": usage, "trace": trace}

    g = StateGraph(PlanningState)
    for name, node in (
        ("plan", plan),
        ("select_step", select_step),
        ("execute", execute),
        ("verify", verify),
        ("contingency", contingency),
        ("replan", replan),
        ("give_up", give_up),
        ("finalize", finalize),
    ):
        g.add_node(name, node)
    g.add_edge(START, "plan")
    g.add_edge("plan", "select_step")
    g.add_conditional_edges("select_step", route_select, ["execute", "finalize"])
    g.add_edge("execute", "verify")
    g.add_edge("contingency", "verify")
    g.add_conditional_edges("verify", route_verify, ["select_step", "contingency", "replan", "give_up"])
    g.add_edge("replan", "select_step")
    g.add_edge("give_up", "select_step")
    g.add_edge("finalize", END)
    # Sized so the bounds above end the run, never the recursion limit.
    return g.compile(checkpointer=checkpointer).with_config(recursion_limit=8 * max_steps * (max_replans + 1) + 20)


def _step(state: PlanningState) -> dict[str, Any]:
    return next(s for s in state["steps"] if s["id"] == state["current"])


def _outcome(result: StructuredResult) -> dict[str, Any]:
    """How a structured call went, for the log: a fallback carries the errors that caused it."""
    return {"fallback": True, "errors": result.errors[-2:]} if result.fallback else {"fallback": False}


def _plan_schema(max_steps: int) -> type[PhasedPlan]:
    """`PhasedPlan` with at most `max_steps` phases and steps per phase (limits a grammar enforces)."""
    phase = create_model("Phase", __base__=Phase, steps=(list[PlanStep], Field(min_length=1, max_length=max_steps)))
    return create_model(
        "PhasedPlan",
        __base__=PhasedPlan,
        __doc__=PhasedPlan.__doc__,
        phases=(list[phase], Field(min_length=1, max_length=max_steps)),  # type: ignore[valid-type]  # a model built at runtime
    )


def _flatten(plan: PhasedPlan, done: set[str], max_steps: int) -> list[dict[str, Any]]:
    """Steps in phase order with unique ids; dependencies only on earlier or completed steps (no cycles)."""
    out: list[dict[str, Any]] = []
    known = set(done)
    for phase in plan.phases:
        for step in phase.steps:
            if len(out) >= max_steps:
                return out
            sid = step.id.strip() or f"s{len(out) + 1}"
            while sid in known:
                sid += "'"
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


def _phases_view(steps: list[dict], status: dict[str, dict]) -> list[dict[str, Any]]:
    phases: dict[str, list] = {}
    for s in steps:
        phases.setdefault(s["phase"], []).append(
            {"id": s["id"], "status": status.get(s["id"], {}).get("status", "not_run")}
        )
    return [{"name": name, "steps": items} for name, items in phases.items()]


graph = build()
