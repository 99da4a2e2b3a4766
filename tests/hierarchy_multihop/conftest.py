"""The test corpus (corpus.py) ingested once with the real MiniLM embeddings and FAISS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.hierarchy_multihop.corpus import CORPUS, write


@pytest.fixture(scope="session")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ingested corpus (read-only for tests: copy it with `store_copy` to change it)."""
    from graphcraft.api import ingest

    root = tmp_path_factory.mktemp("hm")
    report = ingest([write(root / "corpus", CORPUS)], store=root / "store")
    assert not report["failed"]
    return root / "store"


@pytest.fixture
def store_copy(corpus_store: Path, tmp_path: Path) -> Path:
    """A private copy of the ingested store (without any hierarchy) that a test may change."""
    target = tmp_path / "store"
    shutil.copytree(corpus_store, target, ignore=shutil.ignore_patterns("hierarchy"))
    return target


@pytest.fixture
def open_chunk_store():  # type: ignore[no-untyped-def]
    from graphcraft.stores.vector import open_store

    return lambda path: open_store(path, create=False)
