"""Entity resolution: rules on hand-made mentions, and the shipped sample's known duplicates."""

from __future__ import annotations

from graphcraft.graph_index.resolve import EntityResolver, normalise


def cluster_of(mentions, embed=None):
    entities, by_name = EntityResolver(embed).resolve(mentions)
    return entities, by_name


def m(name, etype="ORG", source="a.txt"):
    return (name, etype, source)


def test_normalised_names_merge_corporate_variants():
    _, by_name = cluster_of(
        [m("Acme Corp"), m("Acme Corporation"), m("ACME"), m("Acme Corp."), m("the Acme Corporation's")]
    )
    assert (
        len({by_name[n] for n in ("Acme Corp", "Acme Corporation", "ACME", "Acme Corp.", "the Acme Corporation's")})
        == 1
    )
    assert normalise("Dr. Piet Hallström") == normalise("Piet Hallstrom") == "piet hallstrom"


def test_acronym_joins_its_unique_expansion():
    entities, by_name = cluster_of(
        [m("Lindqvar Metropolitan Transit"), m("LMT"), m("Essel Institute for Freshwater Science"), m("EIFS")]
    )
    assert by_name["LMT"] == by_name["Lindqvar Metropolitan Transit"]
    assert by_name["EIFS"] == by_name["Essel Institute for Freshwater Science"]
    merged = next(e for e in entities if e.id == by_name["LMT"])
    assert merged.name == "Lindqvar Metropolitan Transit" and sorted(merged.aliases) == [
        "LMT",
        "Lindqvar Metropolitan Transit",
    ]


def test_short_forms_of_people_join_the_full_name():
    mentions = [
        m("Tobias Renwick", "PERSON"),
        m("Tobias Renwick", "PERSON"),
        m("Renwick", "PERSON"),
        m("T. Renwick", "GPE"),
        m("Mr Renwick", "PERSON"),
        m("Amara Quist", "PERSON"),
        m("Amara Quist", "PERSON"),
        m("Amara Quist", "PERSON"),
        m("Quist", "ORG"),
        m("Halvard Quist", "PERSON"),
    ]
    _, by_name = cluster_of(mentions)
    assert len({by_name[n] for n in ("Tobias Renwick", "Renwick", "T. Renwick", "Mr Renwick")}) == 1
    assert by_name["Quist"] == by_name["Amara Quist"]  # the clearly more mentioned Quist
    assert by_name["Halvard Quist"] != by_name["Amara Quist"]


def test_company_short_form_does_not_join_a_person_of_the_same_name():
    mentions = [
        m("Halvard Robotics"),
        m("Halvard Robotics Inc."),
        m("Halvard"),
        m("HALVARD"),
        m("Halvard Quist", "PERSON"),
    ]
    _, by_name = cluster_of(mentions)
    assert by_name["Halvard"] == by_name["Halvard Robotics"] == by_name["HALVARD"] == by_name["Halvard Robotics Inc."]
    assert by_name["Halvard Quist"] != by_name["Halvard Robotics"]


def test_frequent_name_stays_apart_from_a_rare_longer_name():
    mentions = [m("Saltgate", "GPE")] * 12 + [m("Saltgate Book Fair", "GPE")]
    _, by_name = cluster_of(mentions)
    assert by_name["Saltgate"] != by_name["Saltgate Book Fair"]


def test_embedding_rule_merges_spelling_variants_but_not_other_things(embeddings):
    from graphcraft.models import embed_texts

    mentions = [
        m("Harwick Institute of Technology"),
        m("Harwick Technology Institute"),
        m("North Harbour", "LOC"),
        m("North Harbor", "LOC"),
        m("Kell Water Authority"),
        m("Kell Water Board"),
        m("Line 3"),
        m("Line 7"),
    ]
    _, by_name = cluster_of(mentions, embed=lambda names: embed_texts(embeddings, names))
    assert by_name["Harwick Institute of Technology"] == by_name["Harwick Technology Institute"]
    assert by_name["North Harbour"] == by_name["North Harbor"]
    assert by_name["Kell Water Authority"] != by_name["Kell Water Board"]  # similar words, another body
    assert by_name["Line 3"] != by_name["Line 7"]
    _, without = cluster_of(mentions)  # no embeddings: no rule joins the reordered name
    assert without["Harwick Institute of Technology"] != without["Harwick Technology Institute"]


def test_shipped_sample_known_duplicates_are_merged(sample_index, expected):
    _, _, graph, _ = sample_index
    rows = graph.query("MATCH (e:Entity) RETURN e.id AS id, e.aliases AS aliases")
    owner = {alias: r["id"] for r in rows for alias in r["aliases"]}
    for cluster in expected["same_entity"]:
        found = [name for name in cluster if name in owner]
        assert len(found) >= 2, f"too few forms of {cluster[0]} extracted: {found}"
        assert len({owner[n] for n in found}) == 1, f"{found} should be one entity"
    for a, b in expected["different_entities"]:
        if a in owner and b in owner:
            assert owner[a] != owner[b], f"{a} and {b} must stay apart"
    assert len(rows) == len({r["id"] for r in rows})
