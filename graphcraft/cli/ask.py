"""Commands that run graphs: `ask` (a question, RAG-shaped output), `run` (any graph on a task), `graphs`.

Both `ask` and `run` go through `graphcraft.api.ask`, the one function that runs a graph; they
differ in what they print. `run` hands every option to every graph: options a graph does not
take are left out by the API (e.g. --workspace only reaches the tool-using agents). With
--thread a run is a conversation turn: state is kept by a checkpointer (SQLite in the store
directory, or PostgreSQL when GRAPHCRAFT_POSTGRES_URI is set) and the next run on the same
thread continues it. With --stream both go through
`graphcraft.api.stream` instead (the same run and result): finished nodes and model tokens are
shown as they happen, or printed as JSON Lines with --json.

Human in the loop: `run --approve` turns on every graph's approval points (plan approval, sensitive
tool calls, the supervisor's final answer). At each pause it shows what waits for a decision and
prompts approve / edit / reject (answers may be piped in), then resumes the run. With --json it
prints the paused result instead ("interrupt", "thread_id"), and `graphcraft resume GRAPH THREAD
DECISION` continues it: the flow for scripts. `resume GRAPH THREAD` without a decision continues a
run whose process stopped midway (with GRAPHCRAFT_POSTGRES_URI, from any machine).
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
from graphcraft.errors import GraphcraftError

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
    thread: str | None = typer.Option(
        None, "--thread", help="Conversation thread id (kept in SQLite, or PostgreSQL with GRAPHCRAFT_POSTGRES_URI)."
    ),
    max_llm_calls: int | None = typer.Option(None, help="LLM-call budget."),
    max_tool_calls: int | None = typer.Option(None, help="Tool-call budget (tool agent)."),
    agents: int | None = typer.Option(None, "--agents", help="Consensus: number of agents."),
    rounds: int | None = typer.Option(None, "--rounds", help="Consensus: max negotiation rounds."),
    rule: str | None = typer.Option(None, "--rule", help="Consensus: majority | confidence | borda | unanimity."),
    max_handoffs: int | None = typer.Option(None, "--max-handoffs", help="Supervisor: handoff bound."),
    approve: bool = typer.Option(
        False, "--approve", help="Ask before plans, sensitive tool calls and final answers (approve/edit/reject)."
    ),
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
        **(APPROVE_ALL if approve else {}),
    }
    result = _run_graph(task, request, stream=stream, as_json=as_json, shape=dict)
    if result is None:
        return
    if approve and not as_json:
        result = approve_loop(result, request)
    _print_run(result, as_json)


def resume(
    graph: str = typer.Argument(..., help="The graph the run belongs to."),
    thread: str = typer.Argument(..., help="The run's thread id."),
    decision: str | None = typer.Argument(
        None,
        help='For a paused run: approve, \'reject: reason\', or JSON such as \'{"action": "edit", "value": ...}\'.',
    ),
    store: Store = None,
    workspace: Path | None = typer.Option(None, help="Folder the file tools may use (as when the run started)."),
    python: bool = typer.Option(False, "--python", help="Enable the sandboxed python tool (as when the run started)."),
    approve: bool = typer.Option(False, "--approve", help="Prompt at the run's next pauses."),
    as_json: AsJson = False,
) -> None:
    """Continue a run on its thread: a paused one with a decision, a stopped one (a crash) without."""
    from graphcraft import api

    # A paused run was started with its approval points on, and keeps them for its next pauses.
    approvals = APPROVE_ALL if approve or decision is not None else {}
    request = {"store": store, "workspace": workspace, "enable_python": python or None, **approvals}
    chosen = None if decision is None else parse_cli_decision(decision)
    with working(f"resuming {graph}…", quiet=as_json):
        result = api.resume(graph, thread, chosen, **request)
    if approve and not as_json:
        result = approve_loop(result, {"graph": graph, **request})
    _print_run(result, as_json)


def _print_run(result: dict[str, Any], as_json: bool) -> None:
    """A run's result: JSON, a paused run's pending decision, or the answer and a table of its trace."""
    if as_json:
        print_json(result)
        return
    if "interrupt" in result:
        show_interrupt(result["interrupt"])
        err.print(f"paused on thread {escape(str(result['thread_id']))}: continue with `graphcraft resume`")
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


APPROVE_ALL: dict[str, Any] = {"approve_plan": True, "approve_tools": "sensitive", "approve_final": True}
"""Every approval point; each graph takes the ones it has."""
MAX_PROMPTS = 50  # decisions one command asks for at most (the graphs bound their own loops too)


class NoAnswerError(GraphcraftError):
    """--approve found no answer on stdin."""


def approve_loop(result: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Prompt for a decision at each pause of the run and resume it, until it finishes."""
    from graphcraft import api

    options = {k: v for k, v in request.items() if k not in {"graph", "thread_id"}}
    for _ in range(MAX_PROMPTS):
        if "interrupt" not in result:
            return result
        thread = result["thread_id"]
        show_interrupt(result["interrupt"])
        try:
            decision = prompt_decision(result["interrupt"])
        except EOFError:
            err.print()  # end the unanswered prompt's line
            raise NoAnswerError(
                f"--approve found no answer on stdin; the run waits on thread {thread}: use --approve --json to get "
                f"the pending decision, then `graphcraft resume {request['graph']} {thread} approve|'reject: why'|JSON`"
            ) from None
        result = api.resume(request["graph"], thread, decision, **options)
    return result


def show_interrupt(payload: dict[str, Any]) -> None:
    """What waits for a decision: the plan, the tool call or the final answer (stderr)."""
    kind = payload.get("kind")
    if kind == "plan":
        table = Table("id", "step", "depends on", "tool", title="plan to approve")
        for step in payload.get("plan", []):
            tool = f"{step.get('tool')}({json.dumps(step.get('args', {}))})" if step.get("tool") else ""
            depends = ", ".join(step.get("depends_on", []))
            table.add_row(escape(step["id"]), escape(step["description"]), escape(depends), escape(tool))
        err.print(table)
        if payload.get("error"):
            err.print(f"[yellow]{escape(payload['error'])}[/]")
    elif kind == "tool_call":
        call = f"{payload.get('tool')}({json.dumps(payload.get('args'))})"
        err.print(f"tool call to approve: [bold]{escape(call)}[/]")
    else:
        by, answer = escape(str(payload.get("answered_by"))), escape(str(payload.get("answer")))
        err.print(f"final answer to approve ({by}):\n{answer}")


def prompt_decision(payload: dict[str, Any]) -> Any:
    """Ask approve / edit / reject (and the edit or reason); EOFError when stdin has no answer."""
    from rich.prompt import Prompt

    choice = Prompt.ask("decision", choices=["approve", "edit", "reject"], default="approve", console=err)
    if choice == "approve":
        return "approve"
    if choice == "reject":
        return {"action": "reject", "reason": Prompt.ask("reason", default="", console=err)}
    what = {"plan": "edited plan (JSON list of steps)", "tool_call": "new arguments (JSON object)"}
    if payload.get("kind") in what:
        text = Prompt.ask(what[payload["kind"]], console=err)
        try:
            return {"action": "edit", "value": json.loads(text)}
        except json.JSONDecodeError as exc:
            raise NoAnswerError(f"the edit is not JSON ({exc.msg}); nothing was changed") from None
    return {"action": "edit", "value": Prompt.ask("new answer", console=err)}


def parse_cli_decision(text: str) -> Any:
    """A decision given on the command line: JSON when it looks like an object, else the words themselves."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise NoAnswerError(f"the decision is not valid JSON: {exc.msg}") from None
    return text


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
    add_commands(app, ask, run, resume, graphs)
