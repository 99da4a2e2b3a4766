"""Scripted chat models for tests (only chat models are ever faked)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage


def scripted(*replies: str | dict | list) -> FakeMessagesListChatModel:
    """A model that answers with these replies in order (dicts/lists sent as JSON text).

    The list is not cycled silently: once it is used up, the last reply repeats, which is the
    worst case for loops (a model that always asks for more).
    """
    messages = [AIMessage(r if isinstance(r, str) else json.dumps(r)) for r in replies]
    return RepeatLast(responses=messages)


class RepeatLast(FakeMessagesListChatModel):
    """FakeMessagesListChatModel that repeats its last response instead of cycling; records prompts."""

    prompts: list[list[BaseMessage]] = []

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        self.prompts = self.prompts + [list(messages)]
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        if self.i == 0 and len(self.prompts) >= len(self.responses):
            self.i = len(self.responses) - 1  # stay on the last reply
        return result

    @property
    def calls(self) -> int:
        return len(self.prompts)


def prompt_texts(model: RepeatLast) -> Sequence[str]:
    return ["\n".join(str(m.content) for m in p) for p in model.prompts]
