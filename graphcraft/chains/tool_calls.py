"""Executing the tool calls a model asks for: errors become messages, loops are noticed.

Used by the tool_agent graph (one node per step) and by the plan graphs' step executors (a
small bounded ReAct loop inside one step).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import BaseTool

from graphcraft.guards.nodes import screen_tool_output
from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage

MAX_OBSERVATION_CHARS = 4000


def call_key(name: str, args: Any) -> str:
    """A canonical key for a tool call, so identical calls compare equal whatever the key order."""
    return f"{name}:{json.dumps(args, sort_keys=True, default=str)}"


class LoopGuard:
    """Counts identical tool calls; `repeated(call)` is True once a call was made `limit` times."""

    def __init__(self, limit: int = 3, history: Sequence[str] = ()) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter(history)

    def record(self, name: str, args: Any) -> int:
        key = call_key(name, args)
        self.counts[key] += 1
        return self.counts[key]

    def would_repeat(self, name: str, args: Any) -> bool:
        return self.counts[call_key(name, args)] >= self.limit


def observation_text(output: Any) -> str:
    """Tool output as text for the model (MCP tools return content blocks)."""
    if isinstance(output, ToolMessage):
        output = output.content
    if isinstance(output, list):
        output = " ".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in output)
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[:MAX_OBSERVATION_CHARS] + f"\n[truncated at {MAX_OBSERVATION_CHARS} characters]"
    return text


def execute_tool_call(tools: dict[str, BaseTool], call: Mapping[str, Any]) -> tuple[ToolMessage, dict[str, Any]]:
    """Run one tool call; never raises. Returns the ToolMessage and a trace record.

    The record carries `sources` when the tool returned provenance as its artifact (retrieval tools).
    """
    name, args, call_id = call["name"], call.get("args") or {}, call.get("id") or ""
    tool = tools.get(name)
    sources: list[dict[str, Any]] = []
    if tool is None:
        text, ok = f"error: unknown tool {name!r}; available: {', '.join(sorted(tools))}", False
    else:
        try:
            output = tool.invoke({"type": "tool_call", "name": name, "args": args, "id": call_id})
            text = screen_tool_output(name, observation_text(output))  # the run's guards, if any
            ok = getattr(output, "status", "success") != "error" and not _looks_like_error(text)
            artifact = getattr(output, "artifact", None)
            if isinstance(artifact, list):
                sources = [a for a in artifact if isinstance(a, dict) and "chunk_id" in a]
        except Exception as exc:  # noqa: BLE001 - a failing tool is an observation, not a crash
            text, ok = f"error: {type(exc).__name__}: {exc}", False
    message = ToolMessage(content=text, tool_call_id=call_id, name=name, status="success" if ok else "error")
    record = {"tool": name, "args": args, "ok": ok, "output": text[:300]}
    if sources:
        record["sources"] = sources
    return message, record


def _looks_like_error(text: str) -> bool:
    head = text.lstrip()[:40].lower()
    return head.startswith(("error", "calculator error", "traceback"))


@dataclass
class StepRun:
    """Result of a bounded tool-using exchange for one step."""

    text: str
    ok: bool
    usage: Usage = field(default_factory=empty_usage)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "answered"


def run_with_tools(
    model: BaseChatModel,
    messages: list[BaseMessage],
    tools: Sequence[BaseTool] = (),
    *,
    max_tool_calls: int = 4,
    max_turns: int = 4,
    loop_limit: int = 2,
    config: dict | None = None,
) -> StepRun:
    """Ask the model, run the tools it calls, repeat until it answers or a bound is hit."""
    by_name = {t.name: t for t in tools}
    bound = model.bind_tools(list(tools)) if tools else model
    convo = list(messages)
    run = StepRun(text="", ok=False)
    guard = LoopGuard(loop_limit)
    for _ in range(max_turns):
        reply, usage = invoke_llm(bound, convo, config)
        run.usage = add_usage(run.usage, usage)
        convo.append(reply)
        calls = getattr(reply, "tool_calls", None) or []
        if not calls:
            run.text, run.ok = message_text(reply), True
            return run
        for call in calls:
            if len(run.tool_calls) >= max_tool_calls:
                run.stop_reason = "max_tool_calls"
                break
            if guard.would_repeat(call["name"], call.get("args")):
                run.stop_reason = "repeated_tool_call"
                break
            guard.record(call["name"], call.get("args"))
            message, record = execute_tool_call(by_name, call)
            convo.append(message)
            run.tool_calls.append(record)
        if run.stop_reason != "answered":
            break
    else:
        run.stop_reason = "max_turns"
    last_ok = [r for r in run.tool_calls if r["ok"]]
    run.text = last_ok[-1]["output"] if last_ok else message_text(convo[-1]) if isinstance(convo[-1], AIMessage) else ""
    run.ok = bool(last_ok)
    return run


def collect_sources(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Provenance gathered from tool-call records, first occurrence of each chunk kept."""
    seen: set[tuple[str, str]] = set()
    out = []
    for record in records:
        for src in record.get("sources", []):
            key = (str(src.get("source")), str(src.get("chunk_id")))
            if key not in seen:
                seen.add(key)
                out.append(src)
    return out
