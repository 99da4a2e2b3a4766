"""`graphcraft feedback`: score an adaptive_rag answer, or show per-strategy performance insights.

``graphcraft feedback RUN_ID_OR_QUESTION --score 0.8 [--store DIR]`` records a score that
adaptive_rag learns strategy quality from; ``graphcraft feedback --insights [--json]`` shows it.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from graphcraft.cli.common import AsJson, Store, add_commands, out, print_json
from graphcraft.errors import GraphcraftError

INSIGHT_COLUMNS = ("class", "strategy", "runs", "feedback", "mean score", "quality", "LLM calls", "tokens", "seconds")


def feedback(
    key: str | None = typer.Argument(None, help="Run id (trace.run_id of adaptive_rag) or the exact question."),
    score: float | None = typer.Option(
        None, "--score", min=0.0, max=1.0, help="Answer quality, 0 (wrong) to 1 (perfect)."
    ),
    insights: bool = typer.Option(False, "--insights", help="Show per-strategy quality and cost statistics."),
    strategy: str | None = typer.Option(None, "--strategy", help="Strategy to credit when no run is logged for KEY."),
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Record feedback for an adaptive_rag run, or show performance insights."""
    from graphcraft import api

    if insights or key is None:
        _show_insights(api.insights(store), as_json)
        return
    if score is None:
        raise GraphcraftError("give --score between 0 and 1 (or --insights)")
    entry = api.feedback(key, score, store, strategy=strategy)
    if as_json:
        print_json(entry)
    else:
        out.print(
            f"recorded {entry['score']:.2f} for strategy {entry['strategy']} ({entry['query_class']}) "
            f"run {entry['run_id'] or '-'}"
        )


def _show_insights(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no adaptive_rag runs logged yet: run `graphcraft ask --graph adaptive_rag ...` first")
        return
    table = Table(*INSIGHT_COLUMNS, title="performance insights (quality = prior blended with feedback)")
    for r in rows:
        table.add_row(
            r["query_class"],
            r["strategy"],
            str(r["runs"]),
            str(r["feedback"]),
            "-" if r["mean_score"] is None else f"{r['mean_score']:.2f}",
            f"{r['quality']:.2f}",
            f"{r['mean_llm_calls']:.1f}",
            f"{r['mean_tokens']:.0f}",
            f"{r['mean_seconds']:.2f}",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    add_commands(app, feedback)
