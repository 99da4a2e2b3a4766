"""range() and variable-length hop bounds: resource bombs and parameterised hops are refused."""

from __future__ import annotations

import pytest

from graphcraft.guards.cypher import MAX_RANGE_ITEMS, UnsafeCypherError, run_read_only, validate_read_only


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("RETURN size(range(1,2000000000))", "too large"),
        ("RETURN size(RANGE(0, 0x7fffffff))", "too large"),
        (f"UNWIND range(1, {MAX_RANGE_ITEMS + 1}) AS x RETURN count(x)", "too large"),
        ("RETURN range(1, 100000000000, 2)", "too large"),
        ("RETURN range(1, $n)", "integer literals"),
        ("RETURN range(1, 10 * 1000000000)", "integer literals"),
        ("RETURN range(1, size(range(1, 10)) * 999999999)", "integer literals"),
        ("RETURN range('1', 10)", "integer literals"),
        ("RETURN range(1, 10, 0)", "step"),
        ("MATCH (a)-[*$n]->(b) RETURN b", "hop counts"),
        ("MATCH (a)-[:R*1..$n]->(b) RETURN b", "hop counts"),
        ("MATCH (a)-[r*$lo..3]-(b) RETURN b", "hop counts"),
        ("MATCH (a)-[*..$m]->(b) RETURN b", "hop counts"),
    ],
)
def test_unbounded_range_and_parameterised_hops_are_refused(query, reason):
    with pytest.raises(UnsafeCypherError) as err:
        validate_read_only(query, {"n": 3, "m": 3, "lo": 1})
    assert reason in err.value.reason


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("RETURN range(1, 5) AS r", [1, 2, 3, 4, 5]),
        ("RETURN range(10, 1, -3) AS r", [10, 7, 4, 1]),
        (f"RETURN size(range(1, {MAX_RANGE_ITEMS})) AS r", MAX_RANGE_ITEMS),
    ],
)
def test_small_literal_ranges_still_run(empty_store, query, expected):
    assert run_read_only(empty_store, query)[0]["r"] == expected


def test_literal_hop_bounds_are_kept_or_capped(empty_store):
    empty_store.upsert_entities([{"id": i, "name": i} for i in "abcd"])
    empty_store.upsert_relations([{"source": s, "target": t, "type": "NEXT"} for s, t in ("ab", "bc", "cd")])
    exact = validate_read_only("MATCH (a:Entity {id: 'a'})-[:RELATED*2]->(b) RETURN b.id AS id", max_hops=4)
    assert "*2]" in exact.query and not any("bounded" in c for c in exact.changes)
    capped = validate_read_only("MATCH (a:Entity {id: 'a'})-[:RELATED*]->(b) RETURN b.id AS id", max_hops=2)
    assert "*1..2" in capped.query
    rows = run_read_only(empty_store, "MATCH (a:Entity {id: 'a'})-[:RELATED*]->(b) RETURN b.id AS id", max_hops=2)
    assert sorted(r["id"] for r in rows) == ["b", "c"]
