"""Vector, strip, BM25 and hybrid retrieval on a real store; RRF fusion."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document

from graphcraft.api import ingest
from graphcraft.retrievers import make_retriever, rrf_fuse
from graphcraft.stores.vector import open_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("retr")
    docs = root / "docs"
    docs.mkdir()
    filler = " ".join(
        f"The harbour committee discussed agenda item {i} about mooring fees and signage." for i in range(12)
    )
    (docs / "harbour.md").write_text(f"# Harbour\n\n{filler} The lighthouse keeper is Oskar Brandt. {filler}")
    (docs / "bakery.md").write_text("# Bakery\n\nThe bakery sells rye bread and cinnamon rolls every morning.")
    (docs / "zoo.md").write_text("# Zoo\n\nThe zoo keeps two snow leopards and a colony of penguins.")
    ingest([docs], store=root / "store")
    return open_store(root / "store", create=False)


@pytest.mark.parametrize("kind", ["vector", "strip", "keyword", "hybrid"])
def test_each_retriever_finds_the_relevant_chunk_first(store, kind: str) -> None:  # type: ignore[no-untyped-def]
    docs = make_retriever(kind, store, k=3).invoke("Which animals live at the zoo? leopards")
    assert Path(docs[0].metadata["source"]).name == "zoo.md"
    assert all(isinstance(d.metadata["score"], float) for d in docs)
    assert len({d.metadata["chunk_id"] for d in docs}) == len(docs)


def test_strip_retrieval_finds_a_fact_buried_in_a_long_chunk(store) -> None:  # type: ignore[no-untyped-def]
    docs = make_retriever("strip", store, k=1).search("Who keeps the lighthouse?")
    assert "Oskar Brandt" in docs[0].page_content and docs[0].metadata["retriever"] == "strip"


def test_keyword_search_of_stop_words_only_returns_nothing(store) -> None:  # type: ignore[no-untyped-def]
    assert make_retriever("keyword", store).search("the of and") == []


def test_hybrid_keeps_the_vector_score_and_the_ranks(store) -> None:  # type: ignore[no-untyped-def]
    top = make_retriever("hybrid", store, k=2).search("snow leopards penguins")[0]
    assert top.metadata["ranks"] == {"vector": 1, "bm25": 1} and 0 < top.metadata["vector_score"] <= 1


def test_rrf_rewards_agreement_between_lists() -> None:
    a, b, c = (Document(page_content=t, metadata={"chunk_id": t}) for t in "abc")
    fused = rrf_fuse([[a, b, c], [b, a], [b]], k=60)
    assert [d.metadata["chunk_id"] for d in fused] == ["b", "a", "c"]
    assert fused[0].metadata["score"] == pytest.approx(1 / 62 + 1 / 61 + 1 / 61, abs=1e-6)


def test_unknown_retriever_kind_is_refused(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown retriever"):
        make_retriever("magic", store)
