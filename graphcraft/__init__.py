"""graphcraft: advanced RAG, reasoning and multi-agent capabilities as bounded LangGraph graphs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ask", "calibration", "ingest", "graph_stats", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path


def ingest(paths: list[str | Path] | str | Path, store: str | Path | None = None, **options: Any) -> dict:
    """Ingest files/folders into a store. Returns {"files", "added", "skipped", "failed": [...]}."""
    from graphcraft.api import ingest as _ingest

    return _ingest(paths, store=store, **options)


def ask(question: str, graph: str = "crag", store: str | Path | None = None, **options: Any) -> dict:
    """Answer a question with a graph. Returns {"question", "answer", "sources", "trace"}."""
    from graphcraft.api import ask as _ask

    return _ask(question, graph=graph, store=store, **options)


def graph_stats(store: str | Path | None = None) -> dict:
    """Counts of the entity graph: {"entities", "relations", "chunks", "communities"}."""
    from graphcraft.api import graph_stats as _graph_stats

    return _graph_stats(store=store)


def calibration(store: str | Path | None = None, recompute: bool = False) -> dict:
    """The store's evaluator thresholds and the pseudo-question score distributions behind them."""
    from graphcraft.api import calibration as _calibration

    return _calibration(store=store, recompute=recompute)
