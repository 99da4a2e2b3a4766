"""`graphcraft graph build|stats|show`: build the entity graph of a store, count it, draw it."""

from __future__ import annotations

from pathlib import Path

import typer

from graphcraft.cli.common import AsJson, Store, add_commands, out, print_json, working


def build(
    store: Store = None,
    force: bool = typer.Option(False, help="Rebuild even if nothing changed."),
    as_json: AsJson = False,
) -> None:
    """Build or update the entity graph from the ingested chunks (incremental)."""
    from graphcraft.graph_index import api as graph_api

    with working("building the entity graph…"):
        report = graph_api.build(store, force=force)
    if as_json:
        print_json(report.as_dict())
    elif report.unchanged:
        out.print(
            f"unchanged: {report.chunks} chunks, {report.entities} entities, {report.relations} relations, "
            f"{report.communities} communities (nothing written)"
        )
    else:
        out.print(
            f"chunks: {report.chunks} (extracted now: {report.extracted}, removed: {report.removed_chunks})  "
            f"entities: {report.entities}  relations: {report.relations}  communities: {report.communities} "
            f"on {report.levels} levels  LLM calls: {report.llm_calls}  {report.seconds:.1f}s"
        )


def stats(store: Store = None, as_json: AsJson = False) -> None:
    """Counts of the entity graph: entities, relations, chunks, communities."""
    from graphcraft.graph_index import api as graph_api

    counts = graph_api.graph_stats(store)
    if as_json:
        print_json(counts)
    else:
        out.print("  ".join(f"{k}: {v}" for k, v in counts.items()))


def show(
    entity: str | None = typer.Argument(None, help="An entity name (any alias); omit to draw the communities."),
    store: Store = None,
    output: Path = typer.Option(
        Path("graph.png"), "--out", "-o", help="Output file: .png (matplotlib) or .html (pyvis)."
    ),
    hops: int = typer.Option(1, help="Neighbourhood radius around the entity."),
    level: int = typer.Option(0, help="Community level to draw when no entity is given."),
    max_nodes: int = typer.Option(40, help="Most nodes to draw."),
) -> None:
    """Draw an entity's neighbourhood, or the communities of one level."""
    from graphcraft.graph_index import api as graph_api

    path = graph_api.draw(store, output, entity=entity, hops=hops, level=level, max_nodes=max_nodes)
    out.print(f"wrote {path}")


_app = typer.Typer(help="Entity graph for graph RAG: build, stats, show.", no_args_is_help=True)
add_commands(_app, build, stats, show)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    app.add_typer(_app, name="graph")
