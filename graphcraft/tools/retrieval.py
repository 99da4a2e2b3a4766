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

    return StructuredTool.from_function(run, name=name, description=description,
                                        response_format="content_and_artifact", handle_tool_error=True)


def retriever_tool(retriever: BaseRetriever | None = None, *, settings: Settings | None = None, kind: str = "hybrid",
                   k: int | None = None, name: str = "search_documents",
                   description: str = "Search the ingested documents. Input: a focused search query. Returns numbered "
                                      "passages with their source; cite them.") -> BaseTool:
    """A tool over `retriever`, or over the configured store's `kind` retriever (opened lazily)."""
    holder: dict[str, BaseRetriever] = {}

    def search(query: str) -> list[Document]:
        if retriever is not None:
            return retriever.invoke(query)
        if "r" not in holder:
            from graphcraft.runtime.resources import Resources

            holder["r"] = Resources(settings).retriever(kind, k)
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

    return _search_tool("web_search", "Search the web for current or missing information. Input: a search query.", search)


def graph_query_tool(settings: Settings | None = None) -> BaseTool | None:
    """`graph_query` (natural language -> Cypher over the entity graph) when Graph RAG provides text2cypher."""
    try:
        from graphcraft.tools import text2cypher
    except ImportError:
        return None
    factory = getattr(text2cypher, "text2cypher_tool", None) or getattr(text2cypher, "graph_query_tool", None)
    return factory(settings=settings) if callable(factory) else None


def knowledge_tools(settings: Settings | None = None, *, kind: str = "hybrid", k: int | None = None) -> list[BaseTool]:
    """search_documents, plus graph_query and web_search when available/configured."""
    tools: list[BaseTool] = [retriever_tool(settings=settings, kind=kind, k=k)]
    for extra in (graph_query_tool(settings), web_search_tool(settings)):
        if extra is not None:
            tools.append(extra)
    return tools
