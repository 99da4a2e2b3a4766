"""Hostile Text2Cypher output against the validator AND a real FalkorDB: zero writes get through.

Each hostile query is (1) refused by the validator, (2) refused again through
`run_read_only`, and (3) sent raw to the database's read-only path, the second line of defence.
The graph's node/edge counts and a fingerprint of every label, property and index are the
same afterwards. Valid read queries pass, and their rewritten form (literals as parameters,
LIMIT enforced) returns the same rows as the original.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest

from graphcraft.guards.cypher import UnsafeCypherError, run_read_only, validate_read_only
from graphcraft.stores.graph import GraphQueryError

# --- a small graph whose names contain write keywords (no false positives on data) ----------
ENTITIES = [
    ("acme", "Acme Corp", "ORG"),
    ("create_labs", "Create Labs", "ORG"),
    ("delete_me", "Delete Me Inc", "ORG"),
    ("obrien", "O'Brien", "PERSON"),
    ("ada", "Ada Lovelace", "PERSON"),
    ("london", "London", "GPE"),
    ("paris", "Paris", "GPE"),
    ("set_match", "Set; Match & Drop", "ORG"),
]
RELATIONS = [
    ("acme", "ada", "EMPLOYS"),
    ("ada", "london", "LIVES_IN"),
    ("obrien", "create_labs", "WORKS_FOR"),
    ("create_labs", "paris", "LOCATED_IN"),
    ("delete_me", "acme", "PARTNER_OF"),
    ("set_match", "london", "LOCATED_IN"),
]


@pytest.fixture(scope="module")
def graph(falkor_store):
    store = falkor_store
    store.clear()
    store.upsert_chunks([{"id": f"c{i}", "source": "s.txt", "text": f"chunk {i}"} for i in range(4)])
    store.upsert_entities([{"id": i, "name": n, "type": t} for i, n, t in ENTITIES])
    store.upsert_relations(
        [{"source": a, "target": b, "type": t, "weight": 1.0, "chunk_ids": ["c0"]} for a, b, t in RELATIONS]
    )
    store.upsert_mentions([{"chunk_id": f"c{i % 4}", "entity_id": e[0]} for i, e in enumerate(ENTITIES)])
    return store


def fingerprint(store) -> tuple[dict, dict, str]:
    """Counts, totals and a hash of all labels, properties, edges and indexes."""
    nodes = store.query("MATCH (n) RETURN labels(n) AS l, properties(n) AS p")
    edges = store.query("MATCH (a)-[r]->(b) RETURN a.id AS a, type(r) AS t, properties(r) AS p, b.id AS b")
    indexes = store.query("CALL db.indexes() YIELD label, properties RETURN label, properties")
    blob = json.dumps(
        [sorted(json.dumps(n, sort_keys=True) for n in nodes), sorted(json.dumps(e, sort_keys=True) for e in edges),
         sorted(json.dumps(i, sort_keys=True) for i in indexes)]
    )  # fmt: skip
    return store.counts(), store.totals(), hashlib.sha256(blob.encode()).hexdigest()


# --- the hostile corpus -------------------------------------------------------------------
WRITES = [
    "CREATE (:Entity {id: 'evil', name: 'Evil'})",
    "MATCH (n) DETACH DELETE n",
    "MATCH (n:Entity) DELETE n",
    "MATCH (n:Entity {id: 'acme'}) SET n.name = 'pwned' RETURN n",
    "MATCH (n:Entity) SET n += {name: 'pwned'} RETURN n",
    "MATCH (n:Entity) SET n:Hacked RETURN n",
    "MATCH (n:Entity) REMOVE n.name RETURN n",
    "MATCH (n:Entity) REMOVE n:Entity RETURN n",
    "MERGE (n:Entity {id: 'evil'}) RETURN n",
    "MATCH (a:Entity {id: 'acme'}), (b:Entity {id: 'ada'}) CREATE (a)-[:OWNS]->(b) RETURN a",
    "MATCH ()-[r:RELATED]->() DELETE r",
    "DROP INDEX ON :Entity(id)",
    "CREATE INDEX FOR (n:Entity) ON (n.name)",
    "UNWIND range(1, 10) AS i CREATE (:Spam {i: i})",
    "FOREACH (i IN range(1, 3) | CREATE (:Spam {i: i}))",
    "MATCH (n) WITH n LIMIT 1 FOREACH (x IN [1] | SET n.x = x) RETURN n",
    "LOAD CSV FROM 'file:///etc/passwd' AS row RETURN row",
    "LOAD CSV WITH HEADERS FROM 'file:///data.csv' AS row CREATE (:Row {v: row[0]})",
    "CALL db.idx.fulltext.createNodeIndex('Entity', 'name')",
    "CALL db.idx.fulltext.drop('Entity')",
    "CALL dbms.security.createUser('eve', 'pw', false)",
    "CALL apoc.create.node(['Evil'], {name: 'x'}) YIELD node RETURN node",
    "CALL apoc.cypher.doIt('CREATE (:Evil)', {}) YIELD value RETURN value",
    "CALL apoc.periodic.iterate('MATCH (n) RETURN n', 'DETACH DELETE n', {}) YIELD batches RETURN batches",
    "RETURN apoc.cypher.runFirstColumnSingle('CREATE (:Evil) RETURN 1', {}) AS x",
    "MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS RETURN 1",
    "MATCH (n) CALL { WITH n SET n.x = 1 RETURN n.x AS x } RETURN x",
    "USING PERIODIC COMMIT 10 LOAD CSV FROM 'file:///x.csv' AS row CREATE (:Row)",
    "CREATE CONSTRAINT FOR (n:Entity) REQUIRE n.id IS UNIQUE",
    "GRANT ALL ON DATABASE * TO eve",
    "ALTER USER neo4j SET PASSWORD 'x'",
    "USE system CREATE DATABASE evil",
    "SHOW USERS",
    "STOP DATABASE neo4j",
]


def _zero_width(q: str) -> str:
    return (
        q.replace("CREATE", "CRE\u200bATE")
        .replace("DELETE", "DEL\u200cETE")
        .replace("SET", "S\u2060ET")
        .replace("MERGE", "\ufeffMERGE")
        .replace("REMOVE", "REM\u00adOVE")
        .replace("DROP", "D\u200dROP")
        .replace("LOAD", "LO\u202eAD")
    )


def _fullwidth(q: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "A" <= c <= "Z" else c for c in q)


def _homoglyph(q: str) -> str:
    return q.translate(str.maketrans({"C": "С", "E": "Е", "A": "А", "O": "О", "T": "Т", "M": "М", "P": "Р"}))


def _comment_split(q: str) -> str:
    for kw in ("CREATE", "DELETE", "MERGE", "SET", "REMOVE", "DROP", "LOAD", "CALL", "FOREACH"):
        q = q.replace(kw, kw[:2] + "/**/" + kw[2:])
    return q


def _lowercase(q: str) -> str:
    return q.lower()


def _spaced(q: str) -> str:
    return q.replace(" ", "\u00a0\t\n ").replace("(", "\u2028(")


OBFUSCATIONS = [_lowercase, _zero_width, _fullwidth, _homoglyph, _comment_split, _spaced]

INJECTIONS = [
    # breaking out of string literals
    "MATCH (n:Entity {name: 'x'}) DETACH DELETE n //'}) RETURN n",
    "MATCH (n:Entity) WHERE n.name = 'x\\' DETACH DELETE n //' RETURN n",
    'MATCH (n:Entity) WHERE n.name = "x\\" CREATE (:Evil) //" RETURN n',
    "MATCH (n:Entity) WHERE n.name = 'x\\u0027 CREATE (:Evil) //' RETURN n",
    "MATCH (n:Entity) WHERE n.name = 'x' + '' CREATE (:Evil) RETURN n",
    "MATCH (n:Entity) WHERE n.name = 'Acme' OR 1=1 SET n.name = 'pwned' RETURN n",
    "MATCH (n:Entity) WHERE n.name = 'abc RETURN n; CREATE (:Evil)",
    'MATCH (n:Entity) WHERE n.name = "O\'Brien" DELETE n RETURN 1',
    "MATCH (n:Entity {name: 'Acme'})-[:RELATED]->(m) WITH m MATCH (x) DETACH DELETE x RETURN 1",
    # several statements
    "MATCH (n) RETURN n; CREATE (:Evil)",
    "MATCH (n) RETURN n ; MATCH (m) DETACH DELETE m",
    "RETURN 1；CREATE (:Evil)",
    "RETURN 1;;",
    "MATCH (n) RETURN n;\nDROP INDEX ON :Entity(id)",
    # comments
    "MATCH (n) RETURN n /* harmless */ ; DELETE n",
    "MATCH (n) // just reading\nDETACH DELETE n",
    "MATCH (n) RETURN n // ; CREATE (:Evil)",
    "MATCH (n) /* CREATE (:Evil) */ RETURN n",
    "MATCH (n) RETURN n /* unterminated CREATE (:Evil)",
    "MATCH (n) //\u2028CREATE (:Evil)\nRETURN n",
    "MATCH (n) RETURN n //\rCREATE (:Evil)",
    # CALL procedures
    "CALL db.labels() YIELD label CREATE (:Evil {l: label})",
    "CALL `db`.`idx`.`fulltext`.`createNodeIndex`('Entity', 'name')",
    "CALL db.createLabel('Evil')",
    "CALL dbms.killQuery('1')",
    "CALL db.clearQueryCaches()",
    "CALL algo.pageRank('Entity', 'RELATED') YIELD node RETURN node",
    "CALL { CREATE (:Evil) } RETURN 1",
    "MATCH (n) RETURN custom.write(n) AS x",
    # unicode and control tricks
    "MATCH (n) \u202eETELED n",
    "MATCH (n) DETACH\u00a0DELETE n",
    "MATCH (n) ᴅᴇʟᴇᴛᴇ n",
    "MATCH (n)\x00 DELETE n",
    "MATCH (n) RETURN n\x0bCREATE (:Evil)",
    # backticks and parameters
    "MATCH (`n`) DETACH DELETE `n`",
    "MATCH (`a``b` ) CREATE (:Evil) RETURN 1",
    "MATCH (n) WHERE n.name = $gc_lit_0 RETURN n",
    "MATCH (n) RETURN n LIMIT 1 + 1000000",
]


def hostile_corpus() -> list[str]:
    variants = [fn(q) for q, fn in itertools.product(WRITES, OBFUSCATIONS)]
    corpus = list(dict.fromkeys(WRITES + INJECTIONS + variants))
    return [q for q in corpus if q.strip()]


HOSTILE = hostile_corpus()


def test_corpus_is_large_enough():
    assert len(HOSTILE) >= 100, len(HOSTILE)


def test_no_hostile_query_writes(graph):
    before = fingerprint(graph)
    accepted, db_errors = [], 0
    for query in HOSTILE:
        try:
            validate_read_only(query)
            accepted.append(query)
        except UnsafeCypherError:
            pass
        with pytest.raises(UnsafeCypherError):
            run_read_only(graph, query)
        # Second line of defence, exercised on its own: the raw text on the read-only path.
        try:
            graph.query(query, read_only=True, timeout_ms=2000)
        except GraphQueryError:
            db_errors += 1
    assert accepted == []
    assert db_errors > len(HOSTILE) // 2  # the database itself refused (or failed to parse) most of them
    assert fingerprint(graph) == before


def test_hostile_queries_fail_closed_on_the_database_alone(graph):
    """Without the validator, the read-only command still refuses every plain write."""
    before = fingerprint(graph)
    for query in WRITES:
        if query.startswith(("LOAD CSV", "SHOW", "USE", "GRANT", "ALTER", "STOP", "CALL apoc", "RETURN apoc")):
            continue  # not a FalkorDB write: reads, or syntax it does not know
        with pytest.raises(GraphQueryError):
            graph.query(query, read_only=True)
    assert fingerprint(graph) == before


# --- valid reads pass and mean the same after the rewrite ---------------------------------
VALID = [
    "MATCH (n:Entity) RETURN n.name AS name ORDER BY name",
    "MATCH (n:Entity {name: 'Create Labs'}) RETURN n.id AS id",
    "MATCH (n:Entity) WHERE n.name = 'Delete Me Inc' RETURN n.id AS id",
    'MATCH (n:Entity) WHERE n.name = "O\'Brien" RETURN n.id AS id',
    "MATCH (n:Entity) WHERE n.name = 'O\\'Brien' RETURN n.id AS id",
    "MATCH (n:Entity) WHERE n.name = 'Set; Match & Drop' RETURN n.id AS id",
    "MATCH (n:Entity) WHERE n.name CONTAINS 'Create' RETURN n.name AS name ORDER BY name",
    "MATCH (n:Entity) WHERE n.name STARTS WITH 'A' RETURN n.name AS name ORDER BY name",
    "MATCH (n:Entity) WHERE toLower(n.name) = 'london' RETURN n.id AS id",
    "MATCH (a:Entity)-[r:RELATED]->(b:Entity) RETURN a.name AS a, r.type AS t, b.name AS b ORDER BY a, b",
    "MATCH (a:Entity {id: 'obrien'})-[:RELATED*1..2]->(b:Entity) RETURN b.name AS name ORDER BY name",
    "MATCH (a:Entity {id: 'delete_me'})-[*2]->(b:Entity) RETURN b.name AS name ORDER BY name",
    "MATCH (a:Entity)-[r:RELATED {type: 'LOCATED_IN'}]->(b) RETURN a.name AS a, b.name AS b ORDER BY a",
    "MATCH (c:Chunk)-[:MENTIONS]->(e:Entity) RETURN c.id AS c, collect(e.name) AS names ORDER BY c",
    "MATCH (e:Entity) RETURN e.type AS type, count(*) AS n ORDER BY type",
    "MATCH (e:Entity) RETURN count(e) AS n",
    "MATCH (e:Entity) WITH e ORDER BY e.name SKIP 2 LIMIT 3 RETURN e.name AS name",
    "MATCH (e:Entity) RETURN e.name AS name ORDER BY name DESC LIMIT 2",
    "MATCH (e:Entity) RETURN e.name AS name ORDER BY name LIMIT 100000",
    "MATCH (e:Entity) WHERE e.id IN ['acme', 'ada'] RETURN e.name AS name ORDER BY name",
    "MATCH (e:Entity) WHERE e.name <> 'Paris' AND e.type = 'GPE' RETURN e.name AS name",
    "MATCH (e:Entity) RETURN e.name AS name ORDER BY name; ",
    (
        "// who lives where\n"
        "MATCH (p:Entity {type: 'PERSON'})-[:RELATED {type: 'LIVES_IN'}]->(g) RETURN p.name AS p, g.name AS g"
    ),
    "MATCH (e:Entity) /* all organisations */ WHERE e.type = 'ORG' RETURN e.name AS name ORDER BY name",
    "CALL db.labels() YIELD label RETURN label ORDER BY label",
    "CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType ORDER BY relationshipType",
    "MATCH (e:Entity) RETURN e.name AS name ORDER BY name UNION MATCH (c:Chunk) RETURN c.id AS name ORDER BY name",
    "MATCH p = (a:Entity {id: 'acme'})-[:RELATED]-(b) RETURN length(p) AS hops, b.name AS name ORDER BY name",
    "MATCH (a:Entity)-[*]->(b:Entity {id: 'london'}) RETURN DISTINCT a.name AS name ORDER BY name",
    "MATCH (e:Entity) WHERE e.name = $name RETURN e.id AS id",
    "match (e:Entity) where e.name = 'Paris' return e.id as id",
    "MATCH (e:Entity) RETURN e.name + ' (' + e.type + ')' AS label ORDER BY label",
    "MATCH (e:Entity) WHERE e.name = 'Ünïcödé' RETURN e.id AS id",
]


@pytest.mark.parametrize("query", VALID)
def test_valid_reads_pass_and_keep_their_meaning(graph, query):
    params = {"name": "Ada Lovelace"}
    safe = validate_read_only(query, params, limit=50)
    assert "'" not in safe.query and '"' not in safe.query  # literals travel as parameters
    assert " LIMIT " in safe.query.upper()
    rows = run_read_only(graph, query, params, limit=50)
    direct = graph.query(query.rstrip("; "), params, limit=50)
    assert rows == direct


def test_keyword_names_in_strings_are_data(graph):
    rows = run_read_only(
        graph, "MATCH (n:Entity) WHERE n.name IN ['Create Labs', 'Delete Me Inc'] RETURN n.id AS id ORDER BY id"
    )
    assert [r["id"] for r in rows] == ["create_labs", "delete_me"]


def test_limit_is_appended_or_capped(graph):
    assert len(run_read_only(graph, "UNWIND range(1, 1000) AS x RETURN x", limit=7)) == 7
    assert len(run_read_only(graph, "UNWIND range(1, 1000) AS x RETURN x LIMIT 500", limit=7)) == 7
    assert len(run_read_only(graph, "UNWIND range(1, 1000) AS x RETURN x LIMIT 3", limit=7)) == 3
    safe = validate_read_only("MATCH (a)-[*]-(b) RETURN a", max_hops=3)
    assert "*1..3" in safe.query and any("bounded" in c for c in safe.changes)


def test_timeout_is_passed_to_the_database(graph):
    with pytest.raises(GraphQueryError, match="timed out"):
        run_read_only(
            graph, "UNWIND range(1, 5000) AS a UNWIND range(1, 5000) AS b RETURN count(*) AS n", timeout_ms=20
        )
