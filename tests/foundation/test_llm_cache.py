"""The LLM response cache (GRAPHCRAFT_CACHE=sqlite): a repeated identical question makes no new model
call and the trace counts it in `cache_hits`, not `llm_calls`.

The chat model is the only fake: a scripted model returned by LangChain's `init_chat_model`, so it
goes through graphcraft's real model factory (which passes the cache as the model's `cache=`), the
real langchain_community SQLiteCache on a real file, and a real graph (reflection: a draft, then a
structured critique).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from graphcraft.config import Settings, cache_file, get_settings
from graphcraft.graphs import reflection
from graphcraft.models import _build_chat_model, get_chat_model, invoke_llm, llm_cache
from graphcraft.runtime.accounting import UsageCallback, add_usage, empty_usage
from graphcraft.runtime.result import usage_trace
from graphcraft.testing import ScriptCall, ScriptedChatModel

PASSING = {"scores": [{"criterion": c, "score": 9} for c in reflection.DEFAULT_CRITERIA], "summary": "fine"}


def reply(call: ScriptCall) -> Any:
    """A draft for the generate step, a passing critique for the critic: two calls per question."""
    return PASSING if call.schema == "Critique" else f"draft for: {call.last[:40]}"


class Factory:
    """Stands in for LangChain's init_chat_model: records what graphcraft asked for, returns scripted models."""

    def __init__(self) -> None:
        self.kwargs: list[dict[str, Any]] = []
        self.models: list[ScriptedChatModel] = []

    def __call__(self, spec: str, **kwargs: Any) -> ScriptedChatModel:
        self.kwargs.append(kwargs)
        model = ScriptedChatModel(script=reply, cache=kwargs.get("cache"))
        self.models.append(model)
        return model

    @property
    def calls(self) -> int:
        return sum(m.call_count for m in self.models)


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import langchain.chat_models

    made = Factory()
    monkeypatch.setattr(langchain.chat_models, "init_chat_model", made)
    _build_chat_model.cache_clear()
    llm_cache.cache_clear()
    yield made
    _build_chat_model.cache_clear()
    llm_cache.cache_clear()


def settings(store: Path, cache: str = "sqlite") -> Settings:
    return get_settings(store=store, chat_model="openai:scripted", cache=cache)


def ask(s: Settings, question: str) -> dict[str, Any]:
    return reflection.build(settings=s).invoke({"question": question})["trace"]


def test_repeated_question_is_served_from_the_cache(tmp_path: Path, factory: Factory) -> None:
    s = settings(tmp_path / "store")
    first = ask(s, "Explain reciprocal rank fusion")
    assert factory.calls == 2 and first["llm_calls"] == 2 and first["cache_hits"] == 0
    assert (tmp_path / "store" / "llm_cache.sqlite").is_file()  # the default place, made with its folder

    second = ask(s, "Explain reciprocal rank fusion")
    assert factory.calls == 2  # no new model call
    assert second["cache_hits"] == 2 and second["llm_calls"] == 0
    assert second["prompt_tokens"] == second["completion_tokens"] == 0 and second["cost"] == 0.0
    assert second["action"] == first["action"] == "passed"  # the cached critique parsed like a fresh one
    assert second["structured_outputs"]["fallbacks"] == 0


def test_cache_survives_a_new_process_worth_of_objects(tmp_path: Path, factory: Factory) -> None:
    """The replies are on disk: a new model and a new SQLiteCache object on the same file still hit."""
    s = settings(tmp_path / "store")
    ask(s, "What is BM25?")
    _build_chat_model.cache_clear()
    llm_cache.cache_clear()
    again = ask(s, "What is BM25?")
    assert len(factory.models) == 2 and factory.models[1].call_count == 0
    assert again["cache_hits"] == 2 and again["llm_calls"] == 0


def test_different_questions_miss(tmp_path: Path, factory: Factory) -> None:
    s = settings(tmp_path / "store")
    ask(s, "What is BM25?")
    other = ask(s, "What is FAISS?")
    assert factory.calls == 4 and other["llm_calls"] == 2 and other["cache_hits"] == 0


def test_cache_path_setting_places_the_file(tmp_path: Path, factory: Factory) -> None:
    custom = tmp_path / "elsewhere" / "replies.sqlite"
    s = get_settings(store=tmp_path / "store", chat_model="openai:scripted", cache="sqlite", cache_path=custom)
    assert cache_file(s) == custom
    ask(s, "What is BM25?")
    assert custom.is_file() and not (tmp_path / "store").exists()


def test_cache_off_creates_no_file_and_counts_every_call(tmp_path: Path, factory: Factory) -> None:
    s = settings(tmp_path / "store", cache="")
    assert cache_file(s) is None
    ask(s, "What is BM25?")
    again = ask(s, "What is BM25?")
    assert factory.calls == 4 and again["llm_calls"] == 2 and again["cache_hits"] == 0
    assert factory.kwargs[0].get("cache") is None
    assert not (tmp_path / "store").exists()


def test_a_plain_invoke_counts_the_hit_once(tmp_path: Path, factory: Factory) -> None:
    """invoke_llm (every graph's plain call) returns the cached reply and a usage of one hit."""
    model = get_chat_model(settings(tmp_path / "store"))
    assert model is not None
    fresh, fresh_usage = invoke_llm(model, "hello")
    cached, cached_usage = invoke_llm(model, "hello")
    assert cached.content == fresh.content
    assert (fresh_usage["llm_calls"], fresh_usage["cache_hits"]) == (1, 0)
    assert (cached_usage["llm_calls"], cached_usage["cache_hits"], cached_usage["prompt_tokens"]) == (0, 1, 0)
    assert usage_trace(add_usage(fresh_usage, cached_usage))["cache_hits"] == 1


def test_unwritable_cache_path_is_one_line(tmp_path: Path, factory: Factory) -> None:
    from graphcraft.errors import ModelError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    s = get_settings(chat_model="openai:scripted", cache="sqlite", cache_path=blocker / "cache.sqlite")
    with pytest.raises(ModelError) as err:
        get_chat_model(s)
    assert "\n" not in str(err.value) and "GRAPHCRAFT_CACHE" in str(err.value)


def test_bad_cache_value_is_refused() -> None:
    from graphcraft.errors import SettingsError

    with pytest.raises(SettingsError, match="cache"):
        get_settings(cache="redis")


def test_usage_callback_counts_a_model_call_without_a_cache() -> None:
    """The hit detection must not swallow real calls: a model without a cache is counted as a call."""
    model = ScriptedChatModel(script=["a reply"])
    cb = UsageCallback(0.0, 0.0)
    model.invoke("hi", config={"callbacks": [cb]})
    assert cb.usage["llm_calls"] == 1 and cb.usage["cache_hits"] == 0 and cb.usage["completion_tokens"] > 0
    assert empty_usage()["cache_hits"] == 0


def test_a_hit_from_any_langchain_cache_is_counted() -> None:
    """Without graphcraft's mark (a cache set by the user), langchain_core's own `total_cost` mark is read."""
    from langchain_core.caches import InMemoryCache

    model = ScriptedChatModel(script=["a reply", "another"], cache=InMemoryCache())
    cb = UsageCallback(0.0, 0.0)
    model.invoke("hi", config={"callbacks": [cb]})
    model.invoke("hi", config={"callbacks": [cb]})
    assert model.call_count == 1
    assert (cb.usage["llm_calls"], cb.usage["cache_hits"]) == (1, 1)
