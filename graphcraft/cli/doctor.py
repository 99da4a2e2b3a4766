"""`graphcraft doctor [--store DIR] [--json] [--deep]`: what works here and what is missing, with fixes.

Exit code 0 when nothing required is broken (missing optional extras are warnings), 1 otherwise,
so a setup script or CI step can run it as a gate.
"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from graphcraft.cli.common import AsJson, Store, add_commands, out, print_json

STATUS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def doctor(
    store: Store = None,
    as_json: AsJson = False,
    deep: bool = typer.Option(False, "--deep", help="Also start the bundled FalkorDB to see that it runs."),
) -> None:
    """Check what works and what is missing (models, store, graph database, OCR, extras), each with its fix."""
    from graphcraft.config import get_settings
    from graphcraft.doctor import checks, doctor_ok

    settings = get_settings(store=store)
    found = checks(settings, deep=deep)
    ok = doctor_ok(found)
    if as_json:
        print_json({"checks": [check.as_dict() for check in found], "ok": ok})
    else:
        table = Table("check", "status", "detail", "fix", title="graphcraft doctor")
        for check in found:
            status = "ok" if check.ok else ("fail" if check.required else "warn")
            table.add_row(escape(check.name), STATUS[status], escape(check.detail), escape(check.fix))
        out.print(table)
        out.print("[green]ready[/]" if ok else "[bold red]something required is broken: see FAIL above[/]")
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    add_commands(app, doctor)
