"""Plan-and-execute: analyze the task, plan steps with dependencies, run independent steps in
parallel, replan when a step fails, then write the answer (Plan-and-Solve, Wang et al. 2023,
arXiv:2305.04091; parallel execution of a dependency graph as in LLMCompiler, Kim et al. 2023,
arXiv:2312.04511).

    analyze -> plan -> schedule --ready steps--> execute_step (one parallel branch per step) --+
                          ^  |                                                                 |
                          |  +--failed or blocked steps, within bounds--> replan --+           |
                          +--------------------------------------------------------+-----------+
                       schedule --all done, or a bound--> finalize
    (with approve_plan: plan -> review_plan -> schedule, see below)

A step either names a tool with arguments (run directly, no LLM call; arguments may quote an
earlier result as "$<step id>") or describes reasoning (a short bounded model exchange that may
itself use the tools). Every step whose dependencies are done runs in the same wave, so
independent work overlaps. The plan's schema bounds its size (max_steps); `stop_reason` bounds
the replans (max_replans) and the run's LLM calls, tokens and wall clock (Settings); a run
stopped by a budget answers with the step results so far.

With the option approve_plan (a checkpointer and a thread are needed), `review_plan` pauses the
run after planning and shows a person the plan: they approve it, edit it (the edited plan is shown
again, at most max_iterations edits, then run) or reject it with a reason, which ends the run.
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
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Overwrite, Send
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from graphcraft.chains.approval import after_plan_review, ask_plan_review, rejection_answer, resume_clock
from graphcraft.chains.plans import unique_id, write_up
from graphcraft.chains.react import run_step, tool_catalogue
from graphcraft.chains.tool_calls import collect_sources, execute_tool_call
from graphcraft.config import Settings, settings_from
from graphcraft.models import invoke_llm, message_text, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import start_clock
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace
from graphcraft.tools.toolsets import toolset

GRAPH = "plan_execute"
DESCRIPTION = (
    "Plan-and-execute agent: analyze, plan JSON steps with dependencies, run independent steps in parallel, "
    "replan on failure, finalize."
)
WHAT = "the plan_execute graph"  # how errors name this graph (e.g. when no chat model is configured)

ANALYZER_SYSTEM = (
    "You analyze tasks before planning: the goal, the information needed, constraints, and what "
    "can be done independently. Be brief."
)
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
FINALIZER_SYSTEM = "Write the final answer to the task from the step results. Be direct; say what could not be done."

# The graph's own limits (build options, and per-run options in config["configurable"]).
MAX_STEPS, MAX_REPLANS, STEP_TOOL_CALLS = 10, 2, 3

# Length limits are part of the JSON schemas, so a grammar-constrained model cannot run past its
# token limit in the middle of a plan; other providers are asked to shorten (a repair).
ID_CHARS, TEXT_CHARS = 16, 200
REF = re.compile(r"\$([A-Za-z0-9_.\-]+)")  # "$s1" in a tool argument: the result of step s1


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


def merge_results(left: dict | None, right: dict | None) -> dict:
    """Step results by step id: the parallel steps of a wave each add their own."""
    return {**(left or {}), **(right or {})}


class State(InputState, OutputState, total=False):
    analysis: str
    plan_steps: list[dict[str, Any]]  # the plan: id, description, depends_on, tool, args of each step
    results: Annotated[dict[str, dict[str, Any]], merge_results]  # step id -> output, ok, tool calls
    ready: list[str]  # the next wave: steps whose dependencies are done
    wave: int
    replans: int  # bounded by max_replans
    replan_reasons: list[str]
    started_at: float  # the run's wall clock (runtime.bounds)
    asked_at: float  # when the plan was shown for approval: a person's time does not count against the run's
    plan_edits: int  # a person's edits of the plan; bounded by max_iterations
    approval: list[dict[str, Any]]  # the person's decisions, in order
    review_error: str  # why the last edited plan was refused (shown at the next review)
    # Reduced channels, since the parallel steps of a wave write them together; `analyze`
    # overwrites them (and results), so each question on a thread is a fresh run.
    usage: Annotated[Usage, add_usage]
    steps: Annotated[list[dict], operator.add]


class StepTask(TypedDict):
    """What one parallel `execute_step` branch receives."""

    question: str
    step: dict[str, Any]
    inputs: dict[str, str]  # results of the steps it depends on
    wave: int


# ---------------------------------------------------------------------- nodes (the method's steps)
def analyze_task(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Analyze the task before planning (goal, information needed, independent parts); starts a fresh run."""
    ctx = context(config, GRAPH)
    fresh = {
        **start_clock(),  # before the first model call: the run's time includes it
        "results": Overwrite({}),
        "replans": 0,
        "wave": 0,
        "replan_reasons": [],
        "plan_edits": 0,
        "approval": [],
        "review_error": "",
        "answer": "",
        "sources": [],
        "trace": {},
    }
    if not ctx.option("analyze", True):
        return {**fresh, "analysis": "", "usage": Overwrite(empty_usage()), "steps": Overwrite([])}
    reply, usage = invoke_llm(
        ctx.require_model(WHAT), [SystemMessage(ANALYZER_SYSTEM), HumanMessage(state["question"])]
    )
    return {
        **fresh,
        "analysis": message_text(reply),
        "usage": Overwrite(usage),
        "steps": Overwrite([{"step": "analyze"}]),
    }


def plan(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Plan the fewest steps that solve the task, each a tool call or a reasoning step, with dependencies."""
    ctx = context(config, GRAPH)
    tools, max_steps = toolset(ctx), ctx.option("max_steps", MAX_STEPS)
    result = structured_call(
        ctx.require_model(WHAT),
        plan_schema(max_steps, tuple(t.name for t in tools)),
        [SystemMessage(PLANNER_SYSTEM), HumanMessage(planning_prompt(state, tools, max_steps))],
        fallback=Plan(steps=[Step(id="s1", description=state["question"][:TEXT_CHARS])]),
        max_repairs=ctx.settings.max_structured_repairs,
    )
    steps = clean_steps(result.value.steps, set(), max_steps)
    return {
        "plan_steps": steps,
        "asked_at": time.time(),
        "usage": result.usage,
        "replan_reasons": ["plan fallback: single reasoning step"] if result.fallback else [],
        "steps": [{"step": "plan", "plan": [s["id"] for s in steps], "fallback": result.fallback}],
    }


def review_plan(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Show a person the plan (option approve_plan): approved, it runs; edited, the edited plan is shown
    again (at most max_iterations edits, then it runs); rejected, the run ends with the reason."""
    ctx = context(config, GRAPH)
    edits = state.get("plan_edits", 0)
    decision = ask_plan_review(GRAPH, state, ctx.settings.max_iterations)
    update: dict[str, Any] = {**resume_clock(state), "review_error": ""}
    record = {"kind": "plan", **decision.record()}
    if decision.action == "edit":
        update["plan_edits"] = edits + 1
        try:
            edited = plan_schema(ctx.option("max_steps", MAX_STEPS), ()).model_validate({"steps": decision.value})
            update["plan_steps"] = clean_steps(list(edited.steps), set(), ctx.option("max_steps", MAX_STEPS))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            update["review_error"] = f"the edited plan was not used: {' '.join(str(exc).split())[:300]}"
            record["error"] = update["review_error"]
    approval = state.get("approval", []) + [record]
    step = {"step": "review_plan", **record}
    if decision.action == "reject":
        return {**update, **rejected(state, ctx, approval, step, decision.reason)}
    return {**update, "approval": approval, "steps": [step]}


def rejected(state: State, ctx: Context, approval: list[dict], step: dict, reason: str) -> dict[str, Any]:
    """The answer and trace of a run whose plan a person rejected: nothing was executed."""
    trace = make_trace(
        GRAPH,
        state,
        action="rejected",
        iterations=0,
        steps=state.get("steps", []) + [step],
        plan=[{**s, "status": "not_run"} for s in state.get("plan_steps", [])],
        approval=approval,
        bounds=ctx.bounds.as_dict(),
    )
    answer = rejection_answer("the plan", reason)
    return {"answer": answer, "sources": [], "approval": approval, "steps": [step], "trace": trace}


def schedule(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Pick every step whose dependencies are done: they form the next parallel wave (within the budgets)."""
    ctx = context(config, GRAPH)
    results = live(state)
    pending = [s for s in state.get("plan_steps", []) if s["id"] not in results]
    ready = [s["id"] for s in pending if all(results.get(d, {}).get("ok") for d in s["depends_on"])]
    if not ready or ctx.bounds.reached(state):
        return {"ready": []}
    wave = state.get("wave", 0) + 1
    return {"ready": ready, "wave": wave, "steps": [{"step": "schedule", "wave": wave, "ready": ready}]}


def execute_step(task: StepTask, config: RunnableConfig) -> dict[str, Any]:
    """Execute one step of the wave: a tool step calls its tool (no LLM call), a reasoning step asks the model."""
    ctx = context(config, GRAPH)
    step, started = task["step"], time.perf_counter()
    result, usage = tool_step(ctx, task) if step.get("tool") else reasoning_step(ctx, task)
    result["seconds"] = round(time.perf_counter() - started, 4)
    record = {
        "step": "execute_step",
        "id": step["id"],
        "wave": task["wave"],
        "tool": step.get("tool"),
        "ok": result["ok"],
    }
    return {"results": {step["id"]: result}, "usage": usage, "steps": [record]}


def replan(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Plan the remaining work from the progress so far: completed steps stay, failed ones are replaced."""
    ctx = context(config, GRAPH)
    results, tools, max_steps = live(state), toolset(ctx), ctx.option("max_steps", MAX_STEPS)
    done = {k for k, v in results.items() if v["ok"]}
    result = structured_call(
        ctx.require_model(WHAT),
        plan_schema(max_steps, tuple(t.name for t in tools)),
        [SystemMessage(PLANNER_SYSTEM), HumanMessage(planning_prompt(state, tools, max_steps) + progress(state, done))],
        fallback=Plan(steps=[]),
        max_repairs=ctx.settings.max_structured_repairs,
    )
    kept = [s for s in state["plan_steps"] if s["id"] in done]
    new = clean_steps(result.value.steps, done, max_steps - len(kept))
    failed, count = sorted(set(results) - done), state.get("replans", 0) + 1
    reason = f"replan {count}: failed {failed}" if failed else f"replan {count}: blocked steps"
    return {
        "plan_steps": kept + new,
        "usage": result.usage,
        "replans": count,
        # Failed results are set aside, so that replanned steps with the same purpose can run.
        "results": {k: {**v, "superseded": True} for k, v in results.items() if k not in done},
        "replan_reasons": state.get("replan_reasons", []) + [reason],
        "steps": [{"step": "replan", "reason": reason, "plan": [s["id"] for s in new], "fallback": result.fallback}],
    }


def finalize(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Write the answer from the step results or, when a budget ran out, report the results so far."""
    ctx = context(config, GRAPH)
    results, steps = live(state), state.get("plan_steps", [])
    lines = "\n".join(
        f"{s['id']}. {s['description']}: {results[s['id']]['output'] if s['id'] in results else '(not run)'}"
        for s in steps
    )
    complete, spent = all(results.get(s["id"], {}).get("ok") for s in steps), ctx.bounds.reached(state)
    answer, action, usage = write_up(
        ctx.require_model(WHAT),
        [SystemMessage(FINALIZER_SYSTEM), HumanMessage(f"Task: {state['question']}\n\nStep results:\n{lines}")],
        complete=complete,
        spent=spent,
        stopped=f"Stopped ({spent}) before the final synthesis. Step results:\n{lines}",
    )
    taken = state.get("steps", []) + [{"step": "finalize", "action": action}]
    waves = waves_of(taken)
    trace = make_trace(
        GRAPH,
        state,
        action=action,
        stop_reason=spent or (None if complete else stop_reason(state, ctx)),
        iterations=len(waves),
        steps=taken,
        usage=add_usage(state.get("usage"), usage),
        plan=[{**s, **outcome(results.get(s["id"]))} for s in steps],
        replans=state.get("replans", 0),
        replan_reasons=state.get("replan_reasons", []),
        waves=waves,
        parallel_steps=sum(len(w) for w in waves if len(w) > 1),
        max_replans=ctx.option("max_replans", MAX_REPLANS),
        approval=state.get("approval", []),
        bounds=ctx.bounds.as_dict(),
    )
    sources = collect_sources([call for r in results.values() for call in r.get("tool_calls", [])])
    return {"answer": answer, "sources": sources, "usage": usage, "steps": taken[-1:], "trace": trace}


# ---------------------------------------------------------------------- the two kinds of step
def tool_step(ctx: Context, task: StepTask) -> tuple[dict[str, Any], Usage]:
    """A tool step: the tool called directly with its arguments, "$id" replaced by earlier results."""
    step = task["step"]
    call = {"name": step["tool"], "args": substitute(step.get("args", {}), task["inputs"]), "id": f"plan-{step['id']}"}
    _message, record = execute_tool_call({t.name: t for t in toolset(ctx)}, call)
    return {"output": record["output"], "ok": record["ok"], "tool_calls": [record]}, empty_usage()


def reasoning_step(ctx: Context, task: StepTask) -> tuple[dict[str, Any], Usage]:
    """A reasoning step: a short ReAct exchange (at most step_tool_calls tool calls) from the results it needs."""
    earlier = "\n".join(f"Result of {k}: {v}" for k, v in task["inputs"].items())
    messages = [
        SystemMessage(EXECUTOR_SYSTEM),
        HumanMessage(f"Overall task: {task['question']}\n\n{earlier}\n\nYour step: {task['step']['description']}"),
    ]
    limit = ctx.option("step_tool_calls", STEP_TOOL_CALLS)
    run, with_tools = run_step(
        ctx.require_model(WHAT), messages, toolset(ctx), max_tool_calls=limit, max_turns=limit + 1
    )
    output = run.text.strip()
    result = {"output": output, "ok": run.ok and not output.upper().startswith("FAILED"), "tool_calls": run.tool_calls}
    if not with_tools:  # tool steps still run; this step reasoned from its inputs alone
        result["tools"] = "unavailable: the model has no tool calling"
    return result, run.usage


# ---------------------------------------------------------------------- plans
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


def planning_prompt(state: State, tools: list[BaseTool], max_steps: int) -> str:
    """What the planner is asked: the task, the analysis, the tools it may name, the plan size."""
    analysis = state.get("analysis", "")
    return (
        f"Task: {state['question']}\n\n"
        + (f"Analysis:\n{analysis}\n\n" if analysis else "")
        + f"Tools:\n{tool_catalogue(tools) or '(none)'}\n\nReturn at most {max_steps} steps."
    )


def progress(state: State, done: set[str]) -> str:
    """What the replanner is told: each step's status and result, and which ids it may reuse."""
    results = live(state)
    report = "\n".join(
        f"- {s['id']} ({'done' if s['id'] in done else 'FAILED' if s['id'] in results else 'not run'}): "
        f"{s['description']} -> {results.get(s['id'], {}).get('output', '')[:300]}"
        for s in state.get("plan_steps", [])
    )
    return (
        f"\n\nProgress so far:\n{report}\n\nPlan only the REMAINING work. "
        f"Completed step ids ({', '.join(sorted(done)) or 'none'}) "
        "may be referenced in depends_on and as $id. Use new ids for new steps."
    )


def clean_steps(steps: list[Step], done: set[str], limit: int) -> list[dict[str, Any]]:
    """Unique ids, known dependencies only, no cycles, at most `limit` steps."""
    out: list[dict[str, Any]] = []
    known = set(done)
    for step in steps[: max(limit, 0)]:
        sid = unique_id(step.id, known, len(out) + 1)
        # Only earlier steps may be dependencies: this rules out cycles by construction.
        deps = [d for d in dict.fromkeys(step.depends_on) if d in known]
        refs = [r for r in REF.findall(json.dumps(step.args)) if r in known and r not in deps]
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


def substitute(args: Any, inputs: dict[str, str]) -> Any:
    """Replace "$id" references in tool arguments with earlier results."""
    if isinstance(args, dict):
        return {k: substitute(v, inputs) for k, v in args.items()}
    if isinstance(args, list):
        return [substitute(v, inputs) for v in args]
    if isinstance(args, str):
        return REF.sub(lambda m: inputs.get(m.group(1), m.group(0)), args)
    return args


def live(state: State) -> dict[str, dict[str, Any]]:
    """Results that still count: those of failed steps that a replan replaced are set aside."""
    return {k: v for k, v in state.get("results", {}).items() if not v.get("superseded")}


def outcome(result: dict[str, Any] | None) -> dict[str, Any]:
    """A plan step's status (done, failed, failed_replanned, not_run) and output, for the trace."""
    if result is None:
        return {"status": "not_run"}
    status = "failed_replanned" if result.get("superseded") else "done" if result["ok"] else "failed"
    return {"status": status, "output": result["output"][:300]}


def waves_of(steps: list[dict[str, Any]]) -> list[list[str]]:
    """Executed step ids grouped by the wave that ran them in parallel."""
    waves: dict[int, list[str]] = {}
    for s in steps:
        if s["step"] == "execute_step":
            waves.setdefault(s["wave"], []).append(s["id"])
    return [sorted(waves[w]) for w in sorted(waves)]


# ---------------------------------------------------------------------- routing (every loop bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that ends the run: its LLM calls, tokens or time, or max_replans once replanning is used up."""
    if reached := ctx.bounds.reached(state):
        return reached
    return "max_replans" if state.get("replans", 0) >= ctx.option("max_replans", MAX_REPLANS) else None


def after_plan(state: State, config: RunnableConfig) -> str:
    """A person reviews the plan first when the option approve_plan is on."""
    return "review_plan" if context(config, GRAPH).option("approve_plan", False) else "schedule"


def after_review(state: State, config: RunnableConfig) -> str:
    """Approved: run it. Rejected: end. Edited (or a refused edit): show it again while edits are left."""
    outcome = after_plan_review(state, context(config, GRAPH).settings.max_iterations)
    return {"reject": END, "again": "review_plan"}.get(outcome, "schedule")


def route(state: State, config: RunnableConfig) -> list[Send] | str:
    """Fan the ready wave out; with nothing ready, replan failed or blocked steps (within bounds) or finish."""
    results = live(state)
    if state.get("ready"):
        by_id = {s["id"]: s for s in state["plan_steps"]}
        return [
            Send(
                "execute_step",
                StepTask(
                    question=state["question"],
                    step=by_id[sid],
                    wave=state["wave"],
                    inputs={d: results[d]["output"] for d in by_id[sid]["depends_on"]},
                ),
            )
            for sid in state["ready"]
        ]
    unfinished = [s for s in state.get("plan_steps", []) if not results.get(s["id"], {}).get("ok")]
    return "replan" if unfinished and not stop_reason(state, context(config, GRAPH)) else "finalize"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    tools: list[BaseTool] | None = None,
    workspace: str | Path | None = None,
    enable_python: bool = False,
    analyze: bool = True,
    max_steps: int = MAX_STEPS,
    max_replans: int = MAX_REPLANS,
    step_tool_calls: int = STEP_TOOL_CALLS,
    approve_plan: bool = False,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the plan-and-execute graph.

    tools: the steps' tools (default: calculator and file tools in `workspace`, by default
    <store>/workspace, and python when enable_python). analyze: analyze the task before planning.
    max_steps bounds the plan size, max_replans the replan loop, step_tool_calls a reasoning step's tool calls.
    approve_plan: pause after planning for a person's approve / edit / reject (needs a checkpointer).
    options: Settings fields (max_llm_calls, token_budget, max_seconds ...) for this graph.
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        options={
            "tools": tools,
            "workspace": workspace,
            "enable_python": enable_python,
            "analyze": analyze,
            "max_steps": max_steps,
            "max_replans": max_replans,
            "step_tool_calls": step_tool_calls,
            "approve_plan": approve_plan,
        },
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    g.add_node("analyze", analyze_task)
    for node in (plan, review_plan, schedule, replan, finalize):
        g.add_node(node.__name__, node)
    g.add_node("execute_step", execute_step)  # type: ignore[arg-type]  # LangGraph's overloads reject a Send target (its input is the payload)
    g.add_edge(START, "analyze")
    g.add_edge("analyze", "plan")
    g.add_conditional_edges("plan", after_plan, ["review_plan", "schedule"])
    g.add_conditional_edges("review_plan", after_review, ["review_plan", "schedule", END])
    g.add_conditional_edges("schedule", route, ["execute_step", "replan", "finalize"])
    g.add_edge("execute_step", "schedule")
    g.add_edge("replan", "schedule")
    g.add_edge("finalize", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
