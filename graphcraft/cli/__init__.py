"""The `graphcraft` command line (typer + rich), a thin layer over the Python API in `graphcraft.api`.

One module per command group, each adding its commands with ``register(app)``: `ingest` (ingest,
calibration, remove, hierarchy), `ask` (ask, run, graphs), `graph` (the entity graph: build,
stats, show), `feedback`, `audit` (verify the hash-chained audit trail), `doctor` (what works and
what is missing), and any module added beside them that defines `register`; `common` holds what
they share (consoles, option types, the one error handler). Heavy modules are imported inside the
commands, so `graphcraft --help` answers at once.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import typer

app = typer.Typer(
    help="graphcraft: advanced RAG, reasoning and multi-agent graphs, offline first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# The usual workflow first in --help; other command modules follow in name order.
_FIRST = ("ingest", "ask", "graph", "audit", "feedback", "doctor")


def _command_modules() -> list[str]:
    found = sorted(info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)]))
    rest = [name for name in found if name not in _FIRST and not name.startswith("_")]
    return [*_FIRST, *rest]


for _name in _command_modules():
    _module = importlib.import_module(f"graphcraft.cli.{_name}")
    if hasattr(_module, "register"):
        _module.register(app)


def main() -> None:
    """Entry point of the `graphcraft` console script and of `python -m graphcraft.cli`."""
    app()


__all__ = ["app", "main"]
