"""Graph store on a real FalkorDB server (and Neo4j when GRAPHCRAFT_NEO4J_URI is given)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphcraft.stores.falkordb_server import INFO_FILE, find_running_server, ping
from graphcraft.stores.graph import GraphQueryError, GraphStoreUnavailableError, open_graph_store

NEO4J_URI = os.environ.get("GRAPHCRAFT_NEO4J_URI", "")


def seed(store) -> None:
    store.upsert_chunks(
        [
            {"id": "c1", "source": "acme.txt", "page": 1, "text": "Acme Corp hired Ada Lovelace."},
            {"id": "c2", "source": "acme.txt", "page": 1, "text": "Ada Lovelace lives in London."},
        ]
    )
    store.upsert_entities(
        [
            {
                "id": "acme",
                "name": "Acme Corp",
                "type": "ORG",
                "aliases": ["ACME", "Acme Corporation"],
                "embedding": [0.1, 0.2],
            },
            {"id": "ada", "name": "Ada Lovelace", "type": "PERSON", "aliases": []},
            {"id": "london", "name": "London", "type": "GPE"},
        ]
    )
    store.upsert_relations(
        [
            {"source": "acme", "target": "ada", "type": "HIRED", "weight": 1.0, "chunk_ids": ["c1"]},
            {"source": "ada", "target": "london", "type": "LIVES_IN", "weight": 2.0, "chunk_ids": ["c2"]},
        ]
    )
    store.upsert_mentions(
        [
            {"chunk_id": "c1", "entity_id": "acme", "count": 1},
            {"chunk_id": "c1", "entity_id": "ada", "count": 1},
            {"chunk_id": "c2", "entity_id": "ada", "count": 1},
            {"chunk_id": "c2", "entity_id": "london", "count": 1},
        ]
    )
    store.replace_communities(
        [
            {
                "id": "0:0",
                "level": 0,
                "title": "Acme staff",
                "summary": "Acme hired Ada.",
                "size": 2,
                "entity_ids": ["acme", "ada"],
                "parent": "1:0",
            },
            {
                "id": "0:1",
                "level": 0,
                "title": "London",
                "summary": "London.",
                "size": 1,
                "entity_ids": ["london"],
                "parent": "1:0",
            },
            {
                "id": "1:0",
                "level": 1,
                "title": "All",
                "summary": "Everything.",
                "size": 3,
                "entity_ids": ["acme", "ada", "london"],
            },
        ]
    )


EXPECTED = {"entities": 3, "relations": 2, "chunks": 2, "communities": 3}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["falkordb", "neo4j"])
def store(request, falkor_store):
    """Each backend, emptied first. Neo4j runs only against a server the user points us at."""
    if request.param == "neo4j":
        if not NEO4J_URI:
            pytest.skip(
                "no Neo4j server here: set GRAPHCRAFT_NEO4J_URI (+ _USER/_PASSWORD) to run the Neo4j backend tests; "
                "they clear that database"
            )
        s = open_graph_store(neo4j_uri=NEO4J_URI, backend="neo4j")
        s.clear()
        yield s
        s.clear()
        s.close()
    else:
        falkor_store.clear()
        yield falkor_store


def test_private_server_runs_on_loopback_with_data_in_the_store(falkor_store, falkor_dir):
    server = falkor_store.server
    assert server is not None and server.running
    assert server.host == "127.0.0.1"
    assert server.data_dir == (falkor_dir / "falkordb").resolve()
    info = json.loads((server.data_dir / INFO_FILE).read_text())
    assert (info["pid"], info["port"]) == (server.pid, server.port)
    bind = falkor_store._db.connection.config_get("bind")["bind"]
    assert bind == "127.0.0.1"


def test_write_query_and_counts(store):
    assert store.counts() == {"entities": 0, "relations": 0, "chunks": 0, "communities": 0}
    seed(store)
    assert store.counts() == EXPECTED
    # 5 Chunk/Entity + 3 Community nodes; 2 RELATED + 4 MENTIONS + 6 IN_COMMUNITY + 2 PARENT edges
    assert store.totals() == {"nodes": 8, "edges": 14}

    rows = store.query(
        "MATCH (a:Entity {id: $id})-[r:RELATED*1..2]->(b:Entity) RETURN b.name AS name ORDER BY name", {"id": "acme"}
    )
    assert [r["name"] for r in rows] == ["Ada Lovelace", "London"]
    path = store.query("MATCH p = (:Entity {id: 'acme'})-[:RELATED*2]->(:Entity) RETURN p")[0]["p"]
    assert [n["name"] for n in path["nodes"]] == ["Acme Corp", "Ada Lovelace", "London"]
    assert [r["type"] for r in path["relationships"]] == ["HIRED", "LIVES_IN"]
    node = store.query("MATCH (e:Entity {id: 'acme'}) RETURN e")[0]["e"]
    assert node["aliases"] == ["ACME", "Acme Corporation"] and "embedding" not in node
    assert store.query("MATCH (e:Entity {id: 'acme'}) RETURN e.embedding AS v")[0]["v"] == pytest.approx([0.1, 0.2])
    chunks = store.query("MATCH (c:Chunk)-[:MENTIONS]->(:Entity {id: 'london'}) RETURN c.id AS id")
    assert [c["id"] for c in chunks] == ["c2"]
    assert len(store.query("MATCH (n) RETURN n", limit=3)) == 3


def test_upserts_are_idempotent_and_update_in_place(store):
    seed(store)
    seed(store)
    assert store.counts() == EXPECTED
    store.upsert_entities([{"id": "ada", "name": "Ada Lovelace", "type": "PERSON", "description": "mathematician"}])
    store.upsert_relations(
        [{"source": "acme", "target": "ada", "type": "HIRED", "weight": 5.0, "chunk_ids": ["c1", "c2"]}]
    )
    assert store.counts() == EXPECTED
    row = store.query(
        "MATCH (:Entity {id: 'acme'})-[r:RELATED]->(:Entity {id: 'ada'}) RETURN r.weight AS w, r.chunk_ids AS c"
    )[0]
    assert row == {"w": 5.0, "c": ["c1", "c2"]}
    assert store.query("MATCH (e:Entity {id: 'ada'}) RETURN e.description AS d")[0]["d"] == "mathematician"


def test_read_only_path_refuses_writes(store):
    seed(store)
    with pytest.raises(GraphQueryError):
        store.query("CREATE (:Entity {id: 'evil'})")
    with pytest.raises(GraphQueryError):
        store.query("MATCH (n) DETACH DELETE n")
    assert store.counts() == EXPECTED


def test_parameter_values_are_data_not_code(store):
    seed(store)
    nasty = "x\"}) CREATE (:Evil) //\\' \n MATCH (n) DETACH DELETE n"
    store.upsert_entities([{"id": "nasty", "name": nasty, "type": "ORG"}])
    assert store.query("MATCH (e:Entity {id: 'nasty'}) RETURN e.name AS n")[0]["n"] == nasty
    assert store.query("MATCH (e:Entity) WHERE e.name = $n RETURN e.id AS id", {"n": nasty}) == [{"id": "nasty"}]
    assert store.counts()["entities"] == 4 and store.totals()["nodes"] == 9


def test_schema_describes_labels_properties_and_patterns(store):
    seed(store)
    info = store.schema_info()
    assert set(info["nodes"]) == {"Chunk", "Entity", "Community"}
    assert {"id", "name", "type", "aliases"} <= set(info["nodes"]["Entity"])
    assert "embedding" not in info["nodes"]["Entity"]
    assert "(:Entity)-[:RELATED]->(:Entity)" in info["patterns"]
    assert "(:Chunk)-[:MENTIONS]->(:Entity)" in info["patterns"]
    assert info["values"]["RELATED.type"] == ["HIRED", "LIVES_IN"]
    text = store.schema()
    assert "Entity" in text and "LIVES_IN" in text and "PERSON" in text


def test_delete_chunks_then_orphan_entities(store):
    seed(store)
    store.delete_chunks(["c2"])
    assert store.delete_orphan_entities() == 1  # London was only in c2
    counts = store.counts()
    assert counts["chunks"] == 1 and counts["entities"] == 2 and counts["relations"] == 1


def test_timeout_reaches_the_database(store):
    with pytest.raises(GraphQueryError):
        store.query("UNWIND range(1, 5000) AS a UNWIND range(1, 5000) AS b RETURN count(*) AS n", timeout_ms=20)


def test_data_survives_a_clean_restart(tmp_path):
    store = open_graph_store(tmp_path, backend="falkordb", falkordb_port=0)
    seed(store)
    first_pid = store.server.pid
    store.stop_server()
    assert not ping("127.0.0.1", store.port)
    assert not (tmp_path / "falkordb" / INFO_FILE).exists()

    again = open_graph_store(tmp_path, backend="falkordb", falkordb_port=0)
    try:
        assert again.server.pid != first_pid
        assert again.counts() == EXPECTED
        assert again.query("MATCH (e:Entity {id: 'acme'}) RETURN e.aliases AS a")[0]["a"] == [
            "ACME",
            "Acme Corporation",
        ]
    finally:
        again.stop_server()


def test_data_survives_a_killed_server(tmp_path):
    """The append-only file is fsync'ed every second: a crash loses at most that."""
    store = open_graph_store(tmp_path, backend="falkordb", falkordb_port=0)
    seed(store)
    time.sleep(1.5)
    os.kill(store.server.pid, signal.SIGKILL)
    store.server._wait_exit(10)
    again = open_graph_store(tmp_path, backend="falkordb", falkordb_port=0)  # stale server.json is ignored
    try:
        assert again.counts() == EXPECTED
    finally:
        again.stop_server()


def test_another_process_reuses_the_running_server(falkor_store, falkor_dir):
    falkor_store.clear()
    seed(falkor_store)
    code = (
        "import json, sys\n"
        "from graphcraft.stores.graph import open_graph_store\n"
        "s = open_graph_store(sys.argv[1], backend='falkordb', falkordb_port=0)\n"
        "s.upsert_entities([{'id': 'from_child', 'name': 'Child'}])\n"
        "print(json.dumps({'pid': s.server.pid, 'port': s.server.port, 'owned': s.server.owned, "
        "'counts': s.counts()}))\n"
        "s.close()\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", code, str(falkor_dir)], capture_output=True, text=True, timeout=120, check=True, env=env
    )
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert (child["pid"], child["port"]) == (falkor_store.server.pid, falkor_store.server.port)
    assert child["owned"] is False and child["counts"]["entities"] == 4
    # the child exited without stopping a server it did not start
    assert falkor_store.server.running
    assert falkor_store.counts()["entities"] == 4
    assert find_running_server(falkor_dir / "falkordb").pid == falkor_store.server.pid


def test_stale_server_file_starts_a_new_server(tmp_path):
    data = tmp_path / "falkordb"
    data.mkdir()
    (data / INFO_FILE).write_text(json.dumps({"pid": 999999, "host": "127.0.0.1", "port": _free_port()}))
    store = open_graph_store(tmp_path, backend="falkordb", falkordb_port=0)
    try:
        assert store.server.owned and store.server.pid != 999999
        assert store.counts()["entities"] == 0
    finally:
        store.stop_server()


def test_unreachable_falkordb_is_a_clear_error(tmp_path):
    port = _free_port()
    with pytest.raises(GraphStoreUnavailableError, match=f"cannot reach FalkorDB at 127.0.0.1:{port}"):
        open_graph_store(tmp_path, backend="falkordb", falkordb_host="127.0.0.1", falkordb_port=port)


def test_unreachable_neo4j_is_a_clear_error(tmp_path):
    uri = f"bolt://127.0.0.1:{_free_port()}"
    with pytest.raises(GraphStoreUnavailableError, match="cannot reach Neo4j at bolt://127.0.0.1"):
        open_graph_store(tmp_path, neo4j_uri=uri, neo4j_password="x")
