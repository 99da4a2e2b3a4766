"""`graphcraft` command line: ingest, ask, graphs, remove (+ graph, run, feedback sub-commands)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphcraft.errors import GraphcraftError

app = typer.Typer(
    help="graphcraft: advanced RAG, reasoning and multi-agent graphs, offline first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out = Console()

StoreOpt = typer.Option(None, "--store", "-s", help="Store directory (default: GRAPHCRAFT_STORE or ./.graphcraft).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object.")


def fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn: Any) -> Any:
    """Run a command, turning GraphcraftErrors into one-line messages with exit code 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GraphcraftError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted: committed work is kept; re-run to resume", 130)

    return wrapper


@app.command()
@guarded
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .pdf ...)."),
    store: Path | None = StoreOpt,
    prune: bool = typer.Option(False, help="Also remove stored files that no longer exist."),
    multimodal: bool = typer.Option(
        False, "--multimodal", help="PDF layout, tables, OCR and images (for --graph multimodal_rag)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Ingest files and folders incrementally (unchanged files are skipped)."""
    from graphcraft import api

    with Progress(
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        TimeElapsedColumn(),
        console=console,
        transient=as_json,
        disable=as_json and not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("ingest", total=None, current="")

        def on_progress(done: int, total: int, current: str) -> None:
            progress.update(task, completed=done, total=total, current=current)

        report = api.ingest(
            [str(p) for p in paths], store=store, prune=prune, multimodal=multimodal, on_progress=on_progress
        )
    nothing_usable = bool(report["failed"]) and report["added"] == 0 and report["skipped"] == 0
    if as_json:
        extra = ({"removed": report["removed"]} if prune else {}) | {
            k: report[k] for k in ("warnings", "calibration") if k in report
        }
        out.print_json(json.dumps({k: report[k] for k in ("files", "added", "skipped", "failed")} | extra))
        if nothing_usable:
            raise typer.Exit(1)
        return
    out.print(
        f"files: {report['files']}  added chunks: {report['added']}  skipped (unchanged): {report['skipped']}"
        f"  failed: {len(report['failed'])}" + (f"  removed chunks: {report['removed']}" if prune else "")
    )
    for bad in report["failed"]:
        out.print(f"  [red]failed[/] {escape(bad['path'])}: {escape(bad['error'])}", highlight=False)
    for warning in report.get("warnings", []):
        out.print(
            f"  [yellow]warning[/] {escape(str(warning.get('path', '')))}: "
            f"{escape(str(warning.get('warning', warning)))}",
            highlight=False,
        )
    if report.get("calibration"):
        cal = report["calibration"]
        out.print(
            f"[dim]evaluator calibrated on {cal['queries']} pseudo-questions: "
            f"lower {cal['lower']:.3f}, upper {cal['upper']:.3f}[/]",
            highlight=False,
        )
    if nothing_usable:  # every file failed: a script calling us should notice
        raise typer.Exit(1)


@app.command()
@guarded
def calibration(
    store: Path | None = StoreOpt,
    recompute: bool = typer.Option(False, "--recompute", help="Measure again now."),
    as_json: bool = JsonOpt,
) -> None:
    """Show the thresholds CRAG's local evaluator uses on this store, and the score distributions behind them."""
    from graphcraft import api

    report = api.calibration(store=store, recompute=recompute)
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"store {escape(report['store'])}: lower {report['lower']:.3f}, upper {report['upper']:.3f} "
        f"({report['origin']})",
        highlight=False,
    )
    cal = report.get("calibration") or {}
    if cal.get("positives"):
        table = Table(
            "best document score",
            *cal["positives"].keys(),
            title=f"{cal['queries']} pseudo-questions ({cal['method']})",
        )
        table.add_row("answer present", *(f"{v:.3f}" for v in cal["positives"].values()))
        table.add_row("near miss (answer removed)", *(f"{v:.3f}" for v in cal["negatives"].values()))
        out.print(table)
        out.print(
            f"separation (ROC AUC) {cal['separation']}; "
            "below lower: abstain (or search externally); above upper: correct"
        )


@app.command()
@guarded
def remove(
    paths: list[Path] = typer.Argument(..., help="Files, or folders whose stored files are removed."),
    store: Path | None = StoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove files' chunks from a store."""
    from graphcraft import api

    report = api.remove([str(p) for p in paths], store=store)
    out.print_json(json.dumps(report)) if as_json else out.print(
        f"files: {report['files']}  removed chunks: {report['removed']}"
    )


@app.command()
@guarded
def ask(
    question: str = typer.Argument(..., help="The question."),
    graph: str = typer.Option("crag", "--graph", "-g"),
    store: Path | None = StoreOpt,
    external: Path | None = typer.Option(None, help="A second store used as the external (web) source."),
    as_json: bool = JsonOpt,
) -> None:
    """Answer a question with a graph (default: corrective RAG)."""
    from graphcraft import api

    options: dict[str, Any] = {"external_store": external} if external else {}
    with console.status(f"running {graph}…", spinner="dots") if not as_json else contextlib.nullcontext():
        result = api.ask(question, graph=graph, store=store, **options)
    if as_json:
        out.print_json(json.dumps(_public(result), default=str))
        return
    print_result(result)


def _public(result: dict) -> dict:
    """The documented JSON shape; full steps stay in the trace."""
    sources = [
        {k: s.get(k) for k in ("source", "chunk_id", "page", "score", "text")}
        | {k: s[k] for k in ("citation", "spans", "origin", "bbox", "modality", "section") if k in s}
        for s in result["sources"]
    ]
    return {"question": result["question"], "answer": result["answer"], "sources": sources, "trace": result["trace"]}


def print_result(result: dict) -> None:
    out.print(f"[bold]{escape(result['answer'])}[/]\n", highlight=False)
    if result["sources"]:
        table = Table("#", "source", "page", "score", "text", title="sources", show_lines=False)
        for i, s in enumerate(result["sources"], start=1):
            table.add_row(
                str(s.get("citation", i)),
                escape(Path(str(s["source"])).name),
                str(s.get("page") or ""),
                f"{s['score']:.3f}" if isinstance(s.get("score"), (int, float)) else "",
                cited_excerpt(s),
            )
        out.print(table)
    t = result["trace"]
    decided = ", ".join(f"{k}={t[k]}" for k in ("action", "route", "strategy", "evaluator") if k in t)
    out.print(
        f"[dim]graph={t.get('graph')} {decided} iterations={t.get('iterations')} llm_calls={t.get('llm_calls')} "
        f"tokens={t.get('prompt_tokens', 0)}+{t.get('completion_tokens', 0)}[/]",
        highlight=False,
    )


def cited_excerpt(source: dict, width: int = 160) -> str:
    """The cited span of a source in bold (rich markup, the text escaped), else its opening words."""
    text = str(source.get("text") or "")
    spans = source.get("spans") or []
    if not spans:
        return escape(text[:width])
    start, end = spans[0]
    before = text[max(0, start - 30) : start]
    return escape(("…" if start > 30 else "") + before) + "[bold yellow]" + escape(text[start:end][:width]) + "[/]"


@app.command()
@guarded
def hierarchy(
    store: Path | None = StoreOpt,
    extractive: bool = typer.Option(False, help="Extractive summaries even with a chat model."),
    clusters: bool = typer.Option(True, help="RAPTOR-style cluster summaries across documents."),
    as_json: bool = JsonOpt,
) -> None:
    """Build or update the summary hierarchy (documents > sections > chunks) used by hierarchical_rag."""
    from dataclasses import asdict

    from graphcraft.api import _settings
    from graphcraft.ingestion.hierarchy import build_hierarchy
    from graphcraft.models import get_chat_model
    from graphcraft.runtime.context import Context

    settings = _settings(store)
    resources = Context(settings)
    model = None if extractive else get_chat_model(settings)
    with console.status("building the hierarchy…", spinner="dots"):
        report = asdict(build_hierarchy(resources.store, settings, model, clusters=clusters))
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    out.print(
        ", ".join(f"{k}: {v}" for k, v in report.items() if k != "usage")
        + f", llm_calls: {report['usage'].get('llm_calls', 0)}"
    )


@app.command()
def graphs(as_json: bool = JsonOpt) -> None:
    """List every available graph with a one-line description."""
    from graphcraft.graphs import available_graphs

    found = available_graphs()
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table("graph", "description")
    for name, description in found.items():
        table.add_row(name, description)
    out.print(table)


def _mount_optional_subcommands() -> None:
    """Sub-apps contributed by feature modules (graph RAG, agents, feedback), when present."""
    import importlib

    for module_name, command in (
        ("graphcraft.cli_graph", "graph"),
        ("graphcraft.cli_run", "run"),
        ("graphcraft.cli_feedback", "feedback"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        if isinstance(getattr(module, "app", None), typer.Typer):
            app.add_typer(module.app, name=command)
        elif callable(getattr(module, command, None)):
            app.command(command)(guarded(getattr(module, command)))


_mount_optional_subcommands()

if __name__ == "__main__":  # pragma: no cover
    app()
