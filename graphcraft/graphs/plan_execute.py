"""Plan-and-execute: analyze the task, plan steps with dependencies, run independent steps in
parallel, replan when a step fails, then write the answer (Plan-and-Solve / LLMCompiler style).

analyze -> plan -> schedule -> execute_step (fan-out with Send) -> schedule ... -> finalize
                       \\-> replan -> schedule

A step either names a tool with arguments (run directly, no LLM call; arguments may quote an
earlier result as "$<step id>") or describes reasoning (one bounded model call that may itself
use the tools). Every step whose dependencies are done runs in the same wave, so independent
work overlaps. Bounds: number of steps, waves, replans, LLM calls, tokens and wall-clock time
(Settings.max_seconds); a run stopped by a budget or the time answers with the step results so far.
"""

from __future__ import annotations

import json
import operator
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from graphcraft.chains.tool_calls import collect_sources, execute_tool_call, run_with_tools
from graphcraft.config import Settings
from graphcraft.models import invoke_llm, message_text, require_chat_model, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import Bounds, make_trace, start_clock

DESCRIPTION = (
    "Plan-and-execute agent: analyze, plan JSON steps with dependencies, run independent steps in parallel, "
    "replan on failure, finalize."
)

_REF = re.compile(r"\$([A-Za-z0-9_.\-]+)")


# Length limits are part of the JSON schemas, so a grammar-constrained model cannot run past its
# token limit in the middle of a plan; other providers are asked to shorten (a repair).
ID_CHARS, TEXT_CHARS = 16, 200


class Step(BaseModel):
    id: str = Field(max_length=ID_CHARS, description="short unique id, e.g. s1")
    description: str = Field(max_length=TEXT_CHARS, description="what this step does")
    depends_on: list[Annotated[str, Field(max_length=ID_CHARS)]] = Field(
        default_factory=list, max_length=8, description="ids of steps whose results this step needs"
    )
    tool: str | None = Field(default=None, description="tool to call directly, or null for a reasoning step")
    args: dict[str, Any] = Field(
        default_factory=dict, description="tool arguments; '$s1' inserts the result of step s1"
    )


class Plan(BaseModel):
    """Steps to solve the task; steps without mutual dependencies run in parallel."""

    steps: list[Step]


@lru_cache(maxsize=16)
def plan_schema(max_steps: int, tools: tuple[str, ...]) -> type[Plan]:
    """`Plan` with 1..max_steps steps whose `tool` is one of `tools` or null in the JSON schema
    (what a grammar enforces); validation stays lenient: an unknown tool fails its step, and the
    failure is replanned like any other."""

    def tool_enum(schema: dict[str, Any]) -> None:
        schema.pop("anyOf", None)
        schema["enum"] = [*tools, None]

    tool = Field(
        default=None, description="tool to call directly, or null for a reasoning step", json_schema_extra=tool_enum
    )
    step = create_model("Step", __base__=Step, tool=(str | None, tool))
    return create_model(
        "Plan",
        __base__=Plan,
        __doc__=Plan.__doc__,
        steps=(list[step], Field(min_length=1, max_length=max_steps)),  # type: ignore[valid-type]  # a model built at runtime
    )


def merge_results(left: dict | None, right: dict | None) -> dict:
    return {**(left or {}), **(right or {})}


class PlanExecuteState(TypedDict, total=False):
    question: str
    analysis: str
    steps: list[dict[str, Any]]
    results: Annotated[dict[str, dict[str, Any]], merge_results]
    usage: Annotated[Usage, add_usage]
    ready: list[str]
    wave: int
    executed: Annotated[list[tuple[int, str]], operator.add]
    replans: int
    started_at: float
    replan_reasons: list[str]
    stop_reason: str
    answer: str
    sources: list[dict[str, Any]]
    trace: dict[str, Any]


class StepTask(TypedDict):
    """What one parallel `execute_step` branch receives."""

    question: str
    step: dict[str, Any]
    inputs: dict[str, str]
    wave: int


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    tools: list[BaseTool] | None = None,
    workspace: str | Path | None = None,
    enable_python: bool = False,
    analyze: bool = True,
    max_steps: int = 10,
    max_replans: int = 2,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    step_tool_calls: int = 3,
    checkpointer: Any = None,
):
    """Compile the plan-and-execute graph. max_replans bounds the replan loop; max_steps the plan size."""
    bounds = Bounds.from_settings(
        settings, max_iterations=max_replans, max_llm_calls=max_llm_calls, token_budget=token_budget
    )
    repairs = settings.max_structured_repairs if settings else 2
    loaded: dict[str, list[BaseTool]] = {}

    def llm() -> BaseChatModel:
        return require_chat_model(model, "the plan_execute graph", settings)

    def toolset() -> list[BaseTool]:
        if "tools" not in loaded:
            from graphcraft.graphs.tool_agent import _default_toolset

            loaded["tools"] = list(tools) if tools is not None else _default_toolset(settings, workspace, enable_python)
        return loaded["tools"]

    def analyze_task(state: PlanExecuteState) -> dict:
        clock = start_clock()  # before the first model call: the run's time includes it
        if not analyze:
            return {**clock, "analysis": "", "replans": 0, "wave": 0, "results": {}}
        reply, usage = invoke_llm(
            llm(),
            [
                SystemMessage(
                    "You analyze tasks before planning: the goal, the information needed, constraints, and what "
                    "can be done independently. Be brief."
                ),
                HumanMessage(state["question"]),
            ],
        )
        return {**clock, "analysis": message_text(reply), "usage": usage, "replans": 0, "wave": 0, "results": {}}

    def plan(state: PlanExecuteState) -> dict:
        prompt = _planning_prompt(state["question"], state.get("analysis", ""), toolset(), max_steps)
        result = structured_call(
            llm(),
            plan_schema(max_steps, _names(toolset())),
            [SystemMessage(PLANNER_SYSTEM), HumanMessage(prompt)],
            fallback=Plan(steps=[Step(id="s1", description=state["question"][:TEXT_CHARS])]),
            max_repairs=repairs,
        )
        steps = _clean_steps(result.value.steps, set(), max_steps)
        return {
            "steps": steps,
            "usage": result.usage,
            "replan_reasons": [] if not result.fallback else ["plan fallback: single reasoning step"],
        }

    def schedule(state: PlanExecuteState) -> dict:
        """Pick every step whose dependencies are done: they form the next parallel wave."""
        results = _live(state)
        pending = [s for s in state.get("steps", []) if s["id"] not in results]
        ready = [s["id"] for s in pending if all(results.get(d, {}).get("ok") for d in s["depends_on"])]
        if ready and not bounds.reached(state):
            return {"ready": ready, "wave": state.get("wave", 0) + 1}
        return {"ready": []}

    def route(state: PlanExecuteState) -> list[Send] | str:
        """Fan out the ready wave; when nothing is ready, replan (failures, within bounds) or finish."""
        results = _live(state)
        if state.get("ready"):
            steps = {s["id"]: s for s in state["steps"]}
            return [
                Send(
                    "execute_step",
                    StepTask(
                        question=state["question"],
                        step=steps[sid],
                        wave=state["wave"],
                        inputs={d: results[d]["output"] for d in steps[sid]["depends_on"]},
                    ),
                )
                for sid in state["ready"]
            ]
        unfinished = [s for s in state.get("steps", []) if not results.get(s["id"], {}).get("ok")]
        if unfinished and not bounds.reached(state, state.get("replans", 0)):
            return "replan"
        return "finalize"

    def execute_step(task: StepTask) -> dict:
        step, started, extra = task["step"], time.perf_counter(), {}
        if step.get("tool"):
            call = {
                "name": step["tool"],
                "args": _substitute(step.get("args", {}), task["inputs"]),
                "id": f"plan-{step['id']}",
            }
            _message, record = execute_tool_call({t.name: t for t in toolset()}, call)
            output, ok, usage, calls = record["output"], record["ok"], empty_usage(), [record]
        else:
            context = "\n".join(f"Result of {k}: {v}" for k, v in task["inputs"].items())
            messages = [
                SystemMessage(EXECUTOR_SYSTEM),
                HumanMessage(f"Overall task: {task['question']}\n\n{context}\n\nYour step: {step['description']}"),
            ]
            try:
                run = run_with_tools(
                    llm(), messages, toolset(), max_tool_calls=step_tool_calls, max_turns=step_tool_calls + 1
                )
            except (
                NotImplementedError
            ):  # no native tool calling: the step reasons from its inputs (tool steps still run)
                run = run_with_tools(llm(), messages, [], max_turns=1)
                extra["tools"] = "unavailable: the model has no tool calling"
            output, usage, calls = run.text.strip(), run.usage, run.tool_calls
            ok = run.ok and not output.upper().startswith("FAILED")
        result = {
            "output": output,
            "ok": ok,
            "tool_calls": calls,
            "seconds": round(time.perf_counter() - started, 4),
            **extra,
        }
        return {"results": {step["id"]: result}, "usage": usage, "executed": [(task["wave"], step["id"])]}

    def replan(state: PlanExecuteState) -> dict:
        results = _live(state)
        done = {k for k, v in results.items() if v["ok"]}
        report = "\n".join(
            f"- {s['id']} ({'done' if s['id'] in done else 'FAILED' if s['id'] in results else 'not run'}): "
            f"{s['description']} -> {results.get(s['id'], {}).get('output', '')[:300]}"
            for s in state.get("steps", [])
        )
        prompt = (
            _planning_prompt(state["question"], state.get("analysis", ""), toolset(), max_steps)
            + f"\n\nProgress so far:\n{report}\n\nPlan only the REMAINING work. "
            f"Completed step ids ({', '.join(sorted(done)) or 'none'}) "
            "may be referenced in depends_on and as $id. Use new ids for new steps."
        )
        result = structured_call(
            llm(),
            plan_schema(max_steps, _names(toolset())),
            [SystemMessage(PLANNER_SYSTEM), HumanMessage(prompt)],
            fallback=Plan(steps=[]),
            max_repairs=repairs,
        )
        kept = [s for s in state["steps"] if s["id"] in done]
        new = _clean_steps(result.value.steps, done, max_steps - len(kept))
        failed = sorted(set(results) - done)
        reason = (
            f"replan {state.get('replans', 0) + 1}: failed {failed}"
            if failed
            else f"replan {state.get('replans', 0) + 1}: blocked steps"
        )
        # Drop failed results so that re-planned steps with the same purpose can run.
        return {
            "steps": kept + new,
            "usage": result.usage,
            "replans": state.get("replans", 0) + 1,
            "results": {k: {**v, "superseded": True} for k, v in results.items() if k not in done},
            "replan_reasons": state.get("replan_reasons", []) + [reason],
        }

    def finalize(state: PlanExecuteState) -> dict:
        results = _live(state)
        lines = [
            f"{s['id']}. {s['description']}: {results[s['id']]['output'] if s['id'] in results else '(not run)'}"
            for s in state.get("steps", [])
        ]
        complete = all(results.get(s["id"], {}).get("ok") for s in state.get("steps", []))
        usage = empty_usage()
        spent = bounds.reached(state)
        if spent:
            answer = f"Stopped ({spent}) before the final synthesis. Step results:\n" + "\n".join(lines)
            reason = spent
        else:
            reply, usage = invoke_llm(
                llm(),
                [
                    SystemMessage(
                        "Write the final answer to the task from the step results. "
                        "Be direct; say what could not be done."
                    ),
                    HumanMessage(f"Task: {state['question']}\n\nStep results:\n" + "\n".join(lines)),
                ],
            )
            answer = message_text(reply)
            reason = (
                "completed" if complete else ("max_replans" if state.get("replans", 0) >= max_replans else "incomplete")
            )
        total = add_usage(state.get("usage"), usage)
        waves = _waves(state)
        trace = make_trace(
            "plan_execute",
            total,
            len(waves),
            stop_reason=reason,
            replans=state.get("replans", 0),
            replan_reasons=state.get("replan_reasons", []),
            waves=waves,
            steps=[{**s, "status": _status(results.get(s["id"]))} for s in state.get("steps", [])],
            parallel_steps=sum(len(w) for w in waves if len(w) > 1),
            max_replans=max_replans,
            bounds=bounds.as_dict(),
        )
        sources = collect_sources([call for r in results.values() for call in r.get("tool_calls", [])])
        return {"answer": answer, "sources": sources, "usage": usage, "stop_reason": reason, "trace": trace}

    g = StateGraph(PlanExecuteState)
    g.add_node("analyze", analyze_task)
    g.add_node("plan", plan)
    g.add_node("schedule", schedule)
    g.add_node("execute_step", execute_step)  # type: ignore[arg-type]  # LangGraph's overloads reject a Send target (its input is the payload)
    g.add_node("replan", replan)
    g.add_node("finalize", finalize)
    g.add_edge(START, "analyze")
    g.add_edge("analyze", "plan")
    g.add_edge("plan", "schedule")
    g.add_conditional_edges("schedule", route, ["execute_step", "replan", "finalize"])
    g.add_edge("execute_step", "schedule")
    g.add_edge("replan", "schedule")
    g.add_edge("finalize", END)
    # Sized so the bounds above end the run, never the recursion limit.
    return g.compile(checkpointer=checkpointer).with_config(recursion_limit=3 * max_steps * (max_replans + 1) + 20)


PLANNER_SYSTEM = (
    "You are a planner. Break the task into the fewest steps that solve it. A step either calls one tool "
    "with exact arguments (set tool and args) or is a reasoning step (tool null) done by a language model. "
    "List in depends_on only the steps whose results a step really needs, so independent steps can run in "
    "parallel. In tool arguments, write $<id> to insert an earlier step's result."
)

EXECUTOR_SYSTEM = (
    "You carry out one step of a larger plan. Use the given results of earlier steps and tools if needed. "
    "Reply with the step's result only. If the step cannot be done, reply 'FAILED: <reason>'."
)


def _names(tools: list[BaseTool]) -> tuple[str, ...]:
    return tuple(t.name for t in tools)


def _planning_prompt(question: str, analysis: str, tools: list[BaseTool], max_steps: int) -> str:
    catalogue = (
        "\n".join(f"- {t.name}({', '.join(t.args)}): {t.description.splitlines()[0]}" for t in tools) or "(none)"
    )
    return (
        f"Task: {question}\n\n"
        + (f"Analysis:\n{analysis}\n\n" if analysis else "")
        + f"Tools:\n{catalogue}\n\nReturn at most {max_steps} steps."
    )


def _clean_steps(steps: list[Step], done: set[str], limit: int) -> list[dict[str, Any]]:
    """Unique ids, known dependencies only, no cycles, at most `limit` steps."""
    out: list[dict[str, Any]] = []
    known = set(done)
    for step in steps[: max(limit, 0)]:
        sid = step.id.strip() or f"s{len(out) + 1}"
        while sid in known:
            sid += "'"
        # Only earlier steps may be dependencies: this rules out cycles by construction.
        deps = [d for d in dict.fromkeys(step.depends_on) if d in known]
        refs = [r for r in _REF.findall(json.dumps(step.args)) if r in known and r not in deps]
        out.append(
            {
                "id": sid,
                "description": step.description,
                "depends_on": deps + refs,
                "tool": step.tool or None,
                "args": dict(step.args),
            }
        )
        known.add(sid)
    return out


def _substitute(args: Any, inputs: dict[str, str]) -> Any:
    """Replace "$id" references in tool arguments with earlier results."""
    if isinstance(args, dict):
        return {k: _substitute(v, inputs) for k, v in args.items()}
    if isinstance(args, list):
        return [_substitute(v, inputs) for v in args]
    if isinstance(args, str):
        return _REF.sub(lambda m: inputs.get(m.group(1), m.group(0)), args)
    return args


def _status(result: dict | None) -> str:
    if result is None:
        return "not_run"
    if result.get("superseded"):
        return "failed_replanned"
    return "done" if result["ok"] else "failed"


def _live(state: PlanExecuteState) -> dict[str, dict[str, Any]]:
    """Results that still count: those of failed steps that a replan replaced are set aside."""
    return {k: v for k, v in state.get("results", {}).items() if not v.get("superseded")}


def _waves(state: PlanExecuteState) -> list[list[str]]:
    """Executed step ids grouped by the wave that ran them in parallel."""
    waves: dict[int, list[str]] = {}
    for wave, sid in state.get("executed", []):
        waves.setdefault(wave, []).append(sid)
    return [sorted(waves[w]) for w in sorted(waves)]


graph = build()
