"""Supervisor team: a coordinator hands work to specialised agents and back until the answer is written.

supervisor -> researcher | analyst | writer | ... -> supervisor -> ... -> finish

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

Bounds, checked in `stop_reason` before every handoff: the number of handoffs, the LLM-call
budget, the token budget and the run's wall-clock time (Settings.max_seconds); a stopped team
answers with the last report it has. Members can carry their own chat models.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Annotated, Any, Protocol, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command
from pydantic import BaseModel, Field, create_model, field_validator
from typing_extensions import TypedDict

from graphcraft.chains.tool_calls import run_with_tools
from graphcraft.config import Settings, get_settings
from graphcraft.models import message_text, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, total_tokens
from graphcraft.runtime.bounds import out_of_time, start_clock
from graphcraft.runtime.context import Context as Resources
from graphcraft.runtime.reducers import append_by_key, usage_by_key
from graphcraft.runtime.result import make_trace

DESCRIPTION = (
    "Supervisor team: a coordinator hands work to a researcher (retrieval), an analyst (calculator/python) and a "
    "writer via Command handoffs, bounded by handoffs and tokens; the trace shows who did what."
)

FINISH = "FINISH"
HISTORY_MESSAGES = 12  # shared-history messages shown to a member (the newest)
SCRATCHPAD_ENTRIES = 3  # own earlier entries shown to a member
PREVIEW_CHARS = 600

ToolFactory = Callable[[Settings], Sequence[BaseTool]]


@dataclass
class TeamMember:
    """A specialised agent: what the supervisor knows of it, its instructions, tools and model."""

    name: str
    description: str
    prompt: str
    tools: Sequence[BaseTool] | ToolFactory = ()
    model: BaseChatModel | None = None

    def tools_for(self, settings: Settings) -> list[BaseTool]:
        return list(self.tools(settings) if callable(self.tools) else self.tools)


def _research_tools(settings: Settings) -> list[BaseTool]:
    from graphcraft.tools.retrieval import knowledge_tools

    return knowledge_tools(settings)


def _analysis_tools(enable_python: bool) -> ToolFactory:
    def tools(settings: Settings) -> list[BaseTool]:
        from graphcraft.tools.calculator import calculator_tool

        out: list[BaseTool] = [calculator_tool()]
        if enable_python:
            from graphcraft.tools.python_sandbox import PythonSandbox, python_tool

            out.append(python_tool(PythonSandbox()))
        return out

    return tools


def default_team(enable_python: bool = False) -> list[TeamMember]:
    return [
        TeamMember(
            "researcher",
            "finds facts in the ingested documents (and the web or entity graph when configured), with sources",
            "You are the team's researcher. Search for the facts the assignment needs, then report them briefly, "
            "citing each source as [source]. Report only what the search results support.",
            _research_tools,
        ),
        TeamMember(
            "analyst",
            "computes, compares and checks numbers (calculator" + (", python" if enable_python else "") + ")",
            "You are the team's analyst. Use the tools for every computation; never do arithmetic in your head. "
            "Report the results and how you got them, briefly.",
            _analysis_tools(enable_python),
        ),
        TeamMember(
            "writer",
            "writes the final answer for the user from the team's findings",
            "You are the team's writer. Write the final answer to the user's task from the team's findings only, "
            "clearly and concisely, keeping the citations. Say what is unknown rather than inventing it.",
        ),
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


# ---------------------------------------------------------------------------- routing schema


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


# ---------------------------------------------------------------------------- state


class _MemberNode(Protocol):
    """A team member's node (as a Protocol: LangGraph's node types name the `config` parameter, a Callable cannot)."""

    def __call__(self, state: SupervisorState, config: RunnableConfig) -> Command: ...


class SupervisorState(TypedDict, total=False):
    question: str
    messages: Annotated[list[AnyMessage], add_messages]  # shared history: assignments and reports
    scratchpads: Annotated[dict[str, list[dict]], append_by_key]  # per member: its private working notes
    task: str  # the current assignment
    handoffs: int  # supervisor -> member handoffs so far; bounded by max_handoffs
    started_at: float  # the run's wall clock (set by the first supervisor turn)
    steps: Annotated[list[dict], operator.add]  # who did what, in order
    found_sources: Annotated[list[dict], operator.add]
    usage: Annotated[Usage, add_usage]
    agent_usage: Annotated[dict[str, Usage], usage_by_key]
    stop_reason: str
    answer: str
    sources: list[dict]
    trace: dict


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    agents: Sequence[TeamMember | Mapping[str, Any] | str] | Mapping[str, Any] | None = None,
    *,
    max_handoffs: int = 8,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    max_tool_calls: int = 4,
    enable_python: bool = False,
    supervisor_model: BaseChatModel | None = None,
    **settings_overrides: Any,
) -> Any:
    """Compile the supervisor graph.

    model: default chat model (members without their own, and the supervisor); None: the configured one.
    agents: the team (see `make_team`), e.g. {"researcher": model_a, "writer": model_b} to give members
      their own models.
    max_handoffs / max_llm_calls / token_budget: bounds checked before every handoff (budgets default to Settings).
    max_tool_calls: per assignment, for a member's tool loop.
    enable_python: give the analyst the sandboxed python tool.
    """
    settings = settings or get_settings(**{k: v for k, v in settings_overrides.items() if k in Settings.model_fields})
    team = make_team(agents, enable_python=bool(enable_python))
    names = tuple(m.name for m in team)
    max_handoffs = int(max_handoffs)
    base = Resources(settings, model=model)
    tool_cache: dict[tuple[str, int], list[BaseTool]] = {}

    def budgets(res: Resources) -> tuple[int, int]:
        return (
            int(max_llm_calls) if max_llm_calls is not None else res.settings.max_llm_calls,
            int(token_budget) if token_budget is not None else res.settings.token_budget,
        )

    # ------------------------------------------------------------------ routing (the loop's bounds live here)
    def stop_reason(state: SupervisorState, res: Resources) -> str | None:
        calls_cap, tokens_cap = budgets(res)
        usage = state.get("usage", {})
        if state.get("handoffs", 0) >= max_handoffs:
            return "max_handoffs"
        if usage.get("llm_calls", 0) >= calls_cap:
            return "max_llm_calls"
        if total_tokens(usage) >= tokens_cap:
            return "token_budget"
        if out_of_time(state, res.settings.max_seconds):
            return "max_seconds"
        return None

    # ------------------------------------------------------------------ nodes
    def supervisor(state: SupervisorState, config: RunnableConfig) -> Command:
        res = base.for_config(config)
        clock = start_clock() if not state.get("steps") else {}  # the first turn starts the run's clock
        reason = stop_reason({**state, **clock}, res)
        if reason is not None:
            return Command(
                goto="finish",
                update={
                    **clock,
                    "stop_reason": reason,
                    "steps": [{"actor": "supervisor", "action": "stop", "reason": reason}],
                },
            )
        chooser = supervisor_model or res.require_model("the supervisor")
        fallback = Route(next=_first_idle(team, state), task="", reason="fallback: first member who has not acted")
        choice = structured_call(
            chooser,
            route_schema(names),
            supervisor_prompt(team, state, max_handoffs),
            fallback=fallback,
            max_repairs=res.settings.max_structured_repairs,
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
            **clock,
            "usage": choice.usage,
            "agent_usage": {"supervisor": choice.usage},
            "steps": [step],
        }
        if route.next == FINISH:
            return Command(goto="finish", update={**update, "stop_reason": "finished"})
        task = route.task or state["question"]
        update.update(
            task=task,
            handoffs=state.get("handoffs", 0) + 1,
            messages=[AIMessage(f"@{route.next}: {task}", name="supervisor")],
        )
        return Command(goto=route.next, update=update)

    def make_member_node(member: TeamMember) -> _MemberNode:
        def work(state: SupervisorState, config: RunnableConfig) -> Command:
            res = base.for_config(config)
            chat = member.model or res.require_model(f"team member {member.name!r}")
            key = (member.name, id(res))
            if key not in tool_cache:
                tool_cache[key] = member.tools_for(res.settings)
            tools = tool_cache[key]
            try:
                run = run_with_tools(
                    chat,
                    member_prompt(member, state),
                    tools,
                    max_tool_calls=max_tool_calls,
                    max_turns=max_tool_calls + 1,
                )
            except NotImplementedError:  # no native tool calling: the member reports from the shared history alone
                run = run_with_tools(chat, member_prompt(member, state), [], max_turns=1)
                run.stop_reason = "no_tool_calling"
            report = run.text.strip() or "(no report)"
            from graphcraft.chains.tool_calls import collect_sources

            sources = collect_sources(run.tool_calls)
            calls = [{"tool": c["tool"], "args": c["args"], "ok": c["ok"]} for c in run.tool_calls]
            entry = {
                "task": state.get("task", ""),
                "tool_calls": [{**c, "output": r["output"]} for c, r in zip(calls, run.tool_calls, strict=False)],
                "report": report,
                "stop_reason": run.stop_reason,
            }
            step = {
                "actor": member.name,
                "action": "work",
                "task": state.get("task", ""),
                "tool_calls": calls,
                "sources": len(sources),
                "llm_calls": int(run.usage.get("llm_calls", 0)),
                "tokens": total_tokens(run.usage),
                "stop_reason": run.stop_reason,
                "report": report[:PREVIEW_CHARS],
            }
            return Command(
                goto="supervisor",
                update={
                    "messages": [AIMessage(report, name=member.name)],
                    "scratchpads": {member.name: [entry]},
                    "found_sources": sources,
                    "usage": run.usage,
                    "agent_usage": {member.name: run.usage},
                    "steps": [step],
                },
            )

        work.__name__ = member.name
        return work

    def finish(state: SupervisorState) -> dict:
        reports = [m for m in state.get("messages", []) if isinstance(m, AIMessage) and m.name in names]
        by_writer = [m for m in reports if m.name == "writer"]
        last = by_writer or reports
        final = last[-1] if last else None
        reason = state.get("stop_reason", "finished")
        answer = (
            message_text(final)
            if final is not None
            else f"No answer: the team stopped ({reason}) before anyone reported."
        )
        steps = state.get("steps", [])
        trace = make_trace(
            "supervisor",
            {**state, "iterations": state.get("handoffs", 0)},
            stop_reason=reason,
            handoffs=state.get("handoffs", 0),
            answered_by=final.name if final is not None else None,
            who_did_what=[_summary(s) for s in steps],
            steps=steps,
            agents={name: _usage_row(u) for name, u in state.get("agent_usage", {}).items()},
            bounds={
                "max_handoffs": max_handoffs,
                "max_llm_calls": budgets(base)[0],
                "token_budget": budgets(base)[1],
                "max_tool_calls": max_tool_calls,
                "max_seconds": base.settings.max_seconds,
            },
        )
        from graphcraft.chains.tool_calls import collect_sources

        sources = collect_sources([{"sources": state.get("found_sources", [])}])  # first occurrence of each chunk
        return {"answer": answer, "sources": sources, "trace": trace}

    g = StateGraph(SupervisorState)
    g.add_node("supervisor", supervisor, destinations=(*names, "finish"))
    for member in team:
        g.add_node(member.name, make_member_node(member), destinations=("supervisor",))
    g.add_node("finish", finish)
    g.add_edge(START, "supervisor")
    g.add_edge("finish", END)
    # Two supersteps per handoff plus the final ones: the handoff bound, not LangGraph, ends the loop.
    return g.compile(name="supervisor").with_config(recursion_limit=2 * max_handoffs + 10)


# ---------------------------------------------------------------------------- prompts


def supervisor_prompt(team: Sequence[TeamMember], state: SupervisorState, max_handoffs: int) -> list[BaseMessage]:
    roster = "\n".join(f"- {m.name}: {m.description}" for m in team)
    left = max_handoffs - state.get("handoffs", 0)
    system = (
        "You coordinate a team to complete the user's task. Team members:\n" + roster + "\n"
        "Pick who acts next and give them a precise, self-contained assignment. Hand each piece of work to the "
        "member whose speciality it is. When the final answer has been written, choose FINISH. "
        f"You have {left} handoff(s) left; make sure the final answer gets written before they run out."
    )
    return [
        SystemMessage(system),
        HumanMessage(f"User's task: {state['question']}\n\nTeam history so far:\n{_history(state)}"),
    ]


def member_prompt(member: TeamMember, state: SupervisorState) -> list[BaseMessage]:
    """The member's instructions, the shared history, its own scratchpad and its assignment."""
    parts = [f"User's task: {state['question']}", f"Team history so far:\n{_history(state)}"]
    own = state.get("scratchpads", {}).get(member.name, [])[-SCRATCHPAD_ENTRIES:]
    if own:
        notes = []
        for entry in own:
            tools = (
                "; ".join(f"{c['tool']}({c['args']}) -> {c['output'][:200]}" for c in entry["tool_calls"]) or "no tools"
            )
            notes.append(
                f"- earlier assignment: {entry['task']}\n  tool calls: {tools}\n  your report: {entry['report'][:300]}"
            )
        parts.append("Your scratchpad (only you see it):\n" + "\n".join(notes))
    parts.append(f"Your assignment now: {state.get('task') or state['question']}")
    return [SystemMessage(member.prompt), HumanMessage("\n\n".join(parts))]


def _history(state: SupervisorState) -> str:
    messages = state.get("messages", [])[-HISTORY_MESSAGES:]
    if not messages:
        return "(nothing yet)"
    return "\n".join(f"[{getattr(m, 'name', None) or m.type}] {message_text(m)[:PREVIEW_CHARS]}" for m in messages)


def _first_idle(team: Sequence[TeamMember], state: SupervisorState) -> str:
    acted = {s["actor"] for s in state.get("steps", []) if s.get("action") == "work"}
    return next((m.name for m in team if m.name not in acted), FINISH)


def _summary(step: Mapping[str, Any]) -> str:
    if step["actor"] == "supervisor":
        if step["action"] == "stop":
            return f"supervisor stopped: {step['reason']}"
        if step["action"] == "finish":
            return f"supervisor finished: {step.get('reason', '')[:120]}"
        return f"supervisor -> {step['to']}: {step.get('task', '')[:120]}"
    tools = ", ".join(c["tool"] for c in step.get("tool_calls", [])) or "no tools"
    return f"{step['actor']} ({tools}): {step.get('report', '')[:120]}"


def _usage_row(usage: Mapping[str, Any]) -> dict[str, int]:
    return {
        "llm_calls": int(usage.get("llm_calls", 0)),
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
    }


graph = build()
