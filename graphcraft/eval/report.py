"""Reports: a rich table on the terminal and matplotlib plots saved as PNG (no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def format_value(value: Any, digits: int = 3) -> str:
    """Floats rounded, None as an em dash, booleans as yes/no."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def make_table(
    rows: Sequence[Mapping[str, Any]], title: str | None = None, columns: Sequence[str] | None = None, digits: int = 3
) -> Table:
    """A rich Table from dict rows; columns default to the keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    table = Table(title=title)
    for col in columns:
        numeric = any(isinstance(row.get(col), (int, float)) and not isinstance(row.get(col), bool) for row in rows)
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(format_value(row.get(col), digits) for col in columns))
    return table


def print_table(
    rows: Sequence[Mapping[str, Any]],
    title: str | None = None,
    columns: Sequence[str] | None = None,
    digits: int = 3,
    console: Console | None = None,
) -> Table:
    """Print dict rows as a table (and return it)."""
    table = make_table(rows, title, columns, digits)
    (console or Console()).print(table)
    return table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def save_comparison_plot(
    results: Mapping[str, Mapping[str, float | None]],
    path: str | Path,
    title: str = "",
    metrics: Sequence[str] | None = None,
    ylabel: str = "",
) -> Path:
    """Grouped bars: one group per metric, one bar per system (`results[system][metric]`)."""
    plt = _pyplot()
    systems = list(results)
    if metrics is None:
        metrics = list(dict.fromkeys(m for r in results.values() for m in r))
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(metrics) * max(len(systems), 1) * 0.6 + 3), 4.5))
    for i, system in enumerate(systems):
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(metrics))]
        values = [results[system].get(m) for m in metrics]
        bars = ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=system)
        ax.bar_label(bars, labels=[format_value(v, 2) for v in values], fontsize=7, padding=2)
    ax.set_xticks(range(len(metrics)), list(metrics), rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def save_curve_plot(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    points: Mapping[str, tuple[float, float]] | None = None,
    diagonal: bool = False,
) -> Path:
    """Line plot of named (x, y) curves, with optional labelled points (e.g. chosen thresholds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker=".", markersize=3, label=name)
    for name, (x, y) in (points or {}).items():
        ax.scatter([x], [y], zorder=5)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, -12), fontsize=8)
    if diagonal:
        ax.plot([0, 1], [1, 0], linestyle=":", color="grey", label="no separation")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
