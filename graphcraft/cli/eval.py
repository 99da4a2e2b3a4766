"""`graphcraft eval DATASET --store S --graphs crag,self_rag [--json] [--limit N] [--plot PATH] [--ab A B]`.

Runs each graph through `graphcraft.api.ask` on every question of a dataset (a JSONL file or a
shipped set: graphcraft/eval/datasets/), prints one table (quality, LLM calls, tokens, cost,
latency) and writes a PNG of quality against cost. With ``--ab "top_k=3" "top_k=8"`` both
settings variants run on the same questions and each metric's difference gets a paired p-value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from graphcraft.cli.common import AsJson, Store, guarded, out, print_json, progress_bar

COLUMNS = {
    "graph": "graph",
    "n": "n",
    "answer_containment": "contain",
    "recall_at_k": "recall@k",
    "mrr": "MRR",
    "token_f1": "F1",
    "citation_precision": "cite prec",
    "faithfulness": "faithful",
    "abstention": "abstain",
    "false_abstention": "false abst",
    "judge_correct": "judge ok",
    "judge_grounded": "judge grnd",
    "llm_calls": "LLM calls",
    "tokens": "tokens",
    "cost": "cost $",
    "latency_p50_s": "p50 s",
    "latency_p95_s": "p95 s",
    "errors": "errors",
}


def eval_command(
    dataset: str = typer.Argument(
        ..., help="A JSONL dataset, or a shipped one: python_docs, postgres_docs, git_docs, samples."
    ),
    store: Store = None,
    graphs: str = typer.Option("crag", "--graphs", "-g", help="Comma-separated graphs to compare."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N questions."),
    split: str | None = typer.Option(None, "--split", help="Only the 'tune' or the 'heldout' half."),
    k: int = typer.Option(5, "--k", min=1, help="Sources counted for recall@k."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG of quality against cost (default: eval-DATASET.png)."),
    ab: tuple[str, str] | None = typer.Option(
        None, "--ab", help='Two settings variants to compare, e.g. --ab "top_k=3" "top_k=8".'
    ),
    judge: bool = typer.Option(True, "--judge/--no-judge", help="LLM-judged metrics when a chat model is configured."),
    as_json: AsJson = False,
) -> None:
    """Compare graphs on a dataset: quality, LLM calls, tokens, cost and latency, plus a quality/cost plot."""
    from graphcraft.eval.harness import check_graphs, check_store, load_dataset

    items = load_dataset(dataset, split, limit)
    names, path = check_graphs(graphs.split(",")), check_store(store)
    judge_model = _judge_model() if judge else None
    plot_path = plot or Path(f"eval-{Path(dataset).stem}.png")
    run = {"items": items, "graphs": names, "store": path, "k": k, "judge_model": judge_model}
    if ab:
        report = _run_ab(run, ab, as_json)
    else:
        report = {"rows": _compare(run, as_json)}
    report["plot"] = str(_plot(report["rows"], plot_path, Path(dataset).stem))
    if as_json:
        print_json(report)
        return
    _print_rows(report["rows"], f"{Path(dataset).stem}: {len(items)} questions, recall@{k}")
    if "ab" in report:
        _print_ab(report)
    out.print(f"plot: {escape(report['plot'])}", highlight=False)


def _judge_model() -> Any:
    from graphcraft.models import get_chat_model

    return get_chat_model()


def _compare(run: Mapping[str, Any], quiet: bool) -> list[dict[str, Any]]:
    """Every graph on every question (graphcraft.eval.harness.evaluate), one summary row per graph."""
    from graphcraft.eval.harness import evaluate, summarize

    with progress_bar("evaluating", quiet=quiet) as advance:
        rows = evaluate(
            run["items"], run["graphs"], run["store"], k=run["k"], judge_model=run["judge_model"], on_progress=advance
        )
    return summarize(rows)


def _run_ab(run: Mapping[str, Any], variants: tuple[str, str], quiet: bool) -> dict[str, Any]:
    """Both variants on the same questions (graphcraft.eval.ab.ab_test), under one progress bar."""
    from graphcraft.eval.ab import ab_test, check_variants

    check_variants(variants, run["graphs"], run["store"])  # a bad variant fails before the progress bar
    with progress_bar("A/B", quiet=quiet) as advance:
        return ab_test(
            run["items"],
            run["graphs"],
            run["store"],
            variants,
            k=run["k"],
            judge_model=run["judge_model"],
            on_progress=advance,
        )


def _plot(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    from graphcraft.eval.harness import plot_quality_cost

    return plot_quality_cost(rows, path, title=title)


def _print_rows(rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """One column per graph (and variant), one line per figure: fits a terminal however many metrics."""
    from rich.table import Table

    from graphcraft.eval.report import format_value

    table = Table("", *(escape(str(row.get("label") or row["graph"])) for row in rows), title=title)
    for key, header in COLUMNS.items():
        if key != "graph" and any(key in row for row in rows):
            table.add_row(header, *(format_value(row.get(key), 4 if key == "cost" else 3) for row in rows))
    out.print(table)


def _print_ab(report: Mapping[str, Any]) -> None:
    from graphcraft.eval.report import make_table

    shown = [
        {
            "graph": c["graph"],
            "metric": c["metric"],
            "n": c["n"],
            "A": c["a"],
            "B": c["b"],
            "B - A": c["difference"],
            "p": c["p_value"],
        }
        for c in report["ab"]
    ]
    variants = report["variants"]
    out.print(make_table(shown, title=f"A/B: A = {variants['A']}, B = {variants['B']} ({report['test']})"))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    app.command(name="eval")(guarded(eval_command))
