"""External knowledge for corrective RAG: a web search tool, or offline a second store.

CRAG turns to web search when internal retrieval fails. Offline, any store directory can play
that role (`GRAPHCRAFT_EXTERNAL_STORE` / `--external`); online, a LangChain search tool
(`GRAPHCRAFT_WEB_SEARCH=tavily|duckduckgo`, needs its package and network). With neither, the
graph records that no external source exists and answers from what it has, or abstains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from langchain_core.documents import Document

from graphcraft.errors import GraphcraftError
from graphcraft.guards.nodes import screen_retrieved


class ExternalSearch(Protocol):
    name: str

    def search(self, query: str, k: int = 5) -> list[Document]: ...


class StoreSearch:
    """A second graphcraft store searched with the hybrid retriever, as the caller's clearance sees it."""

    def __init__(self, path: str | Path, settings: Any = None) -> None:
        from graphcraft.guards.access import cleared
        from graphcraft.retrievers.hybrid import HybridRetriever
        from graphcraft.stores.vector import open_store

        clearance = str(getattr(settings, "clearance", "restricted"))
        self.store = cleared(open_store(path, settings, create=False), clearance)
        self.name = f"store:{path}"
        self._retriever = HybridRetriever(store=self.store)

    def search(self, query: str, k: int = 5) -> list[Document]:
        docs = self._retriever.search(query, k)
        for d in docs:
            d.metadata["origin"] = "external"
        return docs


class ToolSearch:
    """Any LangChain search tool returning text or a list of {url, content} results."""

    def __init__(self, tool: Any, name: str | None = None) -> None:
        self.tool = tool
        self.name = name or f"tool:{getattr(tool, 'name', type(tool).__name__)}"

    def search(self, query: str, k: int = 5) -> list[Document]:
        raw = self.tool.invoke(query)
        items = raw.get("results", raw) if isinstance(raw, dict) else raw
        docs: list[Document] = []
        if isinstance(items, str):
            items = [{"content": items, "url": self.name}]
        for i, item in enumerate(list(items)[:k]):
            content = item.get("content") or item.get("snippet") or str(item) if isinstance(item, dict) else str(item)
            url = (
                (item.get("url") or item.get("link") or item.get("href") or self.name)
                if isinstance(item, dict)
                else self.name
            )
            docs.append(
                Document(
                    page_content=content,
                    metadata={
                        "source": url,
                        "chunk_id": f"web-{i}",
                        "page": None,
                        "origin": "external",
                        "modality": "text",
                    },
                )
            )
        return screen_retrieved(docs)  # web results are untrusted text: the run's guards see them first


def make_external_search(settings: Any) -> ExternalSearch | None:
    """The configured external source, or None (recorded in the trace by the graph)."""
    if settings.external_store:
        return StoreSearch(settings.external_store, settings)
    if settings.web_search:
        kind = settings.web_search.lower()
        try:
            if kind == "tavily":
                from langchain_community.tools.tavily_search import TavilySearchResults

                return ToolSearch(TavilySearchResults(max_results=5), "tool:tavily")
            if kind == "duckduckgo":
                from langchain_community.tools import DuckDuckGoSearchResults

                return ToolSearch(DuckDuckGoSearchResults(output_format="list"), "tool:duckduckgo")
        except Exception as exc:  # noqa: BLE001 - missing package or key
            raise GraphcraftError(f"web search {kind!r} is not available: {exc}".splitlines()[0]) from exc
        raise GraphcraftError(f"unknown GRAPHCRAFT_WEB_SEARCH {kind!r}: use 'tavily' or 'duckduckgo'")
    return None
