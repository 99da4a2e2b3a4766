"""One ReAct step (reason, then act with a tool; Yao et al. 2022, arXiv:2210.03629).

The tool agent runs one step per model turn; the plan graphs run a short bounded exchange
inside one plan step (`run_step`). A model with native tool calling gets the tools bound. A
model without it (an in-process GGUF, a plain completion server) is asked for one structured
action per turn instead, {"tool", "args", "answer"}, whose tool names are a JSON-schema enum (a
grammar-constrained model cannot name a tool that does not exist); the action becomes an
ordinary tool call, so the rest of a loop is the same.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, create_model, field_validator

from graphcraft.chains.tool_calls import StepRun, run_with_tools
from graphcraft.models import message_text, structured_call
from graphcraft.runtime.accounting import Usage

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


def tool_catalogue(tools: Sequence[BaseTool]) -> str:
    """The tools and their arguments, one line each, for a model that reads them from the prompt."""
    return "\n".join(f"- {t.name}({', '.join(t.args)}): {t.description.splitlines()[0]}" for t in tools)


def with_tools(model: BaseChatModel, tools: Sequence[BaseTool]) -> Runnable | None:
    """`model` with `tools` bound for native tool calling, or None when it has none."""
    try:
        return model.bind_tools(list(tools))
    except NotImplementedError:
        return None


def json_action(
    model: BaseChatModel, tools: Sequence[BaseTool], prompt: list[BaseMessage], max_repairs: int
) -> tuple[AIMessage, Usage]:
    """The next step of a model without native tool calling, as a tool call or an answer.

    The prompt's system message should list the tools (ACTION_PROMPT + `tool_catalogue`).
    Earlier tool calls are shown to the model as the JSON actions it chose and their results as
    user turns, since its chat template knows no tool messages. A reply still malformed after the
    repairs becomes an empty answer (the structured-output trace counts the fallback).
    """
    schema = action_schema(tuple(t.name for t in tools))
    result = structured_call(
        model, schema, as_action_turns(prompt), fallback=Action(tool=FINAL_ANSWER), max_repairs=max_repairs
    )
    action = result.value
    if action.tool == FINAL_ANSWER:
        return AIMessage(action.answer), result.usage
    call = {"name": action.tool, "args": action.args, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}
    return AIMessage("", tool_calls=[call]), result.usage


def as_action_turns(messages: list[BaseMessage]) -> list[BaseMessage]:
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


def run_step(
    model: BaseChatModel,
    messages: list[BaseMessage],
    tools: Sequence[BaseTool] = (),
    *,
    max_tool_calls: int = 4,
    max_turns: int = 4,
) -> tuple[StepRun, bool]:
    """One plan step as a bounded ReAct exchange, and whether the model could use the tools.

    A model without native tool calling reasons from its prompt alone, in one call.
    """
    if not tools:
        return run_with_tools(model, messages, [], max_turns=1), True
    try:
        return run_with_tools(model, messages, tools, max_tool_calls=max_tool_calls, max_turns=max_turns), True
    except NotImplementedError:
        return run_with_tools(model, messages, [], max_turns=1), False
