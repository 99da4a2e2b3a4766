"""The shipped graph sample ingested (real MiniLM) and indexed (real spaCy) into a real FalkorDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "graph"


@pytest.fixture(scope="session")
def expected() -> dict:
    return json.loads((SAMPLE / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, embeddings):
    """(settings, chunk store, graph store, build report) for samples/graph/docs."""
    from graphcraft.config import get_settings
    from graphcraft.graph_index.api import build
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.graph import open_graph_store
    from graphcraft.stores.vector import open_store

    store_dir = tmp_path_factory.mktemp("graph_sample")
    settings = get_settings(store=store_dir)
    chunks = open_store(store_dir, settings)
    ingest_paths([SAMPLE / "docs"], chunks, settings)
    graph = open_graph_store(store_dir, backend="falkordb", falkordb_port=0, settings=settings)
    report = build(store_dir, settings=settings, graph_store=graph, chunk_store=chunks)
    yield settings, chunks, graph, report
    graph.stop_server()
