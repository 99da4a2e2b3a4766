"""Faults injected into model calls: rate limits, timeouts, a server that never answers, a model that
always fails (the breaker opens, then closes), fallbacks, and garbage replies (the repair path).

Scripted chat models raise the real provider exceptions (openai's, carrying an HTTP response);
the never-answering server is a real socket on loopback behind the real ChatOpenAI client.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import openai
import pytest
from pydantic import BaseModel

from graphcraft.config import get_settings
from graphcraft.errors import ModelCallError, ModelError
from graphcraft.graphs import reflection
from graphcraft.models import _build_chat_model, get_chat_model, invoke_llm, structured_call
from graphcraft.runtime.resilience import (
    Backoff,
    CircuitOpenError,
    ResiliencePolicy,
    breaker_states,
    is_transient,
    policy_of,
    protect,
)
from graphcraft.testing import ScriptedChatModel, tool_call

FAST = Backoff(initial_s=0.02, max_s=0.05, jitter_s=0.01)


def http_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return cls(f"HTTP {status}", response=httpx.Response(status, request=request), body=None)


def rate_limited() -> openai.APIStatusError:
    return http_error(openai.RateLimitError, 429)


def timed_out() -> openai.APITimeoutError:
    return openai.APITimeoutError(httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))


def scripted(key: str, script: object, retries: int = 3, failures: int = 5, reset_s: float = 30.0, **kw: object):
    model = ScriptedChatModel(script=script, **kw)
    return protect(model, ResiliencePolicy(key, retries, failures, reset_s, backoff=FAST))


def state_of(key: str) -> dict:
    return next(b for b in breaker_states() if b["key"] == key)


# ---------------------------------------------------------------------------- what is transient


def test_transient_errors_are_told_from_permanent_ones() -> None:
    assert is_transient(rate_limited()) and is_transient(timed_out())
    assert is_transient(http_error(openai.InternalServerError, 503)) and is_transient(ConnectionError("refused"))
    assert not is_transient(http_error(openai.BadRequestError, 400))
    assert not is_transient(http_error(openai.AuthenticationError, 401))
    assert not is_transient(ValueError("malformed"))


# ---------------------------------------------------------------------------- retry with backoff


def test_rate_limits_are_retried_with_bounded_backoff_and_every_attempt_counted() -> None:
    model = scripted("rate-limited", [rate_limited(), rate_limited(), "fine"])
    started = time.perf_counter()
    reply, usage = invoke_llm(model, "hello")
    seconds = time.perf_counter() - started
    assert reply.content == "fine" and model.call_count == 3
    assert usage["llm_calls"] == 3  # the two refused attempts count against the budget too
    assert 0.02 <= seconds < 1.0  # two waits of at most max_s + jitter_s each
    assert state_of("rate-limited")["state"] == "closed"


def test_timeouts_are_retried() -> None:
    model = scripted("slow", [timed_out(), "in time"])
    reply, usage = invoke_llm(model, "hello")
    assert reply.content == "in time" and usage["llm_calls"] == 2


def test_a_bad_request_is_not_retried() -> None:
    model = scripted("bad-request", [http_error(openai.BadRequestError, 400), "never reached"])
    with pytest.raises(ModelCallError) as raised:
        invoke_llm(model, "hello")
    assert model.call_count == 1 and "BadRequestError" in str(raised.value) and "\n" not in str(raised.value)
    assert state_of("bad-request")["consecutive_failures"] == 0  # the server answered: not an outage


def test_retries_are_bounded_by_the_policy() -> None:
    model = scripted("down-503", lambda call: http_error(openai.InternalServerError, 503), retries=2)
    with pytest.raises(ModelCallError, match="InternalServerError"):
        invoke_llm(model, "hello")
    assert model.call_count == 3  # one call and two retries


def test_a_model_without_a_policy_is_used_as_given() -> None:
    model = ScriptedChatModel(script=[rate_limited(), "not reached"])
    with pytest.raises(ModelCallError, match="RateLimitError"):
        invoke_llm(model, "hello")
    assert model.call_count == 1 and breaker_states() == []


# ---------------------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_consecutive_failures_then_closes_after_a_good_trial() -> None:
    down = {"on": True}
    model = scripted(
        "flaky", lambda call: ConnectionError("refused") if down["on"] else "back", retries=0, failures=2, reset_s=0.3
    )
    for _ in range(2):
        with pytest.raises(ModelCallError, match="ConnectionError"):
            invoke_llm(model, "hello")
    with pytest.raises(CircuitOpenError) as raised:
        invoke_llm(model, "hello")
    message = str(raised.value)
    assert isinstance(raised.value, ModelError)  # a model that is down, like any other model failure
    assert model.call_count == 2  # failed fast: the model was not called
    assert message.startswith("flaky is unavailable: circuit breaker open after 2 consecutive failures")
    assert "next trial call in" in message and "\n" not in message
    assert state_of("flaky")["state"] == "open"

    time.sleep(0.35)
    down["on"] = False
    reply, _ = invoke_llm(model, "hello")  # the trial call
    assert reply.content == "back" and state_of("flaky")["state"] == "closed" and model.call_count == 3


def test_a_failed_trial_opens_the_breaker_again() -> None:
    model = scripted("dead", lambda call: ConnectionError("refused"), retries=0, failures=1, reset_s=0.2)
    with pytest.raises(ModelCallError):
        invoke_llm(model, "hello")
    time.sleep(0.25)
    with pytest.raises(ModelCallError):  # the trial reaches the model and fails
        invoke_llm(model, "hello")
    with pytest.raises(CircuitOpenError):
        invoke_llm(model, "hello")
    assert model.call_count == 2 and state_of("dead")["state"] == "open"


def test_half_open_breaker_lets_exactly_one_trial_through_under_concurrency() -> None:
    down = {"on": True}
    model = scripted(
        "busy",
        lambda call: ConnectionError("refused") if down["on"] else "ok",
        retries=0,
        failures=1,
        reset_s=0.1,
        latency_s=0.3,
    )
    with pytest.raises(ModelCallError):
        invoke_llm(model, "hello")
    time.sleep(0.15)
    down["on"] = False
    outcomes: list[str] = []

    def call() -> None:
        try:
            outcomes.append(str(invoke_llm(model, "hello")[0].content))
        except CircuitOpenError:
            outcomes.append("fast-fail")

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["fast-fail", "fast-fail", "fast-fail", "ok"] and model.call_count == 2


# ---------------------------------------------------------------------------- fallbacks


def test_fallback_answers_when_the_primary_fails_and_both_calls_are_counted() -> None:
    backup = scripted("backup", ["from backup"])
    primary = scripted("primary", lambda call: http_error(openai.InternalServerError, 500), retries=1)
    protect(primary, replace(policy_of(primary), fallbacks=(backup,)))
    reply, usage = invoke_llm(primary, "hello")
    assert reply.content == "from backup" and primary.call_count == 2 and backup.call_count == 1
    assert usage["llm_calls"] == 3


def test_an_open_breaker_goes_straight_to_the_fallback() -> None:
    backup = scripted("backup-2", lambda call: "from backup")
    primary = scripted("primary-2", lambda call: ConnectionError("refused"), retries=0, failures=1)
    protect(primary, replace(policy_of(primary), fallbacks=(backup,)))
    invoke_llm(primary, "first")
    reply, usage = invoke_llm(primary, "second")
    assert reply.content == "from backup" and primary.call_count == 1 and usage["llm_calls"] == 1


def test_fallback_gets_the_same_tools_bound() -> None:
    backup = scripted("tools-backup", lambda call: tool_call("calculator", expression="2+2"))
    primary = scripted("tools-primary", lambda call: rate_limited(), retries=0)
    protect(primary, replace(policy_of(primary), fallbacks=(backup,)))

    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        return expression

    reply, _ = invoke_llm(primary.bind_tools([calculator]), "what is 2+2?")
    assert reply.tool_calls[0]["name"] == "calculator" and backup.calls[0].tools == ["calculator"]


class Verdict(BaseModel):
    label: str
    score: int


def test_structured_output_falls_back_with_its_schema() -> None:
    backup = scripted("structured-backup", lambda call: {"label": "ok", "score": 3})
    primary = scripted("structured-primary", lambda call: ConnectionError("refused"), retries=0)
    protect(primary, replace(policy_of(primary), fallbacks=(backup,)))
    result = structured_call(primary, Verdict, "grade this", fallback=Verdict(label="none", score=0))
    assert result.value == Verdict(label="ok", score=3) and not result.fallback
    assert backup.calls[0].schema == "Verdict"


# ---------------------------------------------------------------------------- garbage replies


def test_garbage_is_repaired_and_does_not_trip_the_breaker() -> None:
    model = scripted("garbled", ["}}not json{{", {"label": "fixed", "score": 1}], failures=1)
    result = structured_call(model, Verdict, "grade this", fallback=Verdict(label="none", score=0))
    assert result.value.label == "fixed" and result.attempts == 2 and not result.fallback
    assert state_of("garbled")["state"] == "closed"


def test_garbage_to_the_end_gives_the_recorded_fallback() -> None:
    model = scripted("garbage", lambda call: "no json here", failures=1)
    result = structured_call(model, Verdict, "grade this", fallback=Verdict(label="none", score=0), max_repairs=1)
    assert result.fallback and result.value.label == "none" and model.call_count == 2
    assert state_of("garbage")["state"] == "closed"


# ---------------------------------------------------------------------------- a server that never answers


def test_a_server_that_never_answers_fails_within_the_timeout(openai_like) -> None:  # type: ignore[no-untyped-def]
    _build_chat_model.cache_clear()
    settings = get_settings(chat_model="silent", base_url=openai_like.base_url, llm_timeout_s=1, llm_max_retries=0)
    started = time.perf_counter()
    with pytest.raises(ModelCallError) as raised:
        reflection.build(settings=settings).invoke({"question": "anything"})
    seconds = time.perf_counter() - started
    assert 1.0 <= seconds < 5.0 and "\n" not in str(raised.value)
    expected = f"chat model call failed: 'silent' at {openai_like.base_url}: OpenAITimeoutError: Request timed out."
    assert str(raised.value) == expected
    assert state_of(f"silent@{openai_like.base_url}")["consecutive_failures"] == 1


def test_a_server_that_never_answers_falls_back(openai_like) -> None:  # type: ignore[no-untyped-def]
    _build_chat_model.cache_clear()
    settings = get_settings(
        chat_model="silent",
        base_url=openai_like.base_url,
        fallback_models="backup",
        llm_timeout_s=1,
        llm_max_retries=0,
    )
    model = get_chat_model(settings)
    started = time.perf_counter()
    reply, usage = invoke_llm(model, "hello")
    assert reply.content == "answer from backup" and time.perf_counter() - started < 5.0
    assert openai_like.requests == ["silent", "backup"] and usage["llm_calls"] == 2
    assert usage["prompt_tokens"] >= 11 and usage["completion_tokens"] == 3  # the backup's reported usage


def test_get_chat_model_attaches_the_settings_policy() -> None:
    _build_chat_model.cache_clear()
    settings = get_settings(
        chat_model="m1",
        base_url="http://127.0.0.1:9/v1",
        fallback_models="m2, ollama:m3",
        breaker_failures=7,
        breaker_reset_s=12,
    )
    policy = policy_of(get_chat_model(settings))
    assert policy is not None and policy.key == "m1@http://127.0.0.1:9/v1"
    assert (policy.breaker_failures, policy.breaker_reset_s, policy.max_retries) == (7, 12, 2)
    keys = [policy_of(f).key for f in policy.fallbacks]  # type: ignore[union-attr]
    assert keys == ["m2@http://127.0.0.1:9/v1", "ollama:m3"]
