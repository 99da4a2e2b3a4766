"""Tool agent: a ReAct loop (reason -> act with a tool -> observe) with budgets and memory.

begin -> recall -> compact -> agent <-> tools -> finalize -> remember

- agent: the model, bound to the tools, decides the next tool calls or answers. A model with
  no native tool calling (an in-process GGUF, a plain completion server) is asked for one
  structured action per turn instead, {"tool", "args", "answer"}, whose tool names are a
  JSON-schema enum (a grammar-constrained model cannot name a tool that does not exist); the
  action becomes an ordinary tool call, so the rest of the loop is the same;
- tools: runs the calls; a failing tool becomes an error observation, never a crash;
- bounds, checked in the routing functions: tool-call budget, model turns, LLM calls, tokens,
  wall-clock time (Settings.max_seconds), and a loop guard that stops a model repeating the
  same call with the same arguments; a stopped run answers with the last tool result;
- memory: with a checkpointer, a thread's messages persist between runs (compact folds old
  turns into a running summary); with a Store, `recall` brings back related facts/episodes and
  `remember` writes this run's episode (and, optionally, durable facts).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field, create_model, field_validator
from typing_extensions import TypedDict

from graphcraft.chains.tool_calls import LoopGuard, call_key, collect_sources, execute_tool_call
from graphcraft.config import Settings, get_settings
from graphcraft.memory.context import ContextWindow
from graphcraft.memory.long_term import LongTermMemory, extract_facts, format_memories
from graphcraft.models import invoke_llm, message_text, require_chat_model, structured_call
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.runtime.bounds import Bounds, make_trace, start_clock
from graphcraft.runtime.result import usage_trace

DESCRIPTION = (
    "ReAct tool-calling agent (calculator, sandboxed files, optional python/MCP) with tool budget, loop guard "
    "and memory."
)

SYSTEM_PROMPT = (
    "You are a capable assistant that solves tasks step by step using tools when they help. "
    "Call a tool when you need a computation, a file, or data; otherwise answer directly. "
    "When you have the answer, reply with it plainly and do not call more tools."
)


FINAL_ANSWER = "final_answer"
ACTION_PROMPT = (
    "Reply with the next action as JSON: call one tool with its arguments, or give the final answer "
    f"with tool '{FINAL_ANSWER}'. Tools:\n"
)


class Action(BaseModel):
    """The next action: call one tool with its arguments, or give the final answer."""

    tool: str = Field(description=f"a tool name, or '{FINAL_ANSWER}' when you can answer")
    args: dict[str, Any] = Field(default_factory=dict, description="the tool's arguments (empty for the final answer)")
    answer: str = Field(default="", max_length=1000, description=f"the answer to the task (with '{FINAL_ANSWER}' only)")


@lru_cache(maxsize=16)
def action_schema(tools: tuple[str, ...]) -> type[Action]:
    """`Action` whose tool must be one of `tools` or the final answer (also the JSON-schema enum)."""
    names = (*tools, FINAL_ANSWER)

    def _known(cls: type, value: str) -> str:
        if value.strip() not in names:
            raise ValueError(f"tool must be one of: {', '.join(names)}")
        return value.strip()

    tool = Field(description=f"one of: {', '.join(names)}", json_schema_extra={"enum": list(names)})
    return create_model(
        "Action",
        __base__=Action,
        __doc__=Action.__doc__,
        tool=(str, tool),
        # pydantic accepts a classmethod here, which its annotation (plain callables) does not say.
        __validators__={"_known": cast(Callable[..., Any], field_validator("tool")(classmethod(_known)))},
    )


class ToolAgentState(TypedDict, total=False):
    question: str
    messages: Annotated[list[AnyMessage], add_messages]
    summary: str
    memories: list[dict[str, Any]]
    usage: Usage
    turns: int
    started_at: float
    tool_calls: list[dict[str, Any]]
    summarized: int
    stop_reason: str
    answer: str
    sources: list[dict[str, Any]]
    trace: dict[str, Any]


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    tools: list[BaseTool] | None = None,
    workspace: str | Path | None = None,
    enable_python: bool = False,
    mcp_config: str | Path | dict | None = None,
    max_tool_calls: int = 8,
    max_turns: int = 10,
    loop_limit: int = 2,
    max_llm_calls: int | None = None,
    token_budget: int | None = None,
    context_tokens: int = 6000,
    remember_facts: bool = False,
    system_prompt: str = SYSTEM_PROMPT,
    checkpointer: Any = None,
    memory_store: Any = None,
):
    """Compile the tool agent.

    tools: the agent's tools (default: `default_tools(workspace, enable_python)` plus MCP tools from
    `mcp_config`). loop_limit: how many times the same call (name + arguments) may be made.
    checkpointer / memory_store: short- and long-term memory (None: the run is stateless).
    """
    bounds = Bounds.from_settings(
        settings, max_iterations=max_turns, max_llm_calls=max_llm_calls, token_budget=token_budget
    )
    repairs = (settings or get_settings()).max_structured_repairs
    window = ContextWindow(max_tokens=context_tokens)
    loaded: dict[str, list[BaseTool]] = {}

    def llm() -> BaseChatModel:
        return require_chat_model(model, "the tool agent", settings)

    def toolset() -> list[BaseTool]:
        """Resolved on first use, so importing the module creates no workspace and starts no server."""
        if "tools" not in loaded:
            chosen = list(tools) if tools is not None else _default_toolset(settings, workspace, enable_python)
            if mcp_config is not None:
                from graphcraft.tools.mcp import load_mcp_tools

                chosen += load_mcp_tools(mcp_config)
            loaded["tools"] = chosen
        return loaded["tools"]

    def begin(state: ToolAgentState) -> dict:
        """Start a run: the question becomes the next human turn; per-run counters reset."""
        return {
            **start_clock(),
            "messages": [HumanMessage(state["question"])],
            "usage": empty_usage(),
            "turns": 0,
            "tool_calls": [],
            "stop_reason": "",
            "summarized": 0,
            "memories": [],
        }

    def recall(state: ToolAgentState, config: RunnableConfig) -> dict:
        store = get_store()
        if store is None:
            return {}
        memory = LongTermMemory(store, _user_id(config))
        return {"memories": memory.recall(state["question"])}

    def compact(state: ToolAgentState) -> dict:
        update = window.compact(llm(), state["messages"], state.get("summary", ""))
        if update:
            update["usage"] = add_usage(state.get("usage"), update["usage"])
        return update

    def agent(state: ToolAgentState) -> dict:
        system = system_prompt
        if state.get("memories"):
            system += "\n\n" + format_memories(state["memories"])
        try:
            bound = llm().bind_tools(toolset())
        except NotImplementedError:  # no native tool calling: one structured action per turn
            reply, usage = _act(
                llm(),
                toolset(),
                window.fit(state["messages"], state.get("summary", ""), system=system + "\n\n" + _catalogue(toolset())),
                repairs,
            )
        else:
            reply, usage = invoke_llm(bound, window.fit(state["messages"], state.get("summary", ""), system=system))
        return {"messages": [reply], "usage": add_usage(state.get("usage"), usage), "turns": state.get("turns", 0) + 1}

    def after_agent(state: ToolAgentState) -> str:
        """Run the requested tools unless the model answered or a bound is reached."""
        calls = _pending_calls(state)
        if not calls:
            return "finalize"
        return "finalize" if _stop_reason(state, calls) else "tools"

    def run_tools(state: ToolAgentState) -> dict:
        by_name = {t.name: t for t in toolset()}
        messages, records = [], list(state.get("tool_calls", []))
        for call in _pending_calls(state):
            message, record = execute_tool_call(by_name, call)
            messages.append(message)
            records.append({**record, "key": call_key(call["name"], call.get("args") or {})})
        return {"messages": messages, "tool_calls": records}

    def after_tools(state: ToolAgentState) -> str:
        return "finalize" if bounds.reached(state, state.get("turns", 0)) else "agent"

    def _stop_reason(state: ToolAgentState, calls: list[ToolCall]) -> str | None:
        done = state.get("tool_calls", [])
        guard = LoopGuard(loop_limit, [r["key"] for r in done])
        if any(guard.would_repeat(c["name"], c.get("args") or {}) for c in calls):
            return "repeated_tool_call"
        if len(done) + len(calls) > max_tool_calls:
            return "max_tool_calls"
        return bounds.reached(state, state.get("turns", 0))

    def finalize(state: ToolAgentState) -> dict:
        last = state["messages"][-1]
        calls = _pending_calls(state)
        update: dict[str, Any] = {}
        if calls:  # stopped by a bound: close the open tool calls so the thread stays valid
            reason = _stop_reason(state, calls) or "stopped"
            update["messages"] = [
                ToolMessage(content=f"not executed: {reason}", tool_call_id=c["id"], name=c["name"], status="error")
                for c in calls
            ]
        elif isinstance(last, AIMessage):
            reason = "answered" if message_text(last).strip() else "no_answer"  # an empty reply is not an answer
        else:
            reason = bounds.reached(state, state.get("turns", 0)) or "stopped"
        answer = message_text(last).strip() if isinstance(last, AIMessage) else ""
        records = state.get("tool_calls", [])
        if reason != "answered":
            ok = [r for r in records if r["ok"]]
            answer = answer or (
                f"Stopped before finishing ({reason}). Last tool result: {ok[-1]['output']}"
                if ok
                else f"Stopped before finishing ({reason}); no tool call succeeded."
            )
        trace = make_trace(
            "tool_agent",
            state.get("usage"),
            state.get("turns", 0),
            stop_reason=reason,
            tool_calls=[{k: r[k] for k in ("tool", "args", "ok", "output")} for r in records],
            tool_call_count=len(records),
            failed_tool_calls=sum(1 for r in records if not r["ok"]),
            max_tool_calls=max_tool_calls,
            loop_limit=loop_limit,
            memories_recalled=len(state.get("memories", [])),
            summarized_messages=state.get("summarized", 0),
            bounds=bounds.as_dict(),
        )
        return {**update, "answer": answer, "sources": collect_sources(records), "stop_reason": reason, "trace": trace}

    def remember(state: ToolAgentState, config: RunnableConfig) -> dict:
        store = get_store()
        if store is None:
            return {}
        memory = LongTermMemory(store, _user_id(config))
        memory.add_episode(
            state["question"],
            state["answer"],
            stop_reason=state.get("stop_reason", ""),
            tools=[r["tool"] for r in state.get("tool_calls", [])],
        )
        trace = dict(state["trace"])
        trace["episode_saved"] = True
        if remember_facts and state.get("stop_reason") == "answered":
            result = extract_facts(llm(), state["question"], state["answer"])
            for fact in result.value.facts:
                memory.add_fact(fact, source="conversation")
            usage = add_usage(state.get("usage"), result.usage)
            trace.update(usage_trace(usage), facts_saved=len(result.value.facts))
            return {"usage": usage, "trace": trace}
        return {"trace": trace}

    g = StateGraph(ToolAgentState)
    for name, node in (
        ("begin", begin),
        ("recall", recall),
        ("compact", compact),
        ("agent", agent),
        ("tools", run_tools),
        ("finalize", finalize),
        ("remember", remember),
    ):
        g.add_node(name, node)
    g.add_edge(START, "begin")
    g.add_edge("begin", "recall")
    g.add_edge("recall", "compact")
    g.add_edge("compact", "agent")
    g.add_conditional_edges("agent", after_agent, ["tools", "finalize"])
    g.add_conditional_edges("tools", after_tools, ["agent", "finalize"])
    g.add_edge("finalize", "remember")
    g.add_edge("remember", END)
    # Sized so the bounds above end the run, never the recursion limit.
    return g.compile(checkpointer=checkpointer, store=memory_store).with_config(recursion_limit=2 * max_turns + 20)


def _act(
    model: BaseChatModel, tools: list[BaseTool], prompt: list[BaseMessage], repairs: int
) -> tuple[AIMessage, Usage]:
    """The next step of a model without native tool calling, as a tool call or an answer.

    Earlier tool calls are shown to it as the JSON actions it chose and their results as user
    turns, since its chat template knows no tool messages. A reply still malformed after the
    repairs becomes an empty answer (finalize reports "no_answer"; the trace counts the fallback).
    """
    schema = action_schema(tuple(t.name for t in tools))
    result = structured_call(
        model, schema, _as_action_turns(prompt), fallback=Action(tool=FINAL_ANSWER), max_repairs=repairs
    )
    action = result.value
    if action.tool == FINAL_ANSWER:
        return AIMessage(action.answer), result.usage
    call = {"name": action.tool, "args": action.args, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}
    return AIMessage("", tool_calls=[call]), result.usage


def _as_action_turns(messages: list[BaseMessage]) -> list[BaseMessage]:
    """Tool calls as the JSON actions that asked for them, tool results as user turns, and every
    system message merged into one (chat templates refuse a second one)."""
    system = "\n\n".join(message_text(m) for m in messages if isinstance(m, SystemMessage))
    turns: list[BaseMessage] = [SystemMessage(system)] if system else []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            turns += [AIMessage(json.dumps({"tool": c["name"], "args": c.get("args") or {}})) for c in m.tool_calls]
        elif isinstance(m, ToolMessage):
            turns.append(HumanMessage(f"Result of {m.name}: {message_text(m)}"))
        elif not isinstance(m, SystemMessage):
            turns.append(m)
    return turns


def _catalogue(tools: list[BaseTool]) -> str:
    """The tools and their arguments, for a model that reads them from the prompt."""
    return ACTION_PROMPT + "\n".join(f"- {t.name}({', '.join(t.args)}): {t.description.splitlines()[0]}" for t in tools)


def _pending_calls(state: ToolAgentState) -> list[ToolCall]:
    last = state["messages"][-1] if state.get("messages") else None
    return list(last.tool_calls) if isinstance(last, AIMessage) and last.tool_calls else []


def _user_id(config: RunnableConfig) -> str:
    return str((config or {}).get("configurable", {}).get("user_id", "default"))


def _default_toolset(settings: Settings | None, workspace: str | Path | None, enable_python: bool) -> list[BaseTool]:
    from graphcraft.tools import default_tools

    root = Path(workspace) if workspace is not None else Path((settings or get_settings()).store) / "workspace"
    return default_tools(workspace=root, enable_python=enable_python)


graph = build()
