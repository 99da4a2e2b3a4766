"""Context-window management: count tokens offline, summarise older turns, trim the rest.

When a conversation grows past `max_tokens`, the older turns are folded into a running summary
(one LLM call) and removed from the thread, keeping the most recent turns verbatim. Before each
model call `fit` trims what is sent so it always fits, even if summarising was not possible.
Cuts happen only at a human turn, so an AI tool call is never separated from its results.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, RemoveMessage, SystemMessage, trim_messages

from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, empty_usage
from graphcraft.runtime.tokens import count_tokens

PER_MESSAGE_OVERHEAD = 4  # role and separators, as chat formats add


def count_message_tokens(messages: Sequence[BaseMessage]) -> int:
    """Offline token count of a message list (content + tool-call arguments + overhead)."""
    total = 0
    for m in messages:
        total += PER_MESSAGE_OVERHEAD + count_tokens(message_text(m))
        for call in getattr(m, "tool_calls", None) or []:
            total += count_tokens(f"{call.get('name', '')} {call.get('args', '')}")
    return total


class ContextWindow:
    """Keeps a conversation within `max_tokens`: summary of old turns + recent turns verbatim."""

    def __init__(self, max_tokens: int = 3000, keep_recent_tokens: int | None = None) -> None:
        self.max_tokens = max_tokens
        self.keep_recent_tokens = keep_recent_tokens or max_tokens // 2

    def over(self, messages: Sequence[BaseMessage], summary: str = "") -> bool:
        return count_message_tokens(messages) + count_tokens(summary) > self.max_tokens

    def split(self, messages: Sequence[BaseMessage]) -> tuple[list[BaseMessage], list[BaseMessage]]:
        """(older, recent): recent is the longest suffix within keep_recent_tokens that starts at a human turn."""
        messages = list(messages)
        recent = trim_messages(
            messages,
            max_tokens=self.keep_recent_tokens,
            token_counter=count_message_tokens,
            strategy="last",
            start_on="human",
            allow_partial=False,
        )
        if not recent:  # the last turn alone is too big: keep it whole, summarise the rest
            last_human = max(
                (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=len(messages) - 1
            )
            recent = messages[last_human:]
        return messages[: len(messages) - len(recent)], recent

    def summarize(self, model: BaseChatModel, older: Sequence[BaseMessage], previous: str = "") -> tuple[str, Usage]:
        """A new running summary covering `previous` and the `older` turns."""
        if not older:
            return previous, empty_usage()
        transcript = "\n".join(f"{m.type}: {message_text(m)}" for m in older if message_text(m).strip())
        prompt = (
            (f"Summary so far:\n{previous}\n\n" if previous else "") + f"New conversation turns:\n{transcript}\n\n"
            "Write an updated summary of the conversation that keeps every fact, decision, number and "
            "open question needed to continue it. Be concise."
        )
        reply, usage = invoke_llm(
            model, [SystemMessage("You maintain a running summary of a conversation."), HumanMessage(prompt)]
        )
        return message_text(reply), usage

    def compact(self, model: BaseChatModel, messages: Sequence[BaseMessage], summary: str = "") -> dict:
        """State update that folds older turns into the summary and removes them from the thread."""
        if not self.over(messages, summary):
            return {}
        older, _recent = self.split(messages)
        if not older:
            return {}
        new_summary, usage = self.summarize(model, older, summary)
        removals = [RemoveMessage(id=m.id) for m in older if m.id]
        return {"summary": new_summary, "messages": removals, "usage": usage, "summarized": len(older)}

    def fit(self, messages: Sequence[BaseMessage], summary: str = "", system: str = "") -> list[BaseMessage]:
        """What to send to the model: system prompt, summary, and as many recent turns as fit."""
        head = []
        if system:
            head.append(SystemMessage(system))
        if summary:
            head.append(SystemMessage(f"Summary of the earlier conversation:\n{summary}"))
        room = max(self.max_tokens - count_message_tokens(head), PER_MESSAGE_OVERHEAD)
        body = trim_messages(
            list(messages),
            max_tokens=room,
            token_counter=count_message_tokens,
            strategy="last",
            start_on="human",
            allow_partial=False,
        )
        if not body and messages:  # never send nothing: keep the current turn
            last_human = max(
                (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=len(messages) - 1
            )
            body = list(messages)[last_human:]
        return head + body
