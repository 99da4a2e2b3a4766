"""OpenAI-compatible servers, protocol level: which response_format a server accepts is detected once
per (base URL, model) and remembered; a reply cut at max_tokens (the OpenAI client raises
LengthFinishReasonError) is repaired with its raw text sent back and its reported tokens counted.
A scripted HTTP server stands in for the model server; the client side is the real ChatOpenAI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai_stub import completion, free_port
from pydantic import BaseModel

pytest.importorskip("langchain_openai")

from graphcraft.config import get_settings  # noqa: E402
from graphcraft.errors import ModelError  # noqa: E402
from graphcraft.models import get_chat_model, invoke_llm, structured_call, structured_modes  # noqa: E402


class Verdict(BaseModel):
    label: str
    confidence: float


FALLBACK = Verdict(label="unknown", confidence=0.0)
GOOD = json.dumps({"label": "yes", "confidence": 0.8})


def model_for(server: Any, name: str, max_tokens: int = 32) -> Any:
    return get_chat_model(
        get_settings(chat_model=name, base_url=server.base_url, max_tokens=max_tokens, llm_max_retries=0)
    )


def format_type(body: dict[str, Any]) -> str | None:
    return (body.get("response_format") or {}).get("type")


def test_a_server_refusing_json_schema_falls_back_to_json_object_once(fake_openai) -> None:
    def reply(body: dict[str, Any]):  # llama-cpp-python's server: HTTP 500 for json_schema
        if format_type(body) == "json_schema":
            return 500, {
                "error": {"message": "Input should be 'text' or 'json_object'", "type": "internal_server_error"}
            }
        return completion(GOOD)

    server = fake_openai(reply)
    model = model_for(server, "refuses-json-schema")
    first = structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    assert first.value == Verdict(label="yes", confidence=0.8) and first.mode == "json_object"
    assert [format_type(b) for b in server.requests] == ["json_schema", "json_object"]
    assert server.requests[1]["response_format"]["schema"] == Verdict.model_json_schema()
    assert first.usage["llm_calls"] == 2 and first.usage["structured_repairs"] == 0 and not first.fallback

    second = structured_call(model, Verdict, "Again?", fallback=FALLBACK)
    assert structured_modes(model) == ("json_object",)
    assert [format_type(b) for b in server.requests[2:]] == ["json_object"]  # remembered: no second probe
    assert second.usage["llm_calls"] == 1 and second.usage["prompt_tokens"] == 20


def test_a_server_refusing_both_formats_is_asked_by_prompt_and_parsed(fake_openai) -> None:
    def reply(body: dict[str, Any]):
        if "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported", "type": "invalid_request_error"}}
        return completion(f"Here you go: {GOOD}")

    server = fake_openai(reply)
    model = model_for(server, "plain-text-only")
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    assert result.value.label == "yes" and result.mode == "prompt"
    assert [format_type(b) for b in server.requests] == ["json_schema", "json_object", None]
    assert "JSON schema" in server.requests[-1]["messages"][0]["content"]  # the schema went into the prompt
    assert structured_modes(model) == ("prompt",)


def test_json_schema_is_used_where_accepted_and_max_tokens_is_sent_in_both_spellings(fake_openai) -> None:
    server = fake_openai(lambda body: completion(GOOD))
    model = model_for(server, "accepts-json-schema", max_tokens=17)
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    assert result.mode == "json_schema" and len(server.requests) == 1
    body = server.requests[0]
    assert body["response_format"]["json_schema"]["schema"] == Verdict.model_json_schema()
    # ChatOpenAI sends max_completion_tokens; llama-cpp-python's server only reads max_tokens.
    assert body["max_tokens"] == 17 and body["max_completion_tokens"] == 17
    invoke_llm(model, "hello")
    assert server.requests[-1]["max_tokens"] == 17


def test_a_reply_cut_at_max_tokens_is_repaired_with_its_raw_text_and_its_reported_tokens_counted(fake_openai) -> None:
    cut = '{"label": "yes", "confid'

    def reply(body: dict[str, Any]):
        if len(body["messages"]) == 2:  # first attempt: system + question; cut by the token limit
            return completion(cut, finish_reason="length", prompt_tokens=30, completion_tokens=8)
        return completion(GOOD, prompt_tokens=60, completion_tokens=9)

    server = fake_openai(reply)
    model = model_for(server, "cuts-replies", max_tokens=8)
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    assert result.value == Verdict(label="yes", confidence=0.8) and not result.fallback
    assert result.attempts == 2 and "cut off at the token limit" in result.errors[0]
    repair_turn = server.requests[1]["messages"]
    assert repair_turn[-2] == {"role": "assistant", "content": cut}  # the model's own bad reply, not a placeholder
    # Both attempts are counted with what the server reported, the failed one included.
    assert (result.usage["llm_calls"], result.usage["prompt_tokens"], result.usage["completion_tokens"]) == (2, 90, 17)
    assert (
        result.usage["structured_calls"],
        result.usage["structured_repairs"],
        result.usage["structured_fallbacks"],
    ) == (1, 1, 0)


def test_a_model_always_cut_short_falls_back_and_every_attempt_is_counted(fake_openai) -> None:
    server = fake_openai(
        lambda body: completion('{"label": "y', finish_reason="length", prompt_tokens=25, completion_tokens=4)
    )
    model = model_for(server, "always-cut", max_tokens=4)
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK, max_repairs=1)
    assert result.fallback and result.value is FALLBACK and result.attempts == 2
    assert (result.usage["llm_calls"], result.usage["completion_tokens"]) == (2, 8)
    assert result.usage["structured_fallbacks"] == 1


def test_ollama_gets_the_schema_as_its_format_and_max_tokens_as_num_predict(fake_openai) -> None:
    pytest.importorskip("langchain_ollama")
    reply = {
        "model": "llama3.1",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": GOOD},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 7,
    }
    server = fake_openai(lambda body: (200, reply))
    model = get_chat_model(
        get_settings(chat_model="ollama:llama3.1", base_url=server.base_url.removesuffix("/v1"), max_tokens=21)
    )
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    assert result.value == Verdict(label="yes", confidence=0.8) and result.mode == "format"
    body = server.requests[0]
    assert body["format"] == Verdict.model_json_schema() and body["options"]["num_predict"] == 21
    assert (result.usage["prompt_tokens"], result.usage["completion_tokens"]) == (11, 7)


def test_an_unreachable_server_is_one_line_naming_model_and_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = get_chat_model(get_settings(chat_model="smollm2", base_url=url, llm_max_retries=0, llm_timeout_s=5))
    with pytest.raises(ModelError) as info:
        structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    message = str(info.value)
    assert "'smollm2'" in message and url in message and "\n" not in message
