"""Indexing: offline with zero LLM calls, communities on several levels, incremental, LLM extraction."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fakes import scripted

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "graph"


def test_offline_index_has_entities_relations_communities_and_no_llm_call(sample_index):
    settings, chunks, graph, report = sample_index
    assert report.llm_calls == 0 and report.strategy == "spacy"
    assert report.chunks == len(chunks) == report.extracted
    counts = graph.counts()
    assert counts == {
        "entities": report.entities,
        "relations": report.relations,
        "chunks": len(chunks),
        "communities": report.communities,
    }
    assert counts["entities"] >= 8 and counts["relations"] >= 8
    levels = graph.query("MATCH (c:Community) RETURN DISTINCT c.level AS level ORDER BY level")
    assert len(levels) >= 2 and report.levels == len(levels)
    parents = graph.query("MATCH (c:Community {level: 0})-[:PARENT]->(p:Community {level: 1}) RETURN count(*) AS n")
    assert parents[0]["n"] >= 1
    rows = graph.query("MATCH (c:Community) RETURN c.summary AS summary, c.chunk_ids AS chunks, c.strategy AS strategy")
    assert all(r["summary"] for r in rows)
    assert any(r["chunks"] and r["strategy"] == "extractive" for r in rows)
    # every MENTIONS edge points at a chunk that really contains one of the entity's names
    mentions = graph.query("MATCH (c:Chunk)-[:MENTIONS]->(e:Entity) RETURN c.text AS text, e.aliases AS aliases")
    assert mentions and all(any(a in r["text"] for a in r["aliases"]) for r in mentions)


def test_graph_stats_api_matches_the_store(sample_index):
    from graphcraft.graph_index.api import graph_stats

    settings, _, graph, _ = sample_index
    assert graph_stats(settings.store, settings) == graph.counts()


def test_rebuild_on_unchanged_chunks_writes_nothing(sample_index):
    from graphcraft.graph_index.api import build

    settings, chunks, graph, report = sample_index
    before = graph.query("MATCH (n) RETURN labels(n) AS l, properties(n) AS p ORDER BY n.id")
    again = build(settings.store, settings=settings, graph_store=graph, chunk_store=chunks)
    assert again.unchanged and again.extracted == 0 and again.llm_calls == 0
    assert graph.query("MATCH (n) RETURN labels(n) AS l, properties(n) AS p ORDER BY n.id") == before


def _fresh(tmp_path, docs):
    from graphcraft.config import get_settings
    from graphcraft.ingestion.pipeline import ingest_paths
    from graphcraft.stores.graph import open_graph_store
    from graphcraft.stores.vector import open_store

    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in docs:
        shutil.copy(doc, folder / doc.name)
    settings = get_settings(store=tmp_path / "store")
    chunks = open_store(settings.store, settings)
    ingest_paths([folder], chunks, settings)
    graph = open_graph_store(settings.store, backend="falkordb", falkordb_port=0, settings=settings)
    return folder, settings, chunks, graph


def test_incremental_build_extracts_only_new_chunks_and_drops_removed_ones(tmp_path):
    from graphcraft.graph_index.api import build
    from graphcraft.ingestion.pipeline import ingest_paths, remove_paths

    docs = sorted((SAMPLE / "docs").glob("*"))
    folder, settings, chunks, graph = _fresh(tmp_path, docs[:3])
    try:
        first = build(settings.store, settings=settings, graph_store=graph, chunk_store=chunks)
        assert first.extracted == first.chunks == len(chunks)
        shutil.copy(docs[3], folder / docs[3].name)
        ingest_paths([folder], chunks, settings)
        added = len(chunks) - first.chunks
        second = build(settings.store, settings=settings, graph_store=graph, chunk_store=chunks)
        assert second.extracted == added > 0 and not second.unchanged
        assert graph.counts()["chunks"] == len(chunks)
        only_in_last = graph.query("MATCH (e:Entity) WHERE 'Harwick' IN e.aliases RETURN e.id AS id")
        assert only_in_last, "an entity of the added document"

        (folder / docs[3].name).unlink()
        remove_paths([folder / docs[3].name], chunks, settings)
        third = build(settings.store, settings=settings, graph_store=graph, chunk_store=chunks)
        assert third.removed_chunks == added and third.extracted == 0
        assert graph.counts()["chunks"] == len(chunks) == first.chunks
        assert graph.query("MATCH (e:Entity) WHERE 'Harwick' IN e.aliases RETURN e.id AS id") == []
    finally:
        graph.stop_server()


EXTRACTION = {
    "entities": [
        {"name": "Acme Corporation", "type": "ORG", "description": "pump maker"},
        {"name": "Dunmore", "type": "GPE", "description": "market town"},
    ],
    "relations": [{"source": "Acme Corporation", "target": "Dunmore", "type": "headquartered in", "evidence": "x"}],
}


def test_llm_extraction_uses_the_model_once_per_chunk_and_counts_calls(tmp_path):
    from graphcraft.graph_index.api import build

    _, settings, chunks, graph = _fresh(tmp_path, sorted((SAMPLE / "docs").glob("*"))[:2])
    model = scripted(EXTRACTION)
    try:
        report = build(settings.store, model=model, settings=settings, graph_store=graph, chunk_store=chunks)
        summaries = graph.query("MATCH (c:Community) WHERE c.strategy = 'llm' RETURN count(c) AS n")[0]["n"]
        assert report.strategy == "llm" and report.fallbacks == 0
        assert report.llm_calls == model.calls == len(chunks) + summaries
        rel = graph.query("MATCH (a:Entity)-[r:RELATED]->(b:Entity) RETURN a.name AS a, r.type AS t, b.name AS b")
        assert {"a": "Acme Corporation", "t": "HEADQUARTERED_IN", "b": "Dunmore"} in rel
        assert graph.query("MATCH (e:Entity {name: 'Dunmore'}) RETURN e.description AS d")[0]["d"] == "market town"
        # unchanged chunks are never sent to the model again
        again = build(settings.store, model=model, settings=settings, graph_store=graph, chunk_store=chunks, force=True)
        assert again.extracted == 0 and model.calls == report.llm_calls + again.llm_calls
    finally:
        graph.stop_server()


def test_invalid_llm_extraction_is_repaired_then_falls_back_to_spacy(tmp_path):
    from graphcraft.graph_index.api import build

    _, settings, chunks, graph = _fresh(tmp_path, sorted((SAMPLE / "docs").glob("*"))[:1])
    model = scripted("I would rather not.")
    try:
        report = build(settings.store, model=model, settings=settings, graph_store=graph, chunk_store=chunks)
        repairs = settings.max_structured_repairs
        assert report.fallbacks == len(chunks)
        extraction_calls = len(chunks) * (1 + repairs)
        assert model.calls >= extraction_calls and report.llm_calls == model.calls
        assert graph.counts()["entities"] > 0  # spaCy's extraction stood in
    finally:
        graph.stop_server()
