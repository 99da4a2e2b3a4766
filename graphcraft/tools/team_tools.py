"""The tools of a supervisor team's default members, made from the run's context.

A member's tools are made when it starts an assignment, from the context of that run (its
settings with the run's overrides, its model and store): the researcher searches the store
the run uses, not the one configured when the graph was built. The store is opened on the
first search, not when the tools are made, so a missing store is an error the researcher
reads (and reports), not a crash of the team.
"""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool

from graphcraft.runtime.context import Context


class RunRetriever(BaseRetriever):
    """The run context's retriever (hybrid by default), looked up on the first query."""

    ctx: Context
    kind: str = "hybrid"

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        docs: list[Document] = self.ctx.retriever(self.kind).invoke(query)
        return docs


def research_tools(ctx: Context) -> list[BaseTool]:
    """search_documents over the run's store, plus query_graph and web_search when available/configured."""
    from graphcraft.tools.retrieval import graph_query_tool, retriever_tool, web_search_tool

    tools: list[BaseTool] = [retriever_tool(RunRetriever(ctx=ctx))]
    for extra in (graph_query_tool(ctx.settings, ctx.model), web_search_tool(ctx.settings)):
        if extra is not None:
            tools.append(extra)
    return tools


def analysis_tools(ctx: Context, *, python: bool = False) -> list[BaseTool]:
    """The calculator, plus the sandboxed python tool when `python` is on."""
    from graphcraft.tools.calculator import calculator_tool

    tools: list[BaseTool] = [calculator_tool()]
    if python:
        from graphcraft.tools.python_sandbox import PythonSandbox, python_tool

        tools.append(python_tool(PythonSandbox()))
    return tools
