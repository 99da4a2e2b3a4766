"""Knowledge tools for agents: search the ingested documents, query the entity graph, search the web.

Each tool returns readable text for the model and, as its artifact, the provenance of what it
found (`{"source", "chunk_id", "page", "score", "text"}` dicts), which the agent graphs collect
into their `sources`. Stores and search clients are opened on first use, so creating the tools
never fails on a machine with no store yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool, StructuredTool, ToolException

from graphcraft.config import Settings, get_settings
from graphcraft.errors import GraphcraftError
from graphcraft.runtime.result import source_dict

MAX_CHARS_PER_HIT = 800


def format_hits(docs: list[Document]) -> str:
    """Numbered hits with their provenance, for the model to read and cite."""
    if not docs:
        return "no results"
    lines = []
    for i, doc in enumerate(docs, 1):
        meta = doc.metadata
        where = meta.get("source", "?") + (f" p.{meta['page']}" if meta.get("page") else "")
        score = f" score={meta['score']:.3f}" if isinstance(meta.get("score"), int | float) else ""
        lines.append(f"[{i}] {where} ({meta.get('chunk_id', '')}{score})\n{doc.page_content[:MAX_CHARS_PER_HIT]}")
    return "\n\n".join(lines)


def _search_tool(name: str, description: str, search: Callable[[str], list[Document]]) -> BaseTool:
    def run(query: str) -> tuple[str, list[dict[str, Any]]]:
        try:
            docs = search(query)
        except GraphcraftError as exc:
            raise ToolException(f"{name} unavailable: {exc}") from None
        return format_hits(docs), [source_dict(d) for d in docs]

    return StructuredTool.from_function(
        run, name=name, description=description, response_format="content_and_artifact", handle_tool_error=True
    )


def retriever_tool(
    retriever: BaseRetriever | None = None,
    *,
    settings: Settings | None = None,
    kind: str = "hybrid",
    k: int | None = None,
    name: str = "search_documents",
    description: str = "Search the ingested documents. Input: a focused search query. Returns numbered "
    "passages with their source; cite them.",
) -> BaseTool:
    """A tool over `retriever`, or over the configured store's `kind` retriever (opened lazily)."""
    holder: dict[str, BaseRetriever] = {}

    def search(query: str) -> list[Document]:
        if retriever is not None:
            return retriever.invoke(query)
        if "r" not in holder:
            from graphcraft.runtime.context import Context

            holder["r"] = Context(settings).retriever(kind, k)
        return holder["r"].invoke(query)

    return _search_tool(name, description, search)


def web_search_tool(settings: Settings | None = None, k: int = 5) -> BaseTool | None:
    """`web_search` when GRAPHCRAFT_WEB_SEARCH names a LangChain search tool; None otherwise."""
    settings = settings or get_settings()
    if not settings.web_search:
        return None
    holder: dict[str, Any] = {}

    def search(query: str) -> list[Document]:
        if "s" not in holder:
            from graphcraft.retrievers.external import make_external_search

            holder["s"] = make_external_search(settings.model_copy(update={"external_store": None}))
        return holder["s"].search(query, k)

    return _search_tool(
        "web_search", "Search the web for current or missing information. Input: a search query.", search
    )


def graph_query_tool(settings: Settings | None = None, model: Any = None) -> BaseTool | None:
    """`query_graph` (natural language -> validated read-only Cypher over the entity graph).

    None when it cannot work: Text2Cypher needs a chat model, and an entity graph must have been
    built (`graphcraft graph build`) or a Neo4j database configured. None too below full clearance:
    a model-written query can compute values from any node, which the clearance filter cannot trace
    back to the chunks they came from. The graph store is opened (FalkorDB started) on the first
    call, not when the tool is made.
    """
    from pathlib import Path

    from graphcraft.guards.access import LEVELS
    from graphcraft.models import resolve_chat_model
    from graphcraft.tools.text2cypher import text2cypher

    settings = settings or get_settings()
    if settings.clearance != LEVELS[-1]:
        return None
    model = resolve_chat_model(model, settings)
    if model is None or not (settings.neo4j_uri or (Path(settings.store) / "falkordb").exists()):
        return None
    holder: dict[str, Any] = {}

    def query_graph(question: str) -> dict[str, Any]:
        """Answer a question about entities and their relations by querying the knowledge graph."""
        if "store" not in holder:
            from graphcraft.graph_index.api import open_graph

            holder["store"] = open_graph(settings=settings)
        out = text2cypher(question, holder["store"], model, max_repairs=settings.max_structured_repairs)
        if not out.ok:
            raise ToolException(
                f"no valid Cypher after {out.attempts} attempts: {out.errors[-1] if out.errors else 'unknown'}"
            )
        return {"cypher": out.cypher, "rows": out.rows}

    return StructuredTool.from_function(query_graph, name="query_graph", handle_tool_error=True)


def knowledge_tools(
    settings: Settings | None = None, *, kind: str = "hybrid", k: int | None = None, model: Any = None
) -> list[BaseTool]:
    """search_documents, plus query_graph and web_search when available/configured."""
    tools: list[BaseTool] = [retriever_tool(settings=settings, kind=kind, k=k)]
    for extra in (graph_query_tool(settings, model), web_search_tool(settings)):
        if extra is not None:
            tools.append(extra)
    return tools
