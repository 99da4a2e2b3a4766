"""`graphcraft run GRAPH "TASK"`: run any graph on a task and print the answer and its trace.

`run_task` is the same thing from Python. Options a graph does not take are left out, so one
command line serves every graph (e.g. --workspace only reaches the tool-using agents).
With --thread the run is a conversation turn: state is kept in a SQLite checkpointer in the
store directory and the next run on the same thread continues it.
"""

from __future__ import annotations

import inspect
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer
from langchain_core.language_models import BaseChatModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from graphcraft.config import Settings, get_settings
from graphcraft.graphs import load_graph_module
from graphcraft.runtime.result import result_of

out = Console()


def run_task(
    graph: str,
    task: str,
    *,
    model: BaseChatModel | None = None,
    settings: Settings | None = None,
    thread_id: str | None = None,
    user_id: str | None = None,
    **options: Any,
) -> dict:
    """Run `graph` on `task`; returns {"question", "answer", "sources", "trace"}.

    options: Settings fields (store, chat_model, max_llm_calls ...) and the graph's build options
    (workspace, enable_python, mcp_config, max_tool_calls ...); ones the graph does not accept are ignored.
    """
    module = load_graph_module(graph)
    overrides = {k: v for k, v in options.items() if k in Settings.model_fields and v is not None}
    settings = settings.model_copy(update=overrides) if settings else get_settings(**overrides)
    accepted = inspect.signature(module.build).parameters
    extra = {
        k: v
        for k, v in options.items()
        if k in accepted and k not in Settings.model_fields and k not in ("model", "settings") and v is not None
    }
    configurable: dict[str, Any] = {}
    if user_id:
        configurable["user_id"] = user_id
    with ExitStack() as resources:  # closes the thread's SQLite connection after the run, even on error
        if thread_id:
            if "checkpointer" not in accepted:
                from graphcraft.errors import GraphcraftError

                raise GraphcraftError(f"graph {graph!r} does not keep conversation threads")
            from graphcraft.memory.checkpoints import open_checkpointer

            extra["checkpointer"] = resources.enter_context(open_checkpointer(settings=settings))
            configurable["thread_id"] = thread_id
        compiled = module.build(model=model, settings=settings, **extra)
        state = compiled.invoke({"question": task}, config={"configurable": configurable} if configurable else None)
    result = result_of(task, state)
    result["trace"].setdefault("graph", graph)
    return result


def run(
    graph: str = typer.Argument(..., help="Graph name (see `graphcraft graphs`)."),
    task: str = typer.Argument(..., help="The task or question."),
    store: Path | None = typer.Option(None, "--store", "-s", help="Store directory."),
    workspace: Path | None = typer.Option(None, help="Folder the file tools may use (default: <store>/workspace)."),
    python: bool = typer.Option(False, "--python", help="Enable the sandboxed python tool."),
    mcp: Path | None = typer.Option(None, "--mcp", help="MCP servers config (JSON/YAML) whose tools are added."),
    thread: str | None = typer.Option(None, "--thread", help="Conversation thread id (resumable, SQLite)."),
    max_llm_calls: int | None = typer.Option(None, help="LLM-call budget."),
    max_tool_calls: int | None = typer.Option(None, help="Tool-call budget (tool agent)."),
    agents: int | None = typer.Option(None, "--agents", help="Consensus: number of agents."),
    rounds: int | None = typer.Option(None, "--rounds", help="Consensus: max negotiation rounds."),
    rule: str | None = typer.Option(None, "--rule", help="Consensus: majority | confidence | borda | unanimity."),
    max_handoffs: int | None = typer.Option(None, "--max-handoffs", help="Supervisor: handoff bound."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run an agent or reasoning graph on a task; print the answer and a trace of its decisions."""
    consensus: dict[str, Any] = {"agents": agents, "rounds": rounds, "rule": rule, "max_handoffs": max_handoffs}
    result = run_task(
        graph,
        task,
        store=store,
        workspace=workspace,
        enable_python=python or None,
        mcp_config=mcp,
        thread_id=thread,
        max_llm_calls=max_llm_calls,
        max_tool_calls=max_tool_calls,
        **{k: v for k, v in consensus.items() if v is not None},
    )
    if as_json:
        out.print_json(json.dumps(result, default=str))
        return
    print_run(result)


def print_run(result: dict) -> None:
    out.print(f"[bold]{escape(result['answer'])}[/]\n", highlight=False)
    trace = result["trace"]
    table = Table("trace", "value", show_header=False, title=f"trace: {trace.get('graph')}")
    for key, value in trace.items():
        if key == "graph":
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        table.add_row(key, escape(text if len(text) <= 160 else text[:157] + "..."))
    out.print(table)
    for i, src in enumerate(result.get("sources", []), 1):
        out.print(f"[dim][{i}] {src.get('source')} {src.get('chunk_id')}[/]", highlight=False)
