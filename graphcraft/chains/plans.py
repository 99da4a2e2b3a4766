"""What the two plan graphs (plan_execute, planning) do alike: give plan steps unique ids, and
close a run with a written answer, unless a budget has run out."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, empty_usage


def unique_id(proposed: str, known: set[str], position: int) -> str:
    """A step id not in `known`: the proposed one (or s<position> when empty), primed until unique."""
    sid = proposed.strip() or f"s{position}"
    while sid in known:
        sid += "'"
    return sid


def write_up(
    model: BaseChatModel, messages: list[BaseMessage], *, complete: bool, spent: str | None, stopped: str
) -> tuple[str, str, Usage]:
    """(answer, action, usage) that end a plan.

    When a budget ran out (`spent` names it) the answer is the `stopped` report, made without a
    model call, and the action "stopped"; otherwise the model answers `messages`, and the action
    is "completed" when every step succeeded, "incomplete" when some did not.
    """
    if spent:
        return stopped, "stopped", empty_usage()
    reply, usage = invoke_llm(model, messages)
    return message_text(reply), "completed" if complete else "incomplete", usage
