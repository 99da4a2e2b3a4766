"""Retriever tool over a real ingested store (MiniLM + FAISS + BM25), used by the tool agent."""

import pytest

from graphcraft.config import get_settings
from graphcraft.graphs.tool_agent import build
from graphcraft.testing import ScriptedChatModel, tool_call
from graphcraft.tools.retrieval import graph_query_tool, knowledge_tools, retriever_tool, web_search_tool

DOCS = {
    "bridge.md": "# The Orla Bridge\n\nThe Orla Bridge was designed by the engineer Ada Lind and opened in 1871. "
    "It crosses the Orla river on three stone arches.\n",
    "bakery.txt": (
        "Marten's Bakery on Canal Street sells rye bread and cinnamon rolls. It opens at six in the morning.\n"
    ),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from graphcraft.api import ingest

    root = tmp_path_factory.mktemp("agents_store")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    ingest([corpus], store=root / "store")
    return root / "store"


def test_retriever_tool_returns_passages_with_provenance(store):
    tool = retriever_tool(settings=get_settings(store=store), k=2)
    message = tool.invoke(
        {"type": "tool_call", "name": tool.name, "args": {"query": "Who designed the Orla Bridge?"}, "id": "1"}
    )
    assert message.content.startswith("[1] ") and "Ada Lind" in message.content.split("[2]")[0]
    top = message.artifact[0]
    assert top["source"].endswith("bridge.md") and top["chunk_id"] and isinstance(top["score"], float)


def test_retriever_tool_on_missing_store_is_an_error_observation(tmp_path):
    tool = retriever_tool(settings=get_settings(store=tmp_path / "nothing"))
    out = tool.invoke({"query": "anything"})
    assert "search_documents unavailable" in out and "ingest" in out


def test_agent_answers_from_documents_with_sources(store, workspace):
    tools = knowledge_tools(get_settings(store=store), k=2)
    assert [t.name for t in tools] == ["search_documents"]  # no web search configured, no graph tool
    model = ScriptedChatModel(
        script=[
            tool_call("search_documents", query="bakery opening time"),
            "Marten's Bakery opens at six in the morning [1].",
        ]
    )
    out = build(model, tools=tools).invoke({"question": "When does the bakery open?"})
    assert out["sources"] and out["sources"][0]["source"].endswith("bakery.txt")
    assert "opens at six" in out["sources"][0]["text"]


def test_optional_tools_absent_when_not_configured():
    assert web_search_tool(get_settings()) is None
    tool = graph_query_tool(get_settings())
    assert tool is None or tool.name  # present only once Graph RAG ships text2cypher


def test_no_text2cypher_below_full_clearance(tmp_path):
    """A model-written Cypher query could read any node: below full clearance the tool is not offered."""
    from graphcraft.testing import ScriptedChatModel

    (tmp_path / "falkordb").mkdir()  # as if an entity graph had been built
    model = ScriptedChatModel(script=lambda call: "MATCH (n) RETURN n")
    assert graph_query_tool(get_settings(store=tmp_path), model) is not None
    assert graph_query_tool(get_settings(store=tmp_path, clearance="confidential"), model) is None
