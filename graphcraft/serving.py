"""The graphs LangGraph Server and Studio serve (langgraph.json points here): every graph, audited.

A run through `graphcraft.ask` (CLI, Python) is appended to the store's audit trail by the API; a
served run never passes through it. So each served graph is the graph itself followed by one
``audit`` node that appends the finished run to ``<store>/audit.jsonl`` exactly as `ask` does
(the question only as its hash, the user id from the run's configurable or the server's
authenticated user). A run paused for a person is audited once, when it finishes. The served graph
keeps the `ask` shape and the graph's own behaviour: it runs as a subgraph, so streaming, threads,
interrupts and resumes work as they do on the graph alone.

Importing this module builds every graph, as the server does at start.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from graphcraft.runtime.result import InputState, OutputState


class ServedState(InputState, OutputState, total=False):
    """What a served run carries: the question and the `ask` result."""


def run_graph(state: ServedState, config: RunnableConfig, *, graph: Any) -> dict[str, Any]:
    """The graph itself, as a subgraph (its checkpoints, pauses and resumes nest in the thread's)."""
    out = graph.invoke({"question": state["question"]}, config=config)
    out = out if isinstance(out, dict) else {}
    return {"answer": out.get("answer", ""), "sources": list(out.get("sources", [])), "trace": out.get("trace", {})}


def audit(state: ServedState, config: RunnableConfig, *, name: str) -> dict[str, Any]:
    """Append the finished run to the run's store's audit trail, as `graphcraft.ask` does."""
    from graphcraft.guards.audit import append_run
    from graphcraft.runtime.context import context
    from graphcraft.runtime.result import result_of

    settings = context(config, name).settings  # the deployment's settings with the run's overrides (its store)
    if not settings.audit or not Path(settings.store).is_dir():
        return {}
    configurable = config.get("configurable") or {}
    user = configurable.get("user_id") or configurable.get("langgraph_auth_user_id")
    result = result_of(state["question"], state)
    result["trace"].setdefault("graph", name)
    append_run(settings.store, state["question"], result, user_id=str(user) if user else None)
    return {}


def served(name: str) -> Any:
    """Graph `name` (its module's `graph`) followed by the audit node."""
    from graphcraft.graphs import load_graph_module

    g = StateGraph(ServedState, input_schema=InputState, output_schema=OutputState)
    g.add_node("run_graph", partial(run_graph, graph=load_graph_module(name).graph))
    g.add_node("audit", partial(audit, name=name))
    g.add_edge(START, "run_graph")
    g.add_edge("run_graph", "audit")
    g.add_edge("audit", END)
    return g.compile(name=name)


def _serve_all() -> None:
    """One module attribute per graph: LangGraph's loader looks a graph up by attribute, as langgraph.json names it."""
    from graphcraft.graphs import available_graphs

    for name in available_graphs():
        globals()[name] = served(name)


_serve_all()
