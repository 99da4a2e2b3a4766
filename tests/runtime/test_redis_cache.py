"""The Redis LLM response cache (GRAPHCRAFT_REDIS_URL): hits counted in the trace like the SQLite
cache's, and a Redis that goes away mid-run costs one warning, never the run.

The chat model is the only fake: scripted models returned by LangChain's `init_chat_model`, so calls
go through graphcraft's model factory, langchain_community's RedisCache and a real redis-server
started by the fixture, inside a real graph (reflection: a draft, then a structured critique).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from graphcraft.config import Settings, get_settings, reset_settings_cache
from graphcraft.graphs import reflection
from graphcraft.models import _build_chat_model, cache_spec, llm_cache
from graphcraft.runtime.resilience import breaker_states
from graphcraft.testing import ScriptCall, ScriptedChatModel

PASSING = {"scores": [{"criterion": c, "score": 9} for c in reflection.DEFAULT_CRITERIA], "summary": "fine"}


class Factory:
    """Stands in for init_chat_model; `on_call` runs inside every model call (to kill Redis mid-run)."""

    def __init__(self) -> None:
        self.models: list[ScriptedChatModel] = []
        self.on_call: Any = None

    def reply(self, call: ScriptCall) -> Any:
        if self.on_call is not None:
            self.on_call(call)
        return PASSING if call.schema == "Critique" else f"draft for: {call.last[:40]}"

    def __call__(self, spec: str, **kwargs: Any) -> ScriptedChatModel:
        model = ScriptedChatModel(script=self.reply, cache=kwargs.get("cache"))
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
    monkeypatch.setenv("GRAPHCRAFT_BREAKER_RESET_S", "0.3")
    reset_settings_cache()
    _build_chat_model.cache_clear()
    llm_cache.cache_clear()
    yield made
    _build_chat_model.cache_clear()
    llm_cache.cache_clear()


def settings(store: Path, url: str) -> Settings:
    return get_settings(store=store, chat_model="openai:scripted", redis_url=url, cache="sqlite")


def ask(s: Settings, question: str) -> dict[str, Any]:
    return reflection.build(settings=s).invoke({"question": question})["trace"]


def test_redis_replaces_sqlite_and_hits_are_counted(tmp_path: Path, factory: Factory, redis_server) -> None:  # type: ignore[no-untyped-def]
    s = settings(tmp_path / "store", redis_server.url)
    assert cache_spec(s) == redis_server.url
    first = ask(s, "Explain reciprocal rank fusion")
    assert factory.calls == 2 and first["llm_calls"] == 2 and first["cache_hits"] == 0
    assert redis_server.keys() == 2 and not (tmp_path / "store" / "llm_cache.sqlite").exists()

    second = ask(s, "Explain reciprocal rank fusion")
    assert factory.calls == 2  # no new model call
    assert second["cache_hits"] == 2 and second["llm_calls"] == 0 and second["cost"] == 0.0
    assert second["action"] == first["action"] == "passed"  # the cached critique parsed like a fresh one


def test_replies_outlive_the_process_objects(tmp_path: Path, factory: Factory, redis_server) -> None:  # type: ignore[no-untyped-def]
    s = settings(tmp_path / "store", redis_server.url)
    ask(s, "What is BM25?")
    _build_chat_model.cache_clear()
    llm_cache.cache_clear()
    again = ask(s, "What is BM25?")
    assert len(factory.models) == 2 and factory.models[1].call_count == 0 and again["cache_hits"] == 2


def test_redis_killed_mid_run_warns_once_and_the_run_goes_on(  # type: ignore[no-untyped-def]
    tmp_path: Path, factory: Factory, redis_server, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path / "store", redis_server.url)
    factory.on_call = lambda call: redis_server.kill()  # dies during the run's first model call
    with caplog.at_level(logging.WARNING, logger="graphcraft.models"):
        out = reflection.build(settings=s).invoke({"question": "What is FAISS?"})
        again = ask(s, "What is FAISS?")  # still down: no cache, no new warning
    trace = out["trace"]
    assert trace["action"] == "passed" and out["answer"].startswith("draft for:")
    assert trace["llm_calls"] == 2 and trace["cache_hits"] == 0
    assert again["llm_calls"] == 2 and again["cache_hits"] == 0 and factory.calls == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"llm cache {redis_server.url} is unavailable (ConnectionError")
    assert warnings[0].endswith("continuing without the LLM cache")


def test_the_cache_is_used_again_once_redis_is_back(tmp_path: Path, factory: Factory, redis_server) -> None:  # type: ignore[no-untyped-def]
    s = settings(tmp_path / "store", redis_server.url)
    redis_server.kill()
    for _ in range(6):  # enough failures to open the breaker: later calls skip Redis at once
        ask(s, "What is a reranker?")
    [state] = [b for b in breaker_states() if b["key"] == f"llm cache {redis_server.url}"]
    assert state["state"] == "open"

    redis_server.start()  # empty again: no persistence
    time.sleep(0.35)  # past breaker_reset_s: the next lookup is the trial
    ask(s, "What is a reranker?")
    hit = ask(s, "What is a reranker?")
    assert hit["cache_hits"] == 2 and hit["llm_calls"] == 0 and redis_server.keys() == 2
