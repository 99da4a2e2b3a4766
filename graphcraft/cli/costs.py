"""`graphcraft costs [--store S] [--by user|graph|day] [--since DATE] [--json]`: spend from the audit trail.

One row per group with runs, LLM calls, tokens and cost, and a warning column against the daily
spend limit per user (GRAPHCRAFT_SPEND_LIMIT_USD): "over" (runs are refused) or "near" (80 %).
"""

from __future__ import annotations

import typer
from rich.markup import escape

from graphcraft.cli.common import AsJson, Store, add_commands, fail, out, print_json

WARNING_STYLE = {"over": "[bold red]over limit[/]", "near": "[yellow]near limit[/]", "": ""}


def costs(
    store: Store = None,
    by: str = typer.Option("user", "--by", help="Group by user, graph or day (or a comma list: user,day)."),
    since: str | None = typer.Option(None, "--since", help="Only runs from this day on (YYYY-MM-DD, UTC)."),
    as_json: AsJson = False,
) -> None:
    """Spend per user, graph or day (runs, LLM calls, tokens, cost), read from the store's audit trail."""
    from rich.table import Table

    from graphcraft.api import settings_for
    from graphcraft.eval.spend import group_names, parse_since, spend, warnings

    settings = settings_for(store)
    if not settings.store.is_dir():
        fail(f"store {settings.store} does not exist")
    keys = group_names(by)
    rows = spend(settings.store, since=parse_since(since), by=keys)
    flags = warnings(rows, settings.store, settings.spend_limit_usd)
    for row, flag in zip(rows, flags, strict=True):
        row["warning"] = flag
    if as_json:
        print_json({"rows": rows, "limit_usd": settings.spend_limit_usd, "by": list(keys)})
        return
    limit = f"daily limit ${settings.spend_limit_usd:.2f} per user" if settings.spend_limit_usd else "no spend limit"
    table = Table(
        *keys, "runs", "LLM calls", "tokens", "cost $", "warning", title=f"spend in {settings.store} ({limit})"
    )
    for row in rows:
        cells = [escape(str(row[key])) for key in keys]
        numbers = [str(row["runs"]), str(row["llm_calls"]), str(row["tokens"]), f"{row['cost']:.4f}"]
        table.add_row(*cells, *numbers, WARNING_STYLE[row["warning"]])
    out.print(table)
    if not rows:
        out.print("no runs recorded" + (f" since {since}" if since else ""))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    add_commands(app, costs)
