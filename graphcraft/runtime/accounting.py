"""LLM call and token accounting.

`Usage` is a small additive record that graph states carry (with `add_usage` as the LangGraph
reducer), so budgets can be checked in routing functions. `UsageCallback` is a LangChain
callback handler that fills a `Usage` from every chat-model call made under it; providers'
`usage_metadata` is used when present, offline token counts otherwise. A call that failed after
the server answered (an OpenAI reply cut at the token limit raises) counts the tokens the
server reported. A reply served from the LLM response cache (GRAPHCRAFT_CACHE=sqlite) reaches
callbacks exactly like a model call — langchain_core calls on_chat_model_start and on_llm_end
around its cache lookup — so it is told apart by its mark and counted in `cache_hits`, never as
an LLM call or as tokens spent. The `structured_*` counters are filled by
`models.structured_call`, so every graph's usage reducer also sums structured outputs, their
repairs and their fallbacks.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any, Literal, get_args
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from typing_extensions import TypedDict

from graphcraft.runtime.tokens import count_tokens, message_text, token_counter_name


class Usage(TypedDict, total=False):
    llm_calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    structured_calls: int
    structured_repairs: int
    structured_fallbacks: int


UsageKey = Literal[
    "llm_calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "structured_calls",
    "structured_repairs",
    "structured_fallbacks",
]
USAGE_KEYS: tuple[UsageKey, ...] = get_args(UsageKey)

CACHE_HIT = "graphcraft_cache_hit"
"""generation_info key graphcraft's SQLite cache puts on every generation it serves (models.llm_cache)."""


def is_cache_hit(generation: Any) -> bool:
    """Whether a generation came from an LLM cache rather than the model: graphcraft's own mark, or the
    `total_cost: 0` that langchain_core adds to a cached AI message's usage_metadata (any cache, also a
    process-global one set with set_llm_cache). Providers' usage_metadata has no `total_cost` key."""
    if (getattr(generation, "generation_info", None) or {}).get(CACHE_HIT):
        return True
    meta = getattr(getattr(generation, "message", None), "usage_metadata", None) or {}
    return "total_cost" in meta


def empty_usage() -> Usage:
    return Usage(
        llm_calls=0,
        cache_hits=0,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=0.0,
        structured_calls=0,
        structured_repairs=0,
        structured_fallbacks=0,
    )


def add_usage(left: Usage | None, right: Usage | None) -> Usage:
    """LangGraph reducer: field-wise sum (None is zero)."""
    out = empty_usage()
    for part in (left or {}, right or {}):
        for key in USAGE_KEYS:
            out[key] = out.get(key, 0) + part.get(key, 0)
    out["cost_usd"] = round(out["cost_usd"], 6)
    return out


def total_tokens(usage: Usage | None) -> int:
    usage = usage or {}
    return int(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))


def reported_tokens(error: BaseException) -> tuple[int, int] | None:
    """(prompt, completion) tokens the server reported for a call that raised after it answered:
    the OpenAI client's LengthFinishReasonError carries the cut completion and its usage."""
    usage = getattr(getattr(error, "completion", None), "usage", None)
    if usage is None:
        return None
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


_PRICES: ContextVar[tuple[float, float] | None] = ContextVar("graphcraft_prices", default=None)


def use_prices(settings: Any) -> None:
    """Make `settings`' token prices the ones model calls are costed at in this step of a run.

    Every node starts with ``context(config, GRAPH)``, which calls this with the run's settings, so a
    price given per run (an option, a run's configurable) is the one the trace's cost uses; LangGraph
    runs each node in a copy of the context, so one run's prices never reach another's."""
    _PRICES.set((float(settings.prompt_cost_per_mtok), float(settings.completion_cost_per_mtok)))


def _run_prices() -> tuple[float, float]:
    """The prices `use_prices` set for the run in progress; outside a run (a value left behind in a thread
    that called a node directly), the environment's."""
    prices = _PRICES.get()
    if prices is not None and _in_a_run():
        return prices
    from graphcraft.config import get_settings

    settings = get_settings()
    return settings.prompt_cost_per_mtok, settings.completion_cost_per_mtok


def _in_a_run() -> bool:
    from langgraph.config import get_config

    try:
        get_config()
    except RuntimeError:
        return False
    return True


class UsageCallback(BaseCallbackHandler):
    """Counts chat-model calls and tokens (and cost, given per-million-token prices)."""

    def __init__(
        self, prompt_cost_per_mtok: float | None = None, completion_cost_per_mtok: float | None = None
    ) -> None:
        """Prices in USD per million tokens; None takes the run's (see `use_prices`), else
        GRAPHCRAFT_PROMPT/COMPLETION_COST_PER_MTOK."""
        self.usage: Usage = empty_usage()
        self.token_counter = token_counter_name()
        if prompt_cost_per_mtok is None or completion_cost_per_mtok is None:
            run_prompt, run_completion = _run_prices()
            prompt_cost_per_mtok = run_prompt if prompt_cost_per_mtok is None else prompt_cost_per_mtok
            completion_cost_per_mtok = run_completion if completion_cost_per_mtok is None else completion_cost_per_mtok
        self._prompt_price = prompt_cost_per_mtok
        self._completion_price = completion_cost_per_mtok
        self._pending: dict[UUID, int] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        prompt = sum(count_tokens(message_text(m)) for batch in messages for m in batch)
        with self._lock:
            self._pending[run_id] = prompt

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._pending[run_id] = sum(count_tokens(p) for p in prompts)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        prompt_est = self._pending.pop(run_id, 0)
        served = [gen for batch in response.generations for gen in batch]
        if served and all(is_cache_hit(gen) for gen in served):
            with self._lock:
                self.usage = add_usage(self.usage, Usage(cache_hits=1))
            return
        prompt, completion = 0, 0
        reported = False
        for generations in response.generations:
            for gen in generations:
                message = getattr(gen, "message", None)
                meta = getattr(message, "usage_metadata", None) if message is not None else None
                if meta:
                    reported = True
                    prompt += int(meta.get("input_tokens", 0))
                    completion += int(meta.get("output_tokens", 0))
                else:
                    text = message_text(message) if message is not None else gen.text
                    tool_calls = getattr(message, "tool_calls", None) or []
                    completion += count_tokens(text) + sum(count_tokens(str(tc.get("args", ""))) for tc in tool_calls)
        if not reported:
            prompt = prompt_est
        self._add_call(prompt, completion)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # A failed call still costs a call against the budget: what the server reported if it
        # answered, else the estimated prompt.
        prompt = self._pending.pop(run_id, 0)
        prompt, completion = reported_tokens(error) or (prompt, 0)
        self._add_call(prompt, completion)

    def _add_call(self, prompt: int, completion: int) -> None:
        cost = (prompt * self._prompt_price + completion * self._completion_price) / 1_000_000
        with self._lock:
            self.usage = add_usage(
                self.usage, Usage(llm_calls=1, prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost)
            )
