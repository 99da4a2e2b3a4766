"""graphcraft: advanced RAG, reasoning and multi-agent capabilities as bounded LangGraph graphs.

``graphcraft.ingest``, ``graphcraft.ask`` ... are the functions of `graphcraft.api`, looked up on
first use so that ``import graphcraft`` stays cheap (no LangChain, no models) for the command
line and for LangGraph Studio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ask", "calibration", "feedback", "graph_stats", "ingest", "remove", "stream", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from graphcraft.api import ask, calibration, feedback, graph_stats, ingest, remove, stream


def __getattr__(name: str) -> Any:
    if name in __all__:
        from graphcraft import api

        return getattr(api, name)
    raise AttributeError(f"module 'graphcraft' has no attribute {name!r}")
