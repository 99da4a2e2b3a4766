"""The `graphcraft` command line (typer + rich), a thin layer over the Python API in `graphcraft.api`.

One module per command group: `ingest` (ingest, calibration, remove, hierarchy), `ask` (ask,
run, graphs), `graph` (the entity graph: build, stats, show), `feedback`, `audit` (verify the
hash-chained audit trail), `doctor` (what works and what is missing); `common` holds what
they share (consoles, option types, the one error handler). Heavy modules are imported inside
the commands, so `graphcraft --help` answers at once.
"""

from __future__ import annotations

import typer

from graphcraft.cli import ask, audit, doctor, feedback, graph, ingest
from graphcraft.cli.common import add_commands

app = typer.Typer(
    help="graphcraft: advanced RAG, reasoning and multi-agent graphs, offline first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
add_commands(app, ingest.ingest, ingest.calibration, ingest.remove, ask.ask, ingest.hierarchy, ask.graphs)
app.add_typer(graph.app, name="graph")
app.add_typer(audit.app, name="audit")
add_commands(app, ask.run, feedback.feedback, doctor.doctor)


def main() -> None:
    """Entry point of the `graphcraft` console script and of `python -m graphcraft.cli`."""
    app()


__all__ = ["app", "main"]
