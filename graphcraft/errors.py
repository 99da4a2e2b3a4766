"""Errors a user can act on. Each message is one line that says what to do."""

from __future__ import annotations


class GraphcraftError(Exception):
    """Base class: the CLI prints these as a one-line error, never a traceback."""


class NoChatModelError(GraphcraftError):
    def __init__(self, what: str = "this graph") -> None:
        super().__init__(
            f"{what} needs a chat model: set GRAPHCRAFT_CHAT_MODEL, e.g. 'local' (a small model that runs "
            "here), 'openai:gpt-4o-mini', or a model name with GRAPHCRAFT_BASE_URL for an OpenAI-compatible server"
        )


class UnknownGraphError(GraphcraftError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown graph {name!r}; available: {', '.join(sorted(known))}")


class EmptyStoreError(GraphcraftError):
    def __init__(self, store: object) -> None:
        super().__init__(f"store {store} is empty: run `graphcraft ingest PATH --store {store}` first")


class IngestError(GraphcraftError):
    """A single file could not be ingested; the rest of the batch goes on."""


class StoreError(GraphcraftError):
    """A store directory is unreadable, corrupt or made with another embedding model."""


class ModelError(GraphcraftError):
    """A configured model could not be created or reached."""


class ModelCallError(ModelError):
    """A call to a configured chat model failed: unreachable server, bad key, timeout ..."""

    def __init__(self, model: str, where: str, error: BaseException) -> None:
        detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        at = f" at {where}" if where else ""
        super().__init__(f"chat model call failed: {model!r}{at}: {detail}")
        self.model, self.where = model, where
