"""`graphcraft graph ...`: build the entity graph of a store, count it, draw it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from graphcraft.errors import GraphcraftError

app = typer.Typer(help="Entity graph for graph RAG: build, stats, show.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()

StoreOpt = typer.Option(None, "--store", "-s", help="Store directory (default: GRAPHCRAFT_STORE or ./.graphcraft).")


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def build(
    store: Path | None = StoreOpt,
    force: bool = typer.Option(False, help="Rebuild even if nothing changed."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Build or update the entity graph from the ingested chunks (incremental)."""
    from graphcraft.graph_index import api as graph_api

    try:
        with console.status("building the entity graph…", spinner="dots"):
            report = graph_api.build(store, force=force)
    except GraphcraftError as exc:
        _fail(str(exc))
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    if report.unchanged:
        out.print(
            f"unchanged: {report.chunks} chunks, {report.entities} entities, {report.relations} relations, "
            f"{report.communities} communities (nothing written)"
        )
        return
    out.print(
        f"chunks: {report.chunks} (extracted now: {report.extracted}, removed: {report.removed_chunks})  "
        f"entities: {report.entities}  relations: {report.relations}  communities: {report.communities} "
        f"on {report.levels} levels  LLM calls: {report.llm_calls}  {report.seconds:.1f}s"
    )


@app.command()
def stats(
    store: Path | None = StoreOpt, as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")
) -> None:
    """Counts of the entity graph: entities, relations, chunks, communities."""
    from graphcraft.graph_index import api as graph_api

    try:
        counts = graph_api.graph_stats(store)
    except GraphcraftError as exc:
        _fail(str(exc))
    if as_json:
        out.print_json(json.dumps(counts))
    else:
        out.print("  ".join(f"{k}: {v}" for k, v in counts.items()))


@app.command()
def show(
    entity: str | None = typer.Argument(None, help="An entity name (any alias); omit to draw the communities."),
    store: Path | None = StoreOpt,
    output: Path = typer.Option(
        Path("graph.png"), "--out", "-o", help="Output file: .png (matplotlib) or .html (pyvis)."
    ),
    hops: int = typer.Option(1, help="Neighbourhood radius around the entity."),
    level: int = typer.Option(0, help="Community level to draw when no entity is given."),
    max_nodes: int = typer.Option(40, help="Most nodes to draw."),
) -> None:
    """Draw an entity's neighbourhood, or the communities of one level."""
    from graphcraft.graph_index import api as graph_api
    from graphcraft.graph_index.render import check_render_options, render

    try:
        check_render_options(output, hops=hops, max_nodes=max_nodes)
        graph_store = graph_api.open_graph(store, require_ingested=True)
        try:
            path = render(graph_store, output, entity=entity, hops=hops, level=level, max_nodes=max_nodes)
        finally:
            graph_store.close()
    except GraphcraftError as exc:
        _fail(str(exc))
    out.print(f"wrote {path}")
