"""Python API of graph RAG: build the entity graph of a store, count it, open it, draw it.

`graphcraft.graph_stats(store=...)` and `graphcraft graph build|stats|show` go through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from graphcraft.api import settings_for
from graphcraft.config import Settings
from graphcraft.graph_index.build import STATE_DIR, BuildReport, ProgressFn, build_graph_index
from graphcraft.stores.graph import GraphStore, open_graph_store


def _require_ingested(store: str | Path) -> None:
    """EmptyStoreError unless the store was ingested (so a typo'd --store creates nothing)."""
    from graphcraft.errors import EmptyStoreError
    from graphcraft.stores.generations import was_ingested

    if not was_ingested(store):
        raise EmptyStoreError(store)


def open_graph(
    store: str | Path | None = None, settings: Settings | None = None, *, require_ingested: bool = False
) -> GraphStore:
    """The graph store of a store directory (FalkorDB inside it, or the configured Neo4j).

    ``require_ingested`` raises EmptyStoreError for a directory that holds no ingested store.
    """
    s = settings_for(store, settings)
    if require_ingested:
        _require_ingested(s.store)
    return open_graph_store(s.store, settings=s)


def build(
    store: str | Path | None = None,
    *,
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    force: bool = False,
    on_progress: ProgressFn | None = None,
    graph_store: GraphStore | None = None,
    chunk_store: Any = None,
) -> BuildReport:
    """Build or update the entity graph from the store's ingested chunks.

    Uses the configured chat model for extraction and summaries when there is one (or
    ``model``), spaCy and extractive summaries otherwise (zero LLM calls).
    """
    from graphcraft.models import resolve_chat_model
    from graphcraft.stores.vector import open_store

    s = settings_for(store, settings)
    if chunk_store is None:
        _require_ingested(s.store)
        chunk_store = open_store(s.store, s, create=False)
    own = graph_store is None
    graph_store = graph_store or open_graph_store(s.store, settings=s)
    try:
        return build_graph_index(
            chunk_store,
            graph_store,
            state_dir=Path(s.store) / STATE_DIR,
            model=resolve_chat_model(model, s),
            embeddings=chunk_store.embeddings,
            spacy_model=s.spacy_model,
            max_repairs=s.max_structured_repairs,
            force=force,
            on_progress=on_progress,
        )
    finally:
        if own:
            graph_store.close()


def graph_stats(store: str | Path | None = None, settings: Settings | None = None) -> dict[str, int]:
    """``{"entities", "relations", "chunks", "communities"}`` of the store's entity graph.

    Raises EmptyStoreError when the store directory holds no ingested store.
    """
    graph_store = open_graph(store, settings, require_ingested=True)
    try:
        return graph_store.counts()
    finally:
        graph_store.close()


def draw(
    store: str | Path | None = None,
    out: str | Path = "graph.png",
    *,
    entity: str | None = None,
    hops: int = 1,
    level: int = 0,
    max_nodes: int = 40,
    settings: Settings | None = None,
) -> Path:
    """Draw an entity's neighbourhood (``entity``) or the communities of ``level`` to a .png or .html file.

    The options are checked before the store is opened, so a bad one writes nothing; raises
    EmptyStoreError when the store directory holds no ingested store. Returns the file written.
    """
    from graphcraft.graph_index.render import check_render_options, render

    check_render_options(out, hops=hops, max_nodes=max_nodes)
    graph_store = open_graph(store, settings, require_ingested=True)
    try:
        return render(graph_store, out, entity=entity, hops=hops, level=level, max_nodes=max_nodes)
    finally:
        graph_store.close()
