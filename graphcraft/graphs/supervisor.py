"""Supervisor team: a coordinator hands work to specialised agents and back until the answer is written.

    supervisor --handoff--> researcher | analyst | writer | ... --report--> supervisor --> ...
        |
        +-- FINISH, or a bound reached --> finish

- supervisor: reads the task and the shared history and picks who acts next, with a precise
  assignment (structured output; a malformed choice is repaired, then falls back to the first
  member who has not acted yet, recorded). The handoff is a LangGraph `Command(goto=member)`.
- members (default team): researcher (searches the ingested documents, plus the entity graph
  and the web when configured), analyst (calculator; sandboxed python with enable_python),
  writer (writes the final answer from what the others found). Each runs a small bounded tool
  loop, answers with `Command(goto="supervisor")`, posts its report on the shared message
  history and keeps its tool calls and observations in its own scratchpad (which the others
  never see, so the shared history stays short).
- finish: the writer's last report (or the last report of anyone, if the writer never ran),
  the sources the researcher found, and a trace of who did what, in order.

With the option approve_final (a checkpointer and a thread are needed), the supervisor's FINISH goes
to `review_final` first: a person approves the answer, edits it (their text is the answer) or
rejects it with a reason, which ends the run without an answer.

Bounds, checked in `stop_reason` before every handoff: the number of handoffs (max_handoffs),
and the run's LLM-call budget, token budget and wall-clock time (`Bounds`); a member whose turn
comes after the budget is spent does not call its model. A stopped team answers with the last
report it has. Members can carry their own chat models; everything else (settings, the default
model, the store the researcher searches) comes from the run's context, so a per-run
``{"configurable": {"max_llm_calls": 4}}`` or ``{"configurable": {"max_handoffs": 2}}`` bounds the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field, create_model, field_validator

from graphcraft.chains.approval import ApprovalError, ask_person, rejection_answer, resume_clock
from graphcraft.chains.tool_calls import StepRun, collect_sources, run_with_tools
from graphcraft.config import Settings, settings_from
from graphcraft.models import message_text, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage, total_tokens
from graphcraft.runtime.bounds import start_clock
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.reducers import usage_by_key
from graphcraft.runtime.result import InputState, OutputState, make_trace
from graphcraft.tools.team_tools import analysis_tools, research_tools

GRAPH = "supervisor"
DESCRIPTION = (
    "Supervisor team: a coordinator hands work to a researcher (retrieval), an analyst (calculator/python) and a "
    "writer via Command handoffs, bounded by handoffs and tokens; the trace shows who did what."
)

FINISH = "FINISH"
MAX_HANDOFFS = 8  # default of the max_handoffs option
MAX_TOOL_CALLS = 4  # default of the max_tool_calls option: per assignment, for a member's tool loop
HISTORY_MESSAGES = 12  # shared-history messages shown to a member (the newest)
SCRATCHPAD_ENTRIES = 3  # own earlier entries shown to a member
PREVIEW_CHARS = 600

SUPERVISOR_PROMPT = (
    "You coordinate a team to complete the user's task. Team members:\n{roster}\n"
    "Pick who acts next and give them a precise, self-contained assignment. Hand each piece of work to the "
    "member whose speciality it is. When the final answer has been written, choose FINISH. "
    "You have {left} handoff(s) left; make sure the final answer gets written before they run out."
)
TEAM_TASK = "User's task: {question}\n\nTeam history so far:\n{history}"
SCRATCHPAD_NOTE = "- earlier assignment: {task}\n  tool calls: {tools}\n  your report: {report}"
RESEARCHER_PROMPT = (
    "You are the team's researcher. Search for the facts the assignment needs, then report them briefly, "
    "citing each source as [source]. Report only what the search results support."
)
ANALYST_PROMPT = (
    "You are the team's analyst. Use the tools for every computation; never do arithmetic in your head. "
    "Report the results and how you got them, briefly."
)
WRITER_PROMPT = (
    "You are the team's writer. Write the final answer to the user's task from the team's findings only, "
    "clearly and concisely, keeping the citations. Say what is unknown rather than inventing it."
)


class State(InputState, OutputState, total=False):
    messages: list[AnyMessage]  # shared history: assignments and reports
    scratchpads: dict[str, list[dict]]  # per member: its private working notes
    member: str  # who holds the current assignment
    task: str  # the current assignment
    handoffs: int  # supervisor -> member handoffs so far; bounded by max_handoffs
    started_at: float  # the run's wall clock (runtime.bounds)
    stop_reason: str | None  # the bound that stopped the team, None when the supervisor chose FINISH
    asked_at: float  # when the answer was shown for approval: a person's time does not count against the run's
    approval: list[dict[str, Any]]  # a person's decision on the final answer (approve_final)
    edited_answer: str | None  # the answer as the person edited it
    rejection: str | None  # why the person rejected the final answer (None: not rejected)
    # Plain channels (no reducer; one member works at a time), reset by the run's first supervisor
    # turn: a thread that is asked a second question (Studio, LangGraph Server) starts a fresh run.
    steps: list[dict]  # who did what, in order
    found_sources: list[dict]
    usage: Usage
    agent_usage: dict[str, Usage]


# ---------------------------------------------------------------------- the team
ToolFactory = Callable[[Context], Sequence[BaseTool]]
"""Makes a member's tools from the run's context when the member starts an assignment."""


@dataclass
class TeamMember:
    """A specialised agent: what the supervisor knows of it, its instructions, tools and model."""

    name: str
    description: str
    prompt: str
    tools: Sequence[BaseTool] | ToolFactory = ()
    model: BaseChatModel | None = None

    def tools_for(self, ctx: Context) -> list[BaseTool]:
        return list(self.tools(ctx) if callable(self.tools) else self.tools)


def default_team(enable_python: bool = False) -> list[TeamMember]:
    analyst_tools = "calculator" + (", python" if enable_python else "")
    return [
        TeamMember(
            "researcher",
            "finds facts in the ingested documents (and the web or entity graph when configured), with sources",
            RESEARCHER_PROMPT,
            research_tools,
        ),
        TeamMember(
            "analyst",
            f"computes, compares and checks numbers ({analyst_tools})",
            ANALYST_PROMPT,
            partial(analysis_tools, python=enable_python),
        ),
        TeamMember("writer", "writes the final answer for the user from the team's findings", WRITER_PROMPT),
    ]


def make_team(
    agents: Sequence[TeamMember | Mapping[str, Any] | str] | Mapping[str, Any] | None = None,
    *,
    enable_python: bool = False,
) -> list[TeamMember]:
    """The team: the default one; a mapping name -> model / TeamMember / dict of fields that adapts
    (or extends) it; or a list of members (TeamMember, dict, or a default member's name)."""
    defaults = {m.name: m for m in default_team(enable_python)}
    if agents is None:
        return list(defaults.values())
    if isinstance(agents, Mapping):
        team = dict(defaults)
        for name, value in agents.items():
            team[name] = _member(name, value, team.get(name))
        members = list(team.values())
    else:
        members = []
        for item in agents:
            if isinstance(item, str):
                if item not in defaults:
                    raise ValueError(f"unknown team member {item!r}; give a TeamMember or one of {', '.join(defaults)}")
                members.append(defaults[item])
            else:
                name = item.name if isinstance(item, TeamMember) else item["name"]
                members.append(_member(name, item, defaults.get(name)))
    names = [m.name for m in members]
    if not members or len(set(names)) != len(names) or FINISH in names:
        raise ValueError(f"team member names must be unique and not {FINISH!r}: {names}")
    return members


def _member(name: str, value: Any, base: TeamMember | None) -> TeamMember:
    if isinstance(value, TeamMember):
        return value
    if isinstance(value, BaseChatModel):
        if base is None:
            raise ValueError(f"{name!r} is not a default member: give a TeamMember or a dict with its prompt")
        return replace(base, model=value)
    fields = {k: v for k, v in dict(value).items() if k != "name"}
    if base is not None:
        return replace(base, **fields)
    fields.setdefault("description", name)
    fields.setdefault("prompt", f"You are the team's {name}.")
    return TeamMember(name=name, **fields)


def team_of(ctx: Context) -> list[TeamMember]:
    """The run's team (the build option "team"; the default team for a node called on its own)."""
    team: list[TeamMember] = ctx.option("team") or default_team()
    return team


# ---------------------------------------------------------------------- the supervisor's choice
class Route(BaseModel):
    """Who acts next, and what exactly they should do."""

    next: str = Field(description="the team member who acts next, or FINISH when the final answer is written")
    task: str = Field(default="", max_length=300, description="a precise, self-contained assignment for that member")
    reason: str = Field(default="", max_length=160, description="why this member, in one sentence")


@lru_cache(maxsize=16)
def route_schema(names: tuple[str, ...]) -> type[Route]:
    """`Route` whose `next` must be one of `names` or FINISH (case-insensitive; the exact names are
    the JSON-schema enum, which a grammar-constrained model cannot leave)."""
    allowed = {n.lower(): n for n in (*names, FINISH)}

    def _known(cls: type, value: str) -> str:
        key = value.strip().strip(".").lower()
        if key not in allowed:
            raise ValueError(f"next must be one of: {', '.join(allowed.values())}")
        return allowed[key]

    return create_model(
        "Route",
        __base__=Route,
        __doc__=Route.__doc__,
        next=(
            str,
            Field(
                description=f"exactly one of: {', '.join(allowed.values())}",
                json_schema_extra={"enum": list(allowed.values())},
            ),
        ),
        # pydantic accepts a classmethod here, which its annotation (plain callables) does not say.
        __validators__={"_known": cast(Callable[..., Any], field_validator("next")(classmethod(_known)))},
    )


def supervisor_prompt(team: Sequence[TeamMember], state: State, max_handoffs: int) -> list[BaseMessage]:
    roster = "\n".join(f"- {m.name}: {m.description}" for m in team)
    left = max_handoffs - state.get("handoffs", 0)
    return [
        SystemMessage(SUPERVISOR_PROMPT.format(roster=roster, left=left)),
        HumanMessage(TEAM_TASK.format(question=state["question"], history=_history(state))),
    ]


def member_prompt(member: TeamMember, state: State) -> list[BaseMessage]:
    """The member's instructions, the shared history, its own scratchpad and its assignment."""
    parts = [TEAM_TASK.format(question=state["question"], history=_history(state))]
    own = state.get("scratchpads", {}).get(member.name, [])[-SCRATCHPAD_ENTRIES:]
    if own:
        notes = [
            SCRATCHPAD_NOTE.format(
                task=entry["task"],
                tools="; ".join(f"{c['tool']}({c['args']}) -> {c['output'][:200]}" for c in entry["tool_calls"])
                or "no tools",
                report=entry["report"][:300],
            )
            for entry in own
        ]
        parts.append("Your scratchpad (only you see it):\n" + "\n".join(notes))
    parts.append(f"Your assignment now: {state.get('task') or state['question']}")
    return [SystemMessage(member.prompt), HumanMessage("\n\n".join(parts))]


def _history(state: State) -> str:
    messages = state.get("messages", [])[-HISTORY_MESSAGES:]
    if not messages:
        return "(nothing yet)"
    return "\n".join(f"[{getattr(m, 'name', None) or m.type}] {message_text(m)[:PREVIEW_CHARS]}" for m in messages)


def _first_idle(team: Sequence[TeamMember], state: State) -> str:
    acted = {s["actor"] for s in state.get("steps", []) if s.get("action") == "work"}
    return next((m.name for m in team if m.name not in acted), FINISH)


def fresh_run(state: State) -> dict[str, Any]:
    """The reset that starts a run: on its first turn, or when the thread holds a finished run."""
    if state.get("steps") and not state.get("trace"):
        return {}
    return {
        **start_clock(),
        "messages": [],
        "scratchpads": {},
        "member": "",
        "task": "",
        "handoffs": 0,
        "stop_reason": None,
        "steps": [],
        "found_sources": [],
        "usage": empty_usage(),
        "agent_usage": {},
        "approval": [],
        "edited_answer": None,
        "rejection": None,
        "answer": "",
        "sources": [],
        "trace": {},
    }


# ---------------------------------------------------------------------- nodes
def supervisor(state: State, config: RunnableConfig) -> Command:
    """Pick who acts next, with a precise assignment, or finish; stop first when a bound is reached."""
    ctx = context(config, GRAPH)
    reset = fresh_run(state)
    now = cast(State, {**state, **reset})
    if reason := stop_reason(now, ctx):
        stop = {"actor": "supervisor", "action": "stop", "reason": reason}
        return Command(goto="finish", update={**reset, "stop_reason": reason, "steps": now["steps"] + [stop]})
    team = team_of(ctx)
    chooser = ctx.option("supervisor_model") or ctx.require_model("the supervisor")
    fallback = Route(next=_first_idle(team, now), task="", reason="fallback: first member who has not acted")
    choice = structured_call(
        chooser,
        route_schema(tuple(m.name for m in team)),
        supervisor_prompt(team, now, int(ctx.option("max_handoffs", MAX_HANDOFFS))),
        fallback=fallback,
        max_repairs=ctx.settings.max_structured_repairs,
    )
    route = choice.value
    step: dict[str, Any] = {
        "actor": "supervisor",
        "action": "handoff" if route.next != FINISH else "finish",
        "to": route.next,
        "task": route.task,
        "reason": route.reason,
        "llm_calls": int(choice.usage.get("llm_calls", 0)),
    }
    if choice.fallback or choice.errors:
        step["structured_output"] = choice.trace()
    update: dict[str, Any] = {
        **reset,
        "usage": add_usage(now["usage"], choice.usage),
        "agent_usage": usage_by_key(now["agent_usage"], {"supervisor": choice.usage}),
        "steps": now["steps"] + [step],
    }
    if route.next == FINISH:
        if ctx.option("approve_final", False):
            return Command(goto="review_final", update={**update, "asked_at": time.time()})
        return Command(goto="finish", update=update)
    task = route.task or state["question"]
    handoff = AIMessage(f"@{route.next}: {task}", name="supervisor")
    update.update(member=route.next, task=task, handoffs=now["handoffs"] + 1, messages=now["messages"] + [handoff])
    return Command(goto=route.next, update=update)


def work(state: State, config: RunnableConfig) -> Command:
    """The assigned member does its assignment in a bounded tool loop and reports back to the supervisor."""
    ctx = context(config, GRAPH)
    member = next(m for m in team_of(ctx) if m.name == state["member"])
    task = state.get("task", "")
    if reason := ctx.bounds.reached(state):  # the budget was spent by the supervisor's own choice
        skipped = {"actor": member.name, "action": "skip", "task": task, "reason": reason}
        return Command(goto="supervisor", update={"steps": state.get("steps", []) + [skipped]})
    run = run_member(member, state, ctx)
    report = run.text.strip() or "(no report)"
    sources = collect_sources(run.tool_calls)
    calls = [{"tool": c["tool"], "args": c["args"], "ok": c["ok"]} for c in run.tool_calls]
    entry = {
        "task": task,
        "tool_calls": [{**c, "output": r["output"]} for c, r in zip(calls, run.tool_calls, strict=False)],
        "report": report,
        "stop_reason": run.stop_reason,
    }
    step = {
        "actor": member.name,
        "action": "work",
        "task": task,
        "tool_calls": calls,
        "sources": len(sources),
        "llm_calls": int(run.usage.get("llm_calls", 0)),
        "tokens": total_tokens(run.usage),
        "stop_reason": run.stop_reason,
        "report": report[:PREVIEW_CHARS],
    }
    pads = state.get("scratchpads", {})
    return Command(
        goto="supervisor",
        update={
            "messages": state.get("messages", []) + [AIMessage(report, name=member.name)],
            "scratchpads": {**pads, member.name: pads.get(member.name, []) + [entry]},
            "found_sources": state.get("found_sources", []) + sources,
            "usage": add_usage(state.get("usage"), run.usage),
            "agent_usage": usage_by_key(state.get("agent_usage"), {member.name: run.usage}),
            "steps": state.get("steps", []) + [step],
        },
    )


def run_member(member: TeamMember, state: State, ctx: Context) -> StepRun:
    """The member's tool loop, bounded by max_tool_calls; a model without tool calling reports without tools."""
    chat = member.model or ctx.require_model(f"team member {member.name!r}")
    max_tool_calls = int(ctx.option("max_tool_calls", MAX_TOOL_CALLS))
    prompt = member_prompt(member, state)
    try:
        return run_with_tools(
            chat, prompt, member.tools_for(ctx), max_tool_calls=max_tool_calls, max_turns=max_tool_calls + 1
        )
    except NotImplementedError:  # no native tool calling: the member reports from the shared history alone
        run = run_with_tools(chat, prompt, [], max_turns=1)
        run.stop_reason = "no_tool_calling"
        return run


def review_final(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Show a person the team's final answer (option approve_final): approve it, edit it, or reject it."""
    ctx = context(config, GRAPH)
    final = final_report(state, ctx)
    payload = {"kind": "final", "graph": GRAPH, "question": state["question"]}
    decision = ask_person(
        {**payload, "answer": message_text(final) if final else "", "answered_by": final.name if final else None}
    )
    if decision.action == "edit" and not isinstance(decision.value, str):
        raise ApprovalError(f"an edited answer must be text, not {str(decision.value)[:80]!r}")
    step = {"actor": "person", "action": decision.action, "reason": decision.reason}
    return {
        **resume_clock(state),
        "approval": [{"kind": "final", **decision.record()}],
        "edited_answer": decision.value if decision.action == "edit" else None,
        "rejection": decision.reason if decision.action == "reject" else None,
        "steps": state.get("steps", []) + [step],
    }


def final_report(state: State, ctx: Context) -> AIMessage | None:
    """The writer's last report, else the last report of anyone, else None."""
    names = {m.name for m in team_of(ctx)}
    reports = [m for m in state.get("messages", []) if isinstance(m, AIMessage) and m.name in names]
    last = [m for m in reports if m.name == "writer"] or reports
    return last[-1] if last else None


def finish(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer with the writer's last report (or anyone's), the sources found, and who did what."""
    ctx = context(config, GRAPH)
    final, reason, rejection = final_report(state, ctx), state.get("stop_reason"), state.get("rejection")
    answer = (
        message_text(final) if final is not None else f"No answer: the team stopped ({reason}) before anyone reported."
    )
    if rejection is not None:
        answer = rejection_answer("the team's final answer", rejection)
    elif state.get("edited_answer") is not None:
        answer = str(state["edited_answer"])
    steps = state.get("steps", [])
    trace = make_trace(
        GRAPH,
        state,
        action="rejected" if rejection is not None else "stopped" if reason else "answered",
        stop_reason=reason,
        iterations=state.get("handoffs", 0),
        steps=steps,
        usage=state.get("usage"),
        handoffs=state.get("handoffs", 0),
        answered_by=final.name if final is not None else None,
        who_did_what=[_summary(s) for s in steps],
        agents={name: _usage_row(u) for name, u in state.get("agent_usage", {}).items()},
        approval=state.get("approval", []),
        bounds={
            "max_handoffs": int(ctx.option("max_handoffs", MAX_HANDOFFS)),
            "max_tool_calls": int(ctx.option("max_tool_calls", MAX_TOOL_CALLS)),
            "max_llm_calls": ctx.bounds.max_llm_calls,
            "token_budget": ctx.bounds.token_budget,
            "max_seconds": ctx.bounds.max_seconds,
        },
    )
    sources = collect_sources([{"sources": state.get("found_sources", [])}])  # first occurrence of each chunk
    return {"answer": answer, "sources": sources, "trace": trace}


def _summary(step: Mapping[str, Any]) -> str:
    if step["actor"] == "person":
        return f"person: {step['action']} the final answer" + (f" ({step['reason']})" if step.get("reason") else "")
    if step["actor"] == "supervisor":
        if step["action"] == "stop":
            return f"supervisor stopped: {step['reason']}"
        if step["action"] == "finish":
            return f"supervisor finished: {step.get('reason', '')[:120]}"
        return f"supervisor -> {step['to']}: {step.get('task', '')[:120]}"
    if step["action"] == "skip":
        return f"{step['actor']} skipped: {step['reason']}"
    tools = ", ".join(c["tool"] for c in step.get("tool_calls", [])) or "no tools"
    return f"{step['actor']} ({tools}): {step.get('report', '')[:120]}"


def _usage_row(usage: Mapping[str, Any]) -> dict[str, int]:
    return {
        "llm_calls": int(usage.get("llm_calls", 0)),
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
    }


# ---------------------------------------------------------------------- routing (every loop bounded here)
def stop_reason(state: State, ctx: Context) -> str | None:
    """The bound that ends the team's work before another handoff: max_handoffs, or a run bound."""
    if state.get("handoffs", 0) >= int(ctx.option("max_handoffs", MAX_HANDOFFS)):
        return "max_handoffs"
    return ctx.bounds.reached(state)


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    agents: Sequence[TeamMember | Mapping[str, Any] | str] | Mapping[str, Any] | None = None,
    *,
    max_handoffs: int = MAX_HANDOFFS,
    max_tool_calls: int = MAX_TOOL_CALLS,
    enable_python: bool = False,
    supervisor_model: BaseChatModel | None = None,
    approve_final: bool = False,
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the supervisor graph.

    model: default chat model (members without their own, and the supervisor); None: the configured one.
    agents: the team (see `make_team`), e.g. {"researcher": model_a, "writer": model_b} to give members
      their own models.
    max_handoffs: supervisor -> member handoffs before the team must stop (the runs' budgets, e.g.
      max_llm_calls=6 or token_budget=5000, are Settings fields and may be given here too).
    max_tool_calls: per assignment, for a member's tool loop.
    enable_python: give the analyst the sandboxed python tool (fixed when the graph is built: a run's
      configuration cannot switch code execution on).
    supervisor_model: a chat model for the supervisor alone.
    approve_final: a person approves, edits or rejects the final answer before it is given (needs a
      checkpointer).
    checkpointer: a LangGraph checkpointer for threads (each new question on a thread is a fresh run).
    """
    team = make_team(agents, enable_python=bool(enable_python))
    ctx = Context(
        settings_from(settings, options),
        model=model,
        options={
            "team": team,
            "max_handoffs": int(max_handoffs),
            "max_tool_calls": int(max_tool_calls),
            "supervisor_model": supervisor_model,
            "approve_final": bool(approve_final),
        },
    )
    names = tuple(m.name for m in team)
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    g.add_node("supervisor", supervisor, destinations=(*names, "review_final", "finish"))
    for name in names:
        g.add_node(name, work, destinations=("supervisor",))
    g.add_node("review_final", review_final)
    g.add_node("finish", finish)
    g.add_edge("review_final", "finish")
    g.add_edge(START, "supervisor")
    g.add_edge("finish", END)
    # Two supersteps per handoff plus the final ones: the handoff bound, not LangGraph, ends the loop.
    compiled = g.compile(name=GRAPH, checkpointer=checkpointer).with_config(recursion_limit=2 * int(max_handoffs) + 10)
    return bind_context(compiled, GRAPH, ctx)


graph = build()
