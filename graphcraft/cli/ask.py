"""Commands that run graphs: `ask` (a question, RAG-shaped output), `run` (any graph on a task), `graphs`.

Both `ask` and `run` go through `graphcraft.api.ask`, the one function that runs a graph; they
differ in what they print. `run` hands every option to every graph: options a graph does not
take are left out by the API (e.g. --workspace only reaches the tool-using agents). With
--thread a run is a conversation turn: state is kept in a SQLite checkpointer in the store
directory and the next run on the same thread continues it. With --stream both go through
`graphcraft.api.stream` instead (the same run and result): finished nodes and model tokens are
shown as they happen, or printed as JSON Lines with --json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from graphcraft.cli.common import AsJson, Store, add_commands, err, out, print_answer, print_json, working

SOURCE_KEYS = ("source", "chunk_id", "page", "score", "text")
OPTIONAL_SOURCE_KEYS = ("citation", "spans", "origin", "bbox", "modality", "section")


Stream = Annotated[
    bool,
    typer.Option(
        "--stream",
        help="Show nodes as they finish and model tokens as they arrive; with --json, one JSON object per event.",
    ),
]


def ask(
    question: str = typer.Argument(..., help="The question."),
    graph: str = typer.Option("crag", "--graph", "-g"),
    store: Store = None,
    external: Path | None = typer.Option(None, help="A second store used as the external (web) source."),
    stream: Stream = False,
    as_json: AsJson = False,
) -> None:
    """Answer a question with a graph (default: corrective RAG)."""
    request = {"graph": graph, "store": store, "external_store": external}
    result = _run_graph(question, request, stream=stream, as_json=as_json, shape=public, spinner=True)
    if result is None:  # --stream --json: every event, the result included, is printed already
        return
    if as_json:
        print_json(public(result))
        return
    print_answer(result["answer"])
    if result["sources"]:
        out.print(_sources_table(result["sources"]))
    t = result["trace"]
    decided = ", ".join(f"{k}={t[k]}" for k in ("action", "route", "strategy", "evaluator") if k in t)
    out.print(
        f"[dim]graph={t.get('graph')} {decided} iterations={t.get('iterations')} llm_calls={t.get('llm_calls')} "
        f"tokens={t.get('prompt_tokens', 0)}+{t.get('completion_tokens', 0)}[/]",
        highlight=False,
    )


def _run_graph(
    question: str,
    request: dict[str, Any],
    *,
    stream: bool,
    as_json: bool,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
    spinner: bool = False,
) -> dict[str, Any] | None:
    """Run a graph through the API: the result to print, or None when --stream --json printed it as an event.

    Without --stream this is `api.ask`; with it, `api.stream` (the same run and result), shown live
    or, with --json, as JSON Lines whose final "result" event has the shape --json prints (`shape`).
    """
    from graphcraft import api

    if not stream:
        with working(f"running {request['graph']}…", quiet=as_json or not spinner):
            return api.ask(question, **request)
    events = api.stream(question, **request)  # a bad graph or option fails here, before any output
    if not as_json:
        return show_live(events, request["graph"])
    for event in events:
        if event["type"] == "result":
            event = {**event, "result": shape(event["result"])}
        out.file.write(json.dumps(event, default=str) + "\n")
        out.file.flush()  # each line as it happens, also into a pipe
    return None


def show_live(events: Iterator[dict[str, Any]], graph: str) -> dict[str, Any]:
    """Show a streamed run: a spinner and one line per finished node (stderr), model tokens on stdout.

    The spinner is paused while tokens print, so a terminal shows the reply as it is written
    rather than interleaved with spinner frames. Returns the run's result for the usual output.
    """
    started = time.monotonic()
    status = err.status(f"running {escape(graph)}…", spinner="dots")
    status.start()
    speaking: str | None = None  # the node whose tokens are being printed
    result: dict[str, Any] = {}
    try:
        for event in events:
            if event["type"] == "token":
                if speaking is None:
                    status.stop()
                elif speaking != event["node"]:
                    out.file.write("\n")
                speaking = event["node"]
                out.file.write(event["text"])
                out.file.flush()
            elif event["type"] == "node":
                if speaking is not None:
                    out.file.write("\n\n")
                    out.file.flush()
                    speaking = None
                    status.start()
                elapsed = time.monotonic() - started
                err.print(f"[green]✓[/] {escape(event['node'])} [dim]{elapsed:.2f}s[/]", highlight=False)
            else:
                result = event["result"]
    finally:
        status.stop()
    if speaking is not None:
        out.file.write("\n\n")
    return result


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The documented JSON shape of an answer; a source keeps its provenance keys, full steps stay in the trace."""
    sources = [
        {k: s.get(k) for k in SOURCE_KEYS} | {k: s[k] for k in OPTIONAL_SOURCE_KEYS if k in s}
        for s in result["sources"]
    ]
    return {"question": result["question"], "answer": result["answer"], "sources": sources, "trace": result["trace"]}


def _sources_table(sources: list[dict[str, Any]]) -> Table:
    table = Table("#", "source", "page", "score", "text", title="sources", show_lines=False)
    for i, s in enumerate(sources, start=1):
        table.add_row(
            str(s.get("citation", i)),
            escape(Path(str(s["source"])).name),
            str(s.get("page") or ""),
            f"{s['score']:.3f}" if isinstance(s.get("score"), (int, float)) else "",
            cited_excerpt(s),
        )
    return table


def cited_excerpt(source: dict[str, Any], width: int = 160) -> str:
    """The cited span of a source in bold (rich markup, the text escaped), else its opening words."""
    text = str(source.get("text") or "")
    spans = source.get("spans") or []
    if not spans:
        return escape(text[:width])
    start, end = spans[0]
    before = text[max(0, start - 30) : start]
    return escape(("…" if start > 30 else "") + before) + "[bold yellow]" + escape(text[start:end][:width]) + "[/]"


def run(
    graph: str = typer.Argument(..., help="Graph name (see `graphcraft graphs`)."),
    task: str = typer.Argument(..., help="The task or question."),
    store: Store = None,
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
    stream: Stream = False,
    as_json: AsJson = False,
) -> None:
    """Run an agent or reasoning graph on a task; print the answer and a trace of its decisions."""
    request = {
        "graph": graph,
        "store": store,
        "thread_id": thread,
        "workspace": workspace,
        "enable_python": python or None,
        "mcp_config": mcp,
        "max_llm_calls": max_llm_calls,
        "max_tool_calls": max_tool_calls,
        "agents": agents,
        "rounds": rounds,
        "rule": rule,
        "max_handoffs": max_handoffs,
    }
    result = _run_graph(task, request, stream=stream, as_json=as_json, shape=dict)
    if result is None:
        return
    if as_json:
        print_json(result)
        return
    print_answer(result["answer"])
    trace = result["trace"]
    table = Table("trace", "value", show_header=False, title=f"trace: {trace.get('graph')}")
    for key, value in trace.items():
        if key != "graph":
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            table.add_row(key, escape(text if len(text) <= 160 else text[:157] + "..."))
    out.print(table)
    for i, src in enumerate(result.get("sources", []), 1):
        out.print(f"[dim][{i}] {src.get('source')} {src.get('chunk_id')}[/]", highlight=False)


def graphs(as_json: AsJson = False) -> None:
    """List every available graph with a one-line description."""
    from graphcraft import api

    found = api.graphs()
    if as_json:
        print_json(found)
        return
    table = Table("graph", "description")
    for name, description in found.items():
        table.add_row(name, description)
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    add_commands(app, ask, run, graphs)
