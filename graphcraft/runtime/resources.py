"""What a graph needs at run time (store, retrievers, models), created lazily.

`graph = build()` runs at import for LangGraph Studio, where no store or model may exist yet;
resources are therefore opened on first use inside a node, and a missing store or model turns
into a clear GraphcraftError there. Per-invocation overrides come from
`config["configurable"]` (e.g. {"store": "path", "chat_model": "ollama:llama3.1"}).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from graphcraft.config import Settings, get_settings
from graphcraft.errors import EmptyStoreError
from graphcraft.models import get_embeddings, require_chat_model, resolve_chat_model
from graphcraft.stores.vector import ChunkStore, open_store

_UNSET: Any = object()
CONFIGURABLE_SETTINGS = {
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
}


class Resources:
    def __init__(
        self,
        settings: Settings | None = None,
        model: BaseChatModel | None = None,
        store: ChunkStore | None = None,
        external: Any = _UNSET,
    ) -> None:
        self.settings = settings or get_settings()
        self._model = model
        self._store = store
        self._opened_from: str | None = None  # the generation a store we opened ourselves came from
        self._retrievers: dict[tuple, Any] = {}
        self._external = external

    # ---------------------------------------------------------------- configuration
    def for_config(self, config: RunnableConfig | None) -> Resources:
        """These resources, or a copy with the invocation's configurable overrides applied."""
        configurable = (config or {}).get("configurable", {}) if config else {}
        overrides = {k: v for k, v in configurable.items() if k in CONFIGURABLE_SETTINGS and v is not None}
        if not overrides:
            return self
        key = tuple(sorted((k, str(v)) for k, v in overrides.items()))
        cache = self.__dict__.setdefault("_variants", {})
        if key not in cache and len(cache) >= 16:  # bounded: one variant per distinct override set
            cache.pop(next(iter(cache)))
        if key not in cache:
            settings = Settings.model_validate(
                {**self.settings.model_dump(), **overrides}
            )  # "0.9" -> 0.9; bad values refused
            same_store = "store" not in overrides
            cache[key] = Resources(
                settings,
                None if "chat_model" in overrides else self._model,
                self._store if same_store else None,
                self._external if "external_store" not in overrides else _UNSET,
            )
        return cache[key]

    # ---------------------------------------------------------------- models
    @property
    def model(self) -> BaseChatModel | None:
        """The chat model, or None offline (local strategies are used)."""
        if self._model is None:
            self._model = resolve_chat_model(None, self.settings)
        return self._model

    def require_model(self, what: str) -> BaseChatModel:
        return require_chat_model(self.model, what, self.settings)

    @cached_property
    def embeddings(self) -> Any:
        return self._store.embeddings if self._store is not None else get_embeddings(self.settings)

    # ---------------------------------------------------------------- stores
    @property
    def store(self) -> ChunkStore:
        """The ingested store; EmptyStoreError if nothing was ingested there.

        A long-lived graph (Studio, LangGraph Server) reopens the store when an ingest has
        committed a new generation since it was opened, so new documents are seen.
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
            if path.is_dir() and not current.exists() or not path.exists():
                raise EmptyStoreError(self.settings.store)
            self._store = open_store(path, self.settings, create=False)
            self._opened_from = current.read_text().strip() if current.exists() else None
        if len(self._store) == 0:
            raise EmptyStoreError(self._store.path)
        return self._store

    def retriever(self, kind: str = "hybrid", k: int | None = None) -> Any:
        """A retriever over the store, made once per (kind, k) and reused across runs."""
        from graphcraft.retrievers import make_retriever

        store = self.store
        key = (kind, k or self.settings.top_k)
        if key not in self._retrievers:
            self._retrievers[key] = make_retriever(kind, store, key[1])
        return self._retrievers[key]

    @property
    def external(self) -> Any:
        """The external search (web tool or second store), or None when none is configured."""
        if self._external is _UNSET:
            from graphcraft.retrievers.external import make_external_search

            self._external = make_external_search(self.settings)
        return self._external
