"""Errors a user can act on. Each message is one line that says what to do.

The same error reaches two kinds of reader: a Python caller (``str(error)``) and a command-line
user (``error.for_cli()``, printed by the `graphcraft` command). The two differ only where the
advice does: a Python caller can hand a chat model in, a shell user sets an environment variable.
"""

from __future__ import annotations

from pydantic import ValidationError

_SET_CHAT_MODEL = (
    "set GRAPHCRAFT_CHAT_MODEL, e.g. 'local' (a small model that runs here), 'openai:gpt-4o-mini', "
    "or a model name with GRAPHCRAFT_BASE_URL for an OpenAI-compatible server"
)


def first_line(exc: object, limit: int = 240) -> str:
    """An exception's first line (its type when it says nothing), cut at `limit`: for one-line messages."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def url_without_password(url: str) -> str:
    """`url` with its password shown as *** (redis://user:***@host), for messages, reports and breaker keys."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


class GraphcraftError(ValueError):
    """Base class: the CLI prints these as a one-line error, never a traceback.

    A ValueError because it is one (a setting, input or configuration the user can change), and
    because LangGraph Server passes a ValueError's message to its clients while it hides other
    exceptions behind "An internal error occurred": a served graph's client reads the same one line.
    """

    def for_cli(self) -> str:
        """The message as the command line prints it: one line, advice a shell user can follow."""
        return " ".join(str(self).split())


class NoChatModelError(GraphcraftError):
    """Something that cannot work without a chat model found none configured.

    `what` is any noun phrase ("the tool agent", "the consensus agents", "Text2Cypher"); the
    message is built around a modal verb ("cannot run") so that it reads as English for a
    singular and a plural subject alike.
    """

    def __init__(self, what: str = "this graph") -> None:
        self.what = what
        super().__init__(f"{self._missing()}: pass model=<a LangChain chat model>, or {_SET_CHAT_MODEL}")

    def _missing(self) -> str:
        return f"{self.what} cannot run without a chat model"

    def for_cli(self) -> str:
        return f"{self._missing()}: {_SET_CHAT_MODEL}"


class UnknownGraphError(GraphcraftError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown graph {name!r}; available: {', '.join(sorted(known))}")


class EmptyStoreError(GraphcraftError):
    """Nothing to search: the store (or what a graph reads of it, such as its entity graph) is empty."""

    def __init__(self, store: object, what: str = "store", fix: str = "graphcraft ingest PATH --store {store}") -> None:
        super().__init__(f"{what} {store} is empty: run `{fix.format(store=store)}` first")


class SettingsError(GraphcraftError, ValidationError):
    """A setting (a keyword option, a run's configurable or a GRAPHCRAFT_* variable) out of its bounds.

    One line naming the value and where to fix it (made by graphcraft.config). Also a pydantic
    ValidationError, so code that catches pydantic's error keeps working.
    """

    message: str = ""

    def __str__(self) -> str:
        return self.message or super().__str__()

    @classmethod
    def with_message(cls, message: str, cause: ValidationError | None = None) -> SettingsError:
        """A SettingsError carrying `message` (and pydantic's details of `cause`, when it can rebuild them)."""
        try:
            error = cls.from_exception_data(cause.title if cause else "Settings", cause.errors() if cause else [])  # type: ignore[arg-type]
        except (TypeError, ValueError):  # an error type pydantic cannot rebuild: keep the message alone
            error = cls.from_exception_data("Settings", [])
        error.message = message
        return error


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
