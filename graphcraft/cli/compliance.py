"""`graphcraft compliance [--store DIR] [--json]`: what this configuration logs, retains and redacts,
and the GDPR, HIPAA and EU AI Act checklists with the setting that fixes each item.

Exit code 0 when no item fails, 1 otherwise, so a deployment pipeline can run it as a gate.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from graphcraft.cli.common import AsJson, Store, add_commands, out, print_json

STATUS = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def _places_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table("what", "where", "on", "holds", title=title)
    for row in rows:
        where = row["where"] + (" (exists)" if row.get("exists") else "")
        table.add_row(escape(row["what"]), escape(where or "-"), "yes" if row["on"] else "no", escape(row["holds"]))
    return table


def _print_report(found: dict[str, Any]) -> None:
    config = ", ".join(f"{key}={value}" for key, value in found["configuration"].items())
    out.print(f"[bold]configuration:[/] {escape(config)}")
    out.print(_places_table("logged or sent", found["logged"]))
    out.print(_places_table("retained", found["retained"]))
    redacted = Table("what", "redaction", title="redacted")
    for row in found["redacted"]:
        redacted.add_row(escape(row["what"]), escape(row["how"]))
    out.print(redacted)
    checklist = Table("regime", "item", "status", "detail", "fix", title="checklists")
    for items in found["checklists"].values():
        for item in items:
            checklist.add_row(
                escape(item["regime"]),
                escape(item["item"]),
                STATUS[item["status"]],
                escape(item["detail"]),
                escape(item["fix"]),
            )
    out.print(checklist)
    summary = found["summary"]
    out.print(f"{summary['pass']} pass, {summary['warn']} warn, {summary['fail']} fail")


def compliance(store: Store = None, as_json: AsJson = False) -> None:
    """Report what is logged, retained and redacted, with GDPR / HIPAA / EU AI Act checklists and fixes."""
    from graphcraft.config import get_settings
    from graphcraft.guards.compliance import report

    found = report(get_settings(store=store))
    if as_json:
        print_json(found)
    else:
        _print_report(found)
    if found["summary"]["fail"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    add_commands(app, compliance)
