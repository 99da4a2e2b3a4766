"""`graphcraft feedback`: score an adaptive_rag answer, or show per-strategy performance insights.

    graphcraft feedback RUN_ID_OR_QUESTION --score 0.8 [--store DIR]
    graphcraft feedback --insights [--store DIR] [--json]

Mounted by graphcraft.cli as the `feedback` command (this module exposes `feedback`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from graphcraft.errors import GraphcraftError


def feedback(
    key: str | None = typer.Argument(None, help="Run id (trace.run_id of adaptive_rag) or the exact question."),
    score: float | None = typer.Option(
        None, "--score", min=0.0, max=1.0, help="Answer quality, 0 (wrong) to 1 (perfect)."
    ),
    insights: bool = typer.Option(False, "--insights", help="Show per-strategy quality and cost statistics."),
    strategy: str | None = typer.Option(None, "--strategy", help="Strategy to credit when no run is logged for KEY."),
    store: Path | None = typer.Option(
        None, "--store", "-s", help="Store directory (default: GRAPHCRAFT_STORE or ./.graphcraft)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Record feedback for an adaptive_rag run, or show performance insights."""
    out = Console()
    if insights or key is None:
        from graphcraft.graphs.adaptive_rag import insights as compute

        rows = compute(store)
        if as_json:
            out.print_json(json.dumps(rows))
            return
        if not rows:
            out.print("no adaptive_rag runs logged yet: run `graphcraft ask --graph adaptive_rag ...` first")
            return
        table = Table(
            "class",
            "strategy",
            "runs",
            "feedback",
            "mean score",
            "quality",
            "LLM calls",
            "tokens",
            "seconds",
            title="performance insights (quality = prior blended with feedback)",
        )
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
        return
    if score is None:
        raise GraphcraftError("give --score between 0 and 1 (or --insights)")
    from graphcraft.memory.feedback import record

    entry = record(key, score, store, strategy=strategy)
    if as_json:
        out.print_json(json.dumps(entry))
    else:
        out.print(
            f"recorded {entry['score']:.2f} for strategy {entry['strategy']} ({entry['query_class']}) "
            f"run {entry['run_id'] or '-'}"
        )
