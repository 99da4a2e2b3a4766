"""Tool agent: a ReAct loop (Yao et al. 2022, arXiv:2210.03629) with budgets and memory.

    begin -> recall -> compact -> agent --tool calls--> tools --+
                                    ^                           |
                                    +---------------------------+  while no bound is reached
                                  agent --an answer, or a bound--> respond -> remember -> finalize

- agent (reason): the model, bound to the tools, decides the next tool calls or answers. A model
  with no native tool calling chooses one structured JSON action per turn instead
  (graphcraft.chains.react), which becomes an ordinary tool call;
- tools (act, observe): runs the calls; a failing tool becomes an error observation, never a crash;
- review_tools (option approve_tools: tool names, or "sensitive" for write_file and python; needs a
  checkpointer and a thread): before such a call runs, the run pauses and a person approves it,
  edits its arguments, or rejects it, which ends the run without running it;
- bounds, all in `stop_reason`: the tool-call budget (max_tool_calls), the model turns
  (max_turns), a loop guard that stops a model repeating the same call with the same arguments
  (loop_limit), and the run's LLM calls, tokens and wall clock (Settings); a stopped run answers
  with the last tool result;
- memory: with a checkpointer, a thread's messages persist between runs (compact folds old
  turns into a running summary); with a memory store, `recall` brings back related facts and
  episodes and `remember` writes this run's episode (and, with remember_facts, durable facts).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from graphcraft.chains.approval import ApprovalError, ask_person, rejection_answer, resume_clock, sensitive, tool_names
from graphcraft.chains.react import ACTION_PROMPT, json_action, tool_catalogue, with_tools
from graphcraft.chains.tool_calls import LoopGuard, call_key, collect_sources, execute_tool_call
from graphcraft.config import Settings, settings_from
from graphcraft.memory.context import ContextWindow
from graphcraft.memory.long_term import LongTermMemory, extract_facts, format_memories
from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, add_usage
from graphcraft.runtime.bounds import fresh_run
from graphcraft.runtime.context import Context, bind_context, context
from graphcraft.runtime.result import InputState, OutputState, make_trace
from graphcraft.tools.toolsets import toolset

GRAPH = "tool_agent"
DESCRIPTION = (
    "ReAct tool-calling agent (calculator, sandboxed files, optional python/MCP) with tool budget, loop guard "
    "and memory."
)
WHAT = "the tool agent"  # how errors name this graph (e.g. when no chat model is configured)

SYSTEM_PROMPT = (
    "You are a capable assistant that solves tasks step by step using tools when they help. "
    "Call a tool when you need a computation, a file, or data; otherwise answer directly. "
    "When you have the answer, reply with it plainly and do not call more tools."
)

# The graph's own limits (build options, and per-run options in config["configurable"]).
MAX_TOOL_CALLS, MAX_TURNS, LOOP_LIMIT, CONTEXT_TOKENS = 8, 10, 2, 6000


class State(InputState, OutputState, total=False):
    messages: Annotated[list[AnyMessage], add_messages]  # the thread: kept across runs by a checkpointer
    summary: str  # running summary of the thread's older turns (compact)
    memories: list[dict[str, Any]]  # recalled from long-term memory
    turns: int  # model turns; bounded by max_turns
    tool_calls: list[dict[str, Any]]  # one record per executed call; bounded by max_tool_calls
    summarized: int  # messages folded into the summary by this run
    action: str  # answered, no_answer or stopped
    stop_reason: str | None  # the bound that stopped the loop
    episode_saved: bool
    facts_saved: int
    started_at: float  # the run's wall clock (runtime.bounds)
    asked_at: float  # when the model last asked for tools: a reviewer's time does not count against the run's
    approval: list[dict[str, Any]]  # a person's decisions on sensitive tool calls (approve_tools)
    rejection: dict[str, Any] | None  # the tool call a person rejected, which ended the run
    # Plain channels (no reducer), reset by `begin`: each question on a thread is a fresh run.
    usage: Usage
    steps: list[dict]


# ---------------------------------------------------------------------- nodes (the ReAct steps)
def begin(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Start a run: the question becomes the thread's next human turn; per-run counters reset."""
    return fresh_run(
        messages=[HumanMessage(state["question"])],
        turns=0,
        tool_calls=[],
        summarized=0,
        memories=[],
        action="",
        stop_reason=None,
        episode_saved=False,
        facts_saved=0,
        approval=[],
        rejection=None,
        steps=[],
    )


def recall(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Bring back facts and episodes related to the question, when there is a long-term memory."""
    ctx = context(config, GRAPH)
    memory = long_term_memory(ctx, config)
    if memory is None:
        return {}
    memories = memory.recall(state["question"])
    return {"memories": memories, "steps": state.get("steps", []) + [{"step": "recall", "memories": len(memories)}]}


def compact(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Fold the older turns of a long thread into a running summary, so prompts fit context_tokens."""
    ctx = context(config, GRAPH)
    update = window(ctx).compact(ctx.require_model(WHAT), state["messages"], state.get("summary", ""))
    if not update:
        return {}
    step = {"step": "compact", "summarized": update["summarized"]}
    usage = add_usage(state.get("usage"), update["usage"])
    return {**update, "usage": usage, "steps": state.get("steps", []) + [step]}


def agent(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Reason: the model reads the thread and decides the next tool calls, or answers."""
    ctx = context(config, GRAPH)
    model, tools = ctx.require_model(WHAT), toolset(ctx)
    system = ctx.option("system_prompt", SYSTEM_PROMPT)
    if state.get("memories"):
        system += "\n\n" + format_memories(state["memories"])
    thread, summary, bound = state["messages"], state.get("summary", ""), with_tools(model, tools)
    if bound is None:  # no native tool calling: one structured action per turn, the tools listed in the prompt
        prompt = window(ctx).fit(thread, summary, system=f"{system}\n\n{ACTION_PROMPT}{tool_catalogue(tools)}")
        reply, usage = json_action(model, tools, prompt, ctx.settings.max_structured_repairs)
    else:
        reply, usage = invoke_llm(bound, window(ctx).fit(thread, summary, system=system))
    turn = state.get("turns", 0) + 1
    step = {"step": "agent", "turn": turn, "tool_calls": [c["name"] for c in reply.tool_calls]}
    return {
        "messages": [reply],
        "asked_at": time.time(),
        "usage": add_usage(state.get("usage"), usage),
        "turns": turn,
        "steps": state.get("steps", []) + [step],
    }


def run_tools(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Act and observe: run the requested calls; a failing tool becomes an error the model sees."""
    ctx = context(config, GRAPH)
    by_name = {t.name: t for t in toolset(ctx)}
    messages, records = [], []
    for call in pending_calls(state):
        message, record = execute_tool_call(by_name, call)
        messages.append(message)
        records.append({**record, "key": call_key(call["name"], call.get("args") or {})})
    step = {"step": "tools", "calls": [{"tool": r["tool"], "ok": r["ok"]} for r in records]}
    return {
        "messages": messages,
        "tool_calls": state.get("tool_calls", []) + records,
        "steps": state.get("steps", []) + [step],
    }


def review_tools(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Ask a person about each requested call of a tool in approve_tools before any runs: approved calls
    run as asked, edited ones with the person's arguments; a rejection ends the run, no call runs."""
    ctx = context(config, GRAPH)
    reviewed, names = sensitive(ctx.option("approve_tools")), []
    calls, records = pending_calls(state), list(state.get("approval", []))
    for i, call in enumerate(calls):
        if call["name"] not in reviewed:
            continue
        payload = {"kind": "tool_call", "graph": GRAPH, "question": state["question"], "tool": call["name"]}
        decision = ask_person({**payload, "args": call.get("args") or {}, "call_id": call["id"]})
        records.append({"kind": "tool_call", "tool": call["name"], **decision.record()})
        names.append(call["name"])
        if decision.action == "reject":
            return {**resume_clock(state), **reject_calls(state, calls, call, decision.reason, records)}
        if decision.action == "edit":
            if not isinstance(decision.value, dict):
                raise ApprovalError(f"edited arguments of {call['name']} must be an object, not {decision.value!r}")
            calls[i] = {**call, "args": decision.value}
            records[-1]["args"] = decision.value
    last = state["messages"][-1]
    step = {"step": "review_tools", "calls": [{"tool": r["tool"], "decision": r["decision"]} for r in records]}
    return {
        **resume_clock(state),
        "messages": [last.model_copy(update={"tool_calls": calls})],  # same id: replaces the request
        "approval": records,
        "steps": state.get("steps", []) + [step],
    }


def reject_calls(
    state: State, calls: list[ToolCall], rejected: ToolCall, reason: str, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """A rejected call ends the run: every requested call is closed unrun, so the thread stays valid."""
    closed = [
        ToolMessage(
            content="not executed: rejected by the reviewer", tool_call_id=c["id"], name=c["name"], status="error"
        )
        for c in calls
    ]
    step = {"step": "review_tools", "rejected": rejected["name"], "reason": reason}
    return {
        "messages": closed,
        "approval": records,
        "rejection": {"tool": rejected["name"], "args": rejected.get("args") or {}, "reason": reason},
        "steps": state.get("steps", []) + [step],
    }


def respond(state: State, config: RunnableConfig) -> dict[str, Any]:
    """The answer: the model's last reply or, when a bound stopped the loop, the last tool result."""
    ctx = context(config, GRAPH)
    if rejection := state.get("rejection"):
        return {
            "answer": rejection_answer(f"the call to {rejection['tool']}", rejection["reason"]),
            "sources": collect_sources(state.get("tool_calls", [])),
            "action": "rejected",
            "stop_reason": None,
            "steps": state.get("steps", []) + [{"step": "respond", "action": "rejected", "stop_reason": None}],
        }
    last, calls = state["messages"][-1], pending_calls(state)
    stopped = bool(calls) or not isinstance(last, AIMessage)
    reason = stop_reason(state, ctx, calls) if stopped else None
    text = message_text(last).strip() if isinstance(last, AIMessage) else ""
    action = "stopped" if stopped else "answered" if text else "no_answer"  # an empty reply is not an answer
    records = state.get("tool_calls", [])
    if action != "answered":
        ok = [r for r in records if r["ok"]]
        label = reason or action
        text = text or (
            f"Stopped before finishing ({label}). Last tool result: {ok[-1]['output']}"
            if ok
            else f"Stopped before finishing ({label}); no tool call succeeded."
        )
    # Calls a bound refused are closed with an error message, so the thread stays valid for its next run.
    closed = [
        ToolMessage(content=f"not executed: {reason}", tool_call_id=c["id"], name=c["name"], status="error")
        for c in calls
    ]
    return {
        **({"messages": closed} if closed else {}),
        "answer": text,
        "sources": collect_sources(records),
        "action": action,
        "stop_reason": reason,
        "steps": state.get("steps", []) + [{"step": "respond", "action": action, "stop_reason": reason}],
    }


def remember(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Write this run's episode, and with remember_facts the durable facts it revealed, to long-term memory."""
    ctx = context(config, GRAPH)
    memory = long_term_memory(ctx, config)
    if memory is None:
        return {}
    memory.add_episode(
        state["question"],
        state["answer"],
        action=state.get("action"),
        stop_reason=state.get("stop_reason"),
        tools=[r["tool"] for r in state.get("tool_calls", [])],
    )
    update: dict[str, Any] = {"episode_saved": True}
    if ctx.option("remember_facts", False) and state.get("action") == "answered":
        model = ctx.require_model(WHAT)
        result = extract_facts(model, state["question"], state["answer"], ctx.settings.max_structured_repairs)
        for fact in result.value.facts:
            memory.add_fact(fact, source="conversation")
        update.update(facts_saved=len(result.value.facts), usage=add_usage(state.get("usage"), result.usage))
    step = {"step": "remember", "episode": True, "facts": update.get("facts_saved", 0)}
    return {**update, "steps": state.get("steps", []) + [step]}


def finalize(state: State, config: RunnableConfig) -> dict[str, Any]:
    """The trace: whether the agent answered or was stopped (and by which bound), its tool calls, its cost."""
    ctx = context(config, GRAPH)
    records = state.get("tool_calls", [])
    trace = make_trace(
        GRAPH,
        state,
        action=state.get("action"),
        stop_reason=state.get("stop_reason"),
        iterations=state.get("turns", 0),
        tool_calls=[{k: r[k] for k in ("tool", "args", "ok", "output")} for r in records],
        tool_call_count=len(records),
        failed_tool_calls=sum(1 for r in records if not r["ok"]),
        max_tool_calls=ctx.option("max_tool_calls", MAX_TOOL_CALLS),
        max_turns=ctx.option("max_turns", MAX_TURNS),
        loop_limit=ctx.option("loop_limit", LOOP_LIMIT),
        memories_recalled=len(state.get("memories", [])),
        summarized_messages=state.get("summarized", 0),
        episode_saved=state.get("episode_saved", False),
        facts_saved=state.get("facts_saved", 0),
        approval=state.get("approval", []),
        rejected=state.get("rejection"),
        bounds=ctx.bounds.as_dict(),
    )
    return {"trace": trace}


# ---------------------------------------------------------------------- helpers
def window(ctx: Context) -> ContextWindow:
    """The prompt's token window (option context_tokens): summary of older turns plus recent turns."""
    return ContextWindow(max_tokens=ctx.option("context_tokens", CONTEXT_TOKENS))


def long_term_memory(ctx: Context, config: RunnableConfig) -> LongTermMemory | None:
    """The user's long-term memory: in the memory_store option, else in the store LangGraph
    Server provides; None when there is neither. The user is config["configurable"]["user_id"]."""
    store = ctx.option("memory_store")
    if store is None:
        store = get_store()
    user = str((config or {}).get("configurable", {}).get("user_id", "default"))
    return None if store is None else LongTermMemory(store, user)


def pending_calls(state: State) -> list[ToolCall]:
    """The tool calls of the model's last reply that have not run yet."""
    last = state["messages"][-1] if state.get("messages") else None
    return list(last.tool_calls) if isinstance(last, AIMessage) and last.tool_calls else []


# ---------------------------------------------------------------------- routing (every loop bounded here)
def stop_reason(state: State, ctx: Context, calls: Sequence[ToolCall] = ()) -> str | None:
    """The bound that ends the loop before `calls` run: a repeated call (loop_limit), the tool-call
    budget (max_tool_calls), the model turns (max_turns), or the run's LLM calls, tokens or time."""
    done = state.get("tool_calls", [])
    guard = LoopGuard(ctx.option("loop_limit", LOOP_LIMIT), [r["key"] for r in done])
    if any(guard.would_repeat(c["name"], c.get("args") or {}) for c in calls):
        return "repeated_tool_call"
    if len(done) + len(calls) > ctx.option("max_tool_calls", MAX_TOOL_CALLS):
        return "max_tool_calls"
    if state.get("turns", 0) >= ctx.option("max_turns", MAX_TURNS):
        return "max_turns"
    return ctx.bounds.reached(state)


def after_agent(state: State, config: RunnableConfig) -> str:
    """Run the requested tools (a person reviews calls of the approve_tools first), unless the model
    answered or a bound is reached."""
    ctx, calls = context(config, GRAPH), pending_calls(state)
    if not calls or stop_reason(state, ctx, calls):
        return "respond"
    return "review_tools" if {c["name"] for c in calls} & sensitive(ctx.option("approve_tools")) else "tools"


def after_review(state: State, config: RunnableConfig) -> str:
    """Run the reviewed calls, or answer when a person rejected one."""
    return "respond" if state.get("rejection") else "tools"


def after_tools(state: State, config: RunnableConfig) -> str:
    """Give the model its next turn, unless a bound is reached."""
    return "respond" if stop_reason(state, context(config, GRAPH)) else "agent"


def build(
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    *,
    tools: list[BaseTool] | None = None,
    workspace: str | Path | None = None,
    enable_python: bool = False,
    mcp_config: str | Path | dict | None = None,
    max_tool_calls: int = MAX_TOOL_CALLS,
    max_turns: int = MAX_TURNS,
    loop_limit: int = LOOP_LIMIT,
    context_tokens: int = CONTEXT_TOKENS,
    remember_facts: bool = False,
    system_prompt: str = SYSTEM_PROMPT,
    memory_store: Any = None,
    approve_tools: Sequence[str] | str = (),
    checkpointer: Any = None,
    **options: Any,
) -> Any:
    """Compile the tool agent.

    tools: the agent's tools (default: calculator and file tools in `workspace`, by default
    <store>/workspace, and python when enable_python), plus the tools of the MCP servers in mcp_config.
    loop_limit: how many times the same call (name and arguments) may be made.
    checkpointer / memory_store: short- and long-term memory (None: the run is stateless).
    approve_tools: tools whose calls a person approves first ("sensitive": write_file, python; needs a checkpointer).
    options: Settings fields (max_llm_calls, token_budget, max_seconds ...) for this graph.
    """
    ctx = Context(
        settings_from(settings, options),
        model=model,
        options={
            "tools": tools,
            "workspace": workspace,
            "enable_python": enable_python,
            "mcp_config": mcp_config,
            "max_tool_calls": max_tool_calls,
            "max_turns": max_turns,
            "loop_limit": loop_limit,
            "context_tokens": context_tokens,
            "remember_facts": remember_facts,
            "system_prompt": system_prompt,
            "memory_store": memory_store,
            "approve_tools": tool_names(approve_tools),
        },
    )
    g = StateGraph(State, input_schema=InputState, output_schema=OutputState)
    for node in (begin, recall, compact, agent, review_tools, respond, remember, finalize):
        g.add_node(node.__name__, node)
    g.add_node("tools", run_tools)
    for source, target in ((START, "begin"), ("begin", "recall"), ("recall", "compact"), ("compact", "agent")):
        g.add_edge(source, target)
    g.add_conditional_edges("agent", after_agent, ["review_tools", "tools", "respond"])
    g.add_conditional_edges("review_tools", after_review, ["tools", "respond"])
    g.add_conditional_edges("tools", after_tools, ["agent", "respond"])
    g.add_edge("respond", "remember")
    g.add_edge("remember", "finalize")
    g.add_edge("finalize", END)
    return bind_context(g.compile(name=GRAPH, checkpointer=checkpointer), GRAPH, ctx)


graph = build()
