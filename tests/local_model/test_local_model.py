"""A real model, end to end: SmolLM2-135M-Instruct in process (llama.cpp) and behind
llama-cpp-python's OpenAI-compatible server. Token counts are the ones llama.cpp reports,
structured output is grammar-constrained, max_tokens bounds every reply."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, Field

from graphcraft.models import invoke_llm, structured_call, structured_modes
from graphcraft.runtime.result import usage_trace

pytestmark = pytest.mark.local_model

LONG_REQUEST = "Write a long, detailed story about a dragon who learns to bake bread."


class Capital(BaseModel):
    country: str = Field(description="the country asked about")
    capital: str = Field(description="its capital city")


FALLBACK = Capital(country="", capital="")
QUESTION = "What is the capital of France?"


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages of every chat-model call made under it."""

    def __init__(self) -> None:
        self.prompts: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.prompts.extend(messages)


# ---------------------------------------------------------------------------- in process


def test_the_local_model_answers_with_the_token_counts_llama_cpp_reports(local_model) -> None:
    reply, usage = invoke_llm(local_model, "Name one primary colour. Answer in one word.")
    assert reply.content.strip()
    reported = reply.usage_metadata
    assert reported and reported["input_tokens"] > 5 and 0 < reported["output_tokens"] <= local_model.max_tokens
    assert (usage["llm_calls"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        1,
        reported["input_tokens"],
        reported["output_tokens"],
    )


def test_max_tokens_bounds_an_in_process_reply(local_model) -> None:
    short = local_model.model_copy(update={"max_tokens": 8})
    reply, usage = invoke_llm(short, LONG_REQUEST)
    assert usage["completion_tokens"] == 8 and reply.response_metadata["finish_reason"] == "length"


def test_a_prompt_that_does_not_fit_the_context_is_a_one_line_model_error(local_settings) -> None:
    from graphcraft.errors import ModelError
    from graphcraft.models import get_chat_model

    small = get_chat_model(local_settings.model_copy(update={"local_context": 256}))
    with pytest.raises(ModelError, match=r"exceed context window of 256 \(raise GRAPHCRAFT_LOCAL_CONTEXT") as info:
        invoke_llm(small, "word " * 300)
    assert "\n" not in str(info.value)


def test_structured_output_in_process_is_grammar_constrained(local_model) -> None:
    result = structured_call(local_model, Capital, QUESTION, fallback=FALLBACK)
    assert result.mode == "grammar" and structured_modes(local_model) == ("grammar",)
    assert isinstance(result.value, Capital) and result.value is not FALLBACK and result.value.capital
    assert (result.attempts, result.fallback, result.errors) == (1, False, [])
    assert usage_trace(result.usage)["structured_outputs"] == {"calls": 1, "repairs": 0, "fallbacks": 0}
    assert result.usage["completion_tokens"] > 0


# ---------------------------------------------------------------------------- through the OpenAI-compatible server


def test_through_the_server_json_schema_is_refused_and_json_object_is_detected_once(server_settings) -> None:
    from graphcraft.models import get_chat_model

    model = get_chat_model(server_settings("smollm2-probe"))
    first = structured_call(model, Capital, QUESTION, fallback=FALLBACK)
    assert first.mode == "json_object" and structured_modes(model) == ("json_object",)
    assert isinstance(first.value, Capital) and first.value.capital and not first.fallback and first.errors == []
    assert first.usage["llm_calls"] == 2  # the refused json_schema request, then the grammar-constrained one
    second = structured_call(model, Capital, "What is the capital of Italy?", fallback=FALLBACK)
    assert second.usage["llm_calls"] == 1 and second.mode == "json_object"
    assert usage_trace(second.usage)["structured_outputs"] == {"calls": 1, "repairs": 0, "fallbacks": 0}


def test_through_the_server_replies_report_real_tokens_and_respect_max_tokens(server_settings) -> None:
    from graphcraft.models import get_chat_model

    model = get_chat_model(server_settings("smollm2-plain", max_tokens=8))
    reply, usage = invoke_llm(model, LONG_REQUEST)
    assert reply.response_metadata["finish_reason"] == "length"
    assert usage["completion_tokens"] == 8 and usage["prompt_tokens"] == reply.usage_metadata["input_tokens"] > 5


def test_through_the_server_a_cut_reply_is_sent_back_and_counted(server_settings) -> None:
    from graphcraft.models import get_chat_model

    model = get_chat_model(server_settings("smollm2-cut", max_tokens=5))
    recorder = PromptRecorder()
    result = structured_call(
        model, Capital, QUESTION, fallback=FALLBACK, max_repairs=1, config={"callbacks": [recorder]}
    )
    assert result.attempts == 2 and result.fallback and "cut off at the token limit" in result.errors[0]
    assert result.usage["completion_tokens"] == 10  # 5 reported tokens per attempt, the failed ones included
    assert result.usage["structured_repairs"] == 1 and result.usage["structured_fallbacks"] == 1
    repair = recorder.prompts[-1]
    sent_back = [m for m in repair if isinstance(m, AIMessage)]
    assert len(sent_back) == 1 and sent_back[0].content.startswith("{")  # the raw cut JSON, not a placeholder
