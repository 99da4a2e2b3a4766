"""The per-run context every node reads: settings with the run's overrides, model, store, bounds, options.

A graph's `build()` makes one `Context` from its arguments and binds it to the compiled graph
(`bind_context`); every node starts with ``ctx = context(config, GRAPH)``, which returns that
bound context, or a copy with the run's ``config["configurable"]`` overrides applied — validated
into Settings here and nowhere else (e.g. {"store": "path", "chat_model": "ollama:llama3.1",
"max_llm_calls": 4}, or one of the graph's own options such as "max_tool_calls"). Options that
reach the host (a workspace, python, MCP servers, tools) and options holding objects stay as built.

The context is keyed by graph name because LangGraph passes a parent's configurable down to
the subgraphs a node invokes: adaptive_rag's context must not replace crag's inside crag.
A node called on its own, with no bound context, gets one built from the environment's Settings.

`graph = build()` runs at import for LangGraph Studio, where no store or model may exist yet;
resources are therefore opened on first use inside a node, and a missing store or model turns
into a clear GraphcraftError there.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from graphcraft.config import Settings, get_settings, with_overrides
from graphcraft.errors import EmptyStoreError, SettingsError
from graphcraft.guards.access import cleared
from graphcraft.models import get_embeddings, require_chat_model, resolve_chat_model
from graphcraft.runtime.accounting import use_prices
from graphcraft.runtime.bounds import Bounds
from graphcraft.stores.generations import was_ingested
from graphcraft.stores.vector import ChunkStore, open_store

UNSET: Any = object()
CONTEXT_KEY = "__graphcraft_context__"  # "__" keeps it out of checkpoint metadata
CONFIGURABLE_SETTINGS = frozenset(
    {
        "store",
        "chat_model",
        "base_url",
        "top_k",
        "max_iterations",
        "token_budget",
        "max_llm_calls",
        "upper_threshold",
        "lower_threshold",
        "strip_threshold",
        "external_store",
        "web_search",
        "max_search_rounds",
        "max_seconds",
        "max_tokens",
        "clearance",  # lower only: see for_config
    }
)
_PRIMITIVE = (bool, int, float, str)
# Options that decide what a run may touch on the host: fixed when the graph is built, never taken from a
# run's configurable (which any LangGraph Server client can send).
BUILD_ONLY_OPTIONS = frozenset({"workspace", "enable_python", "mcp_config", "tools", "memory_store"})


class Context:
    """Settings, model, stores and a graph's own options for one run; heavy parts open lazily."""

    def __init__(
        self,
        settings: Settings | None = None,
        model: BaseChatModel | None = None,
        store: ChunkStore | None = None,
        external: Any = UNSET,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.options: dict[str, Any] = dict(options or {})
        self._model = model
        self._store = store
        self._opened_from: str | None = None  # the generation a store we opened ourselves came from
        self._retrievers: dict[tuple, Any] = {}
        self._external = external

    # ---------------------------------------------------------------- configuration
    def for_config(self, config: RunnableConfig | None) -> Context:
        """This context, or a copy with the run's configurable overrides (settings and options) applied."""
        configurable = (config or {}).get("configurable") or {}
        settings = {k: v for k, v in configurable.items() if k in CONFIGURABLE_SETTINGS and v is not None}
        options = {k: v for k, v in configurable.items() if self._overridable(k) and v is not None}
        if not settings and not options:
            return self
        _check_allowed(self.settings, [*settings, *options])
        if "clearance" in settings:
            settings["clearance"] = _lower_clearance(self.settings.clearance, settings["clearance"])
        key = tuple(sorted((k, repr(v)) for k, v in {**settings, **options}.items()))
        cache = self.__dict__.setdefault("_variants", {})
        if key not in cache and len(cache) >= 16:  # bounded: one variant per distinct override set
            cache.pop(next(iter(cache)))
        if key not in cache:
            cache[key] = Context(
                with_overrides(self.settings, settings),
                None if "chat_model" in settings or "base_url" in settings else self._model,
                None if "store" in settings else self._store,
                UNSET if "external_store" in settings or "web_search" in settings else self._external,
                {**self.options, **{k: _like(self.options[k], k, v) for k, v in options.items()}},
            )
        return cache[key]

    def _overridable(self, name: str) -> bool:
        """A run may override a graph option that holds a plain value and does not reach the host."""
        if name not in self.options or name in BUILD_ONLY_OPTIONS:
            return False
        value = self.options[name]
        plain_list = isinstance(value, tuple | list) and all(isinstance(v, _PRIMITIVE) for v in value)
        return isinstance(value, _PRIMITIVE) or plain_list

    def option(self, name: str, default: Any = None) -> Any:
        """One of the graph's build options (with the run's override, if any)."""
        value = self.options.get(name)
        return default if value is None else value

    @property
    def bounds(self) -> Bounds:
        """The run's loop bounds: iterations, LLM calls, tokens, wall clock (from its settings)."""
        return Bounds.from_settings(self.settings)

    # ---------------------------------------------------------------- models
    @property
    def model(self) -> BaseChatModel | None:
        """The chat model, or None offline (local strategies are used)."""
        if self._model is None:
            self._model = resolve_chat_model(None, self.settings)
        return self._model

    def model_within(self, state: Mapping[str, Any]) -> BaseChatModel | None:
        """The chat model while the run's budgets (calls, tokens, time) last; None once one is spent, so a
        step with an offline strategy (grading, answering) finishes the run without calling past the budget."""
        return None if self.bounds.reached(state) else self.model

    def require_model(self, what: str) -> BaseChatModel:
        return require_chat_model(self.model, what, self.settings)

    @cached_property
    def embeddings(self) -> Any:
        return self._store.embeddings if self._store is not None else get_embeddings(self.settings)

    # ---------------------------------------------------------------- stores
    @property
    def store(self) -> ChunkStore:
        """The ingested store as this run's clearance sees it; EmptyStoreError if nothing was ingested there.

        Every chunk a graph reads comes through here (retrievers, neighbours fetched by id,
        calibration), so a chunk classified above `settings.clearance` is never in it: see
        guards.access.cleared. A long-lived graph (Studio, LangGraph Server) reopens the store
        when an ingest has committed a new generation since it was opened, so new documents are seen.
        """
        path = Path(self.settings.store)
        current = path / "CURRENT"
        if self._store is not None and self._opened_from is not None:
            try:
                if current.read_text().strip() != self._opened_from:
                    self._store, self._retrievers = None, {}
            except OSError:
                pass
        if self._store is None:
            if not was_ingested(path):
                raise EmptyStoreError(self.settings.store)
            self._store = open_store(path, self.settings, create=False)
            self._opened_from = current.read_text().strip() if current.exists() else None
        if len(getattr(self._store, "base", self._store)) == 0:  # nothing ingested (not: nothing cleared)
            raise EmptyStoreError(self._store.path)
        return cleared(self._store, self.settings.clearance)  # may be empty: the run then finds nothing

    def retriever(self, kind: str = "hybrid", k: int | None = None) -> Any:
        """A retriever over the store, made once per (kind, k) and reused across runs."""
        from graphcraft.retrievers import make_retriever

        store = self.store
        key = (kind, k or self.settings.top_k, store.instance)
        if key not in self._retrievers:
            self._retrievers[key] = make_retriever(kind, store, key[1])
        return self._retrievers[key]

    @property
    def external(self) -> Any:
        """The external search (web tool or second store), or None when none is configured."""
        if self._external is UNSET:
            from graphcraft.retrievers.external import make_external_search

            self._external = make_external_search(self.settings)
        return self._external


def _check_allowed(settings: Settings, names: list[str]) -> None:
    """Refuse per-run values the deployment has not opened to clients (GRAPHCRAFT_RUN_OVERRIDES)."""
    allowed = settings.run_overrides.strip()
    if allowed == "*":
        return
    permitted = {n.strip() for n in allowed.split(",") if n.strip()}
    refused = sorted(n for n in names if n not in permitted)
    if refused:
        raise SettingsError.with_message(
            f"{', '.join(refused)} cannot be set per run here: GRAPHCRAFT_RUN_OVERRIDES allows "
            f"{', '.join(sorted(permitted)) or 'nothing'}"
        )


def _lower_clearance(current: str, requested: Any) -> str:
    """A run's clearance: at most the deployment's (GRAPHCRAFT_CLEARANCE); raising it is refused in one line."""
    from graphcraft.guards.access import LEVELS, rank

    if requested not in LEVELS:
        raise SettingsError.with_message(f"invalid per-run clearance {requested!r}: use one of {', '.join(LEVELS)}")
    if rank(requested) > rank(current):
        raise SettingsError.with_message(
            f"clearance {requested!r} is above this deployment's {current!r} (GRAPHCRAFT_CLEARANCE): "
            "a run may only lower its clearance"
        )
    return str(requested)


def _like(current: Any, name: str, value: Any) -> Any:
    """A per-run option override converted to the type of the graph's own value (from a string or JSON).

    A list option takes a list of plain values or one comma-separated string ("a,b").
    """
    if isinstance(current, tuple | list):
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, tuple | list) and all(isinstance(v, _PRIMITIVE) for v in items):
            return type(current)(v.strip() if isinstance(v, str) else v for v in items)
        raise SettingsError.with_message(f"invalid per-run option {name}={value!r}: expected a list")
    if isinstance(value, type(current)) and not (isinstance(value, bool) and not isinstance(current, bool)):
        return value
    if isinstance(current, bool):
        word = str(value).strip().lower()
        if word in {"1", "true", "yes", "on"} or word in {"0", "false", "no", "off"}:
            return word in {"1", "true", "yes", "on"}
    else:
        try:
            return type(current)(value)
        except (TypeError, ValueError):
            pass
    raise SettingsError.with_message(f"invalid per-run option {name}={value!r}: expected {type(current).__name__}")


def context(config: RunnableConfig | None, graph: str) -> Context:
    """The context of a run of `graph`: the one its build() bound, with the run's overrides applied."""
    configurable = (config or {}).get("configurable") or {}
    base = configurable.get(f"{CONTEXT_KEY}{graph}")
    if base is None:  # a node called on its own
        base = Context()
    ctx = base.for_config(config)
    use_prices(ctx.settings)  # the model calls of this step are costed at the run's prices
    return ctx


def bind_context(compiled: Any, graph: str, ctx: Context) -> Any:
    """`compiled` (a compiled LangGraph graph) with `ctx` as the base context of every run, behind the
    guard nodes when the settings switch guards on (GRAPHCRAFT_GUARDS; see graphcraft/guards/nodes.py)."""
    bound = compiled.with_config({"configurable": {f"{CONTEXT_KEY}{graph}": ctx}})
    if not ctx.settings.guards.strip():
        return bound
    from graphcraft.guards.nodes import active_guards, guarded

    active_guards(ctx.settings)  # an unknown guard fails the build, in one line
    return guarded(bound, graph).with_config({"configurable": {f"{CONTEXT_KEY}{graph}": ctx}})
