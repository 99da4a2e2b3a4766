"""Text2Cypher: schema in the prompt, hostile or broken queries refused and repaired, bounded, no writes."""

from __future__ import annotations

import pytest

from tests.fakes import prompt_texts, scripted


def test_refused_and_failing_queries_are_repaired_within_the_bound(sample_index):
    from graphcraft.tools.text2cypher import text2cypher

    _, _, graph, _ = sample_index
    before = (graph.counts(), graph.totals())
    model = scripted(
        "MATCH (n) DETACH DELETE n",
        "```cypher\nMATCH (e:Entity) RETURN e.name AS name ORDER BY undefined_variable\n```",
        "MATCH (a:Entity)-[r:RELATED]-(b:Entity) WHERE 'KWA' IN a.aliases AND r.type = 'CHAIR_BY' "
        "RETURN b.name AS name",
    )
    result = text2cypher("Who chairs the KWA?", graph, model, max_repairs=2)
    assert result.ok and result.attempts == 3 == model.calls
    assert result.rows == [{"name": "Ruth Amsel"}]
    assert "DELETE is not allowed" in result.errors[0] and "FalkorDB refused" in result.errors[1]
    assert "'" not in result.cypher and result.params["gc_lit_0"] == "KWA" and "LIMIT 50" in result.cypher
    prompts = prompt_texts(model)
    assert "(:Entity)-[:RELATED]->(:Entity)" in prompts[0]  # the schema is in the prompt
    assert "DELETE is not allowed" in prompts[1]  # the refusal is fed back
    assert (graph.counts(), graph.totals()) == before


def test_a_model_that_never_complies_gives_up_after_the_bound(sample_index):
    from graphcraft.tools.text2cypher import text2cypher

    _, _, graph, _ = sample_index
    before = (graph.counts(), graph.totals())
    model = scripted("CREATE (:Evil {name: 'x'}) RETURN 1")
    result = text2cypher("Add an evil node", graph, model, max_repairs=3)
    assert not result.ok and result.attempts == 4 == model.calls and result.rows == []
    assert (graph.counts(), graph.totals()) == before


def test_text2cypher_needs_a_chat_model(sample_index):
    from graphcraft.errors import NoChatModelError
    from graphcraft.tools.text2cypher import text2cypher

    with pytest.raises(NoChatModelError, match="GRAPHCRAFT_CHAT_MODEL"):
        text2cypher("Who chairs the KWA?", sample_index[2], None)


def test_langchain_tool_wrapper(sample_index):
    from graphcraft.tools.text2cypher import make_text2cypher_tool

    tool = make_text2cypher_tool(
        sample_index[2], scripted("MATCH (e:Entity) WHERE e.name = 'Dunmore' RETURN e.type AS type")
    )
    out = tool.invoke({"question": "What kind of entity is Dunmore?"})
    assert out["rows"] and "LIMIT" in out["cypher"]
    refusing = make_text2cypher_tool(sample_index[2], scripted("MATCH (n) SET n.x = 1"), max_repairs=0)
    assert "no valid Cypher" in str(refusing.invoke({"question": "x"}))


def test_agents_get_a_query_graph_tool_only_when_it_can_work(sample_index):
    from graphcraft.config import get_settings
    from graphcraft.tools.retrieval import knowledge_tools

    settings, _, graph, _ = sample_index
    assert [t.name for t in knowledge_tools(settings)] == ["search_documents"]  # no chat model: no Text2Cypher
    assert "query_graph" not in [
        t.name for t in knowledge_tools(get_settings(store=settings.store / "elsewhere"), model=scripted("x"))
    ]
    model = scripted(
        "MATCH (a:Entity)-[r:RELATED]-(b:Entity) WHERE 'KWA' IN a.aliases AND r.type = 'CHAIR_BY' RETURN b.name AS name"
    )
    tools = {t.name: t for t in knowledge_tools(settings, model=model)}
    before = graph.counts()
    assert tools["query_graph"].invoke({"question": "Who chairs the KWA?"})["rows"] == [{"name": "Ruth Amsel"}]
    assert graph.counts() == before
