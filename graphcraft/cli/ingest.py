"""Commands that fill and maintain a store: `ingest`, `remove`, `calibration`, `hierarchy`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from graphcraft.cli.common import AsJson, Store, add_commands, out, print_json, progress_bar, working


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .pdf ...)."),
    store: Store = None,
    prune: bool = typer.Option(False, help="Also remove stored files that no longer exist."),
    multimodal: bool = typer.Option(
        False, "--multimodal", help="PDF layout, tables, OCR and images (for --graph multimodal_rag)."
    ),
    follow_links: bool = typer.Option(
        False, "--follow-links", help="Also read symbolic links that lead outside the given folders."
    ),
    as_json: AsJson = False,
) -> None:
    """Ingest files and folders incrementally (unchanged files are skipped)."""
    from graphcraft import api

    links = {"follow_links": True} if follow_links else {}
    api.settings_for(store, None, **links)  # a bad setting is one line, before the progress bar starts
    with progress_bar("ingest", quiet=as_json) as on_progress:
        report = api.ingest(
            [str(p) for p in paths], store=store, prune=prune, multimodal=multimodal, on_progress=on_progress, **links
        )
    if as_json:
        extra = ({"removed": report["removed"]} if prune else {}) | {
            k: report[k] for k in ("warnings", "calibration") if k in report
        }
        print_json({k: report[k] for k in ("files", "added", "skipped", "failed")} | extra)
    else:
        _print_ingest_report(report, prune)
    if report["failed"] and report["added"] == 0 and report["skipped"] == 0:
        raise typer.Exit(1)  # every file failed: a script calling us should notice


def _print_ingest_report(report: dict[str, Any], prune: bool) -> None:
    out.print(
        f"files: {report['files']}  added chunks: {report['added']}  skipped (unchanged): {report['skipped']}"
        f"  failed: {len(report['failed'])}" + (f"  removed chunks: {report['removed']}" if prune else "")
    )
    for bad in report["failed"]:
        out.print(f"  [red]failed[/] {escape(bad['path'])}: {escape(bad['error'])}", highlight=False)
    for warning in report.get("warnings", []):
        out.print(
            f"  [yellow]warning[/] {escape(str(warning.get('path', '')))}: "
            f"{escape(str(warning.get('warning', warning)))}",
            highlight=False,
        )
    if report.get("calibration"):
        cal = report["calibration"]
        out.print(
            f"[dim]evaluator calibrated on {cal['queries']} pseudo-questions: "
            f"lower {cal['lower']:.3f}, upper {cal['upper']:.3f}[/]",
            highlight=False,
        )


def calibration(
    store: Store = None,
    recompute: bool = typer.Option(False, "--recompute", help="Measure again now."),
    as_json: AsJson = False,
) -> None:
    """Show the thresholds CRAG's local evaluator uses on this store, and the score distributions behind them."""
    from graphcraft import api

    report = api.calibration(store=store, recompute=recompute)
    if as_json:
        print_json(report)
        return
    out.print(
        f"store {escape(report['store'])}: lower {report['lower']:.3f}, upper {report['upper']:.3f} "
        f"({report['origin']})",
        highlight=False,
    )
    cal = report.get("calibration") or {}
    if cal.get("positives"):
        table = Table(
            "best document score",
            *cal["positives"].keys(),
            title=f"{cal['queries']} pseudo-questions ({cal['method']})",
        )
        table.add_row("answer present", *(f"{v:.3f}" for v in cal["positives"].values()))
        table.add_row("near miss (answer removed)", *(f"{v:.3f}" for v in cal["negatives"].values()))
        out.print(table)
        out.print(
            f"separation (ROC AUC) {cal['separation']}; "
            "below lower: abstain (or search externally); above upper: correct"
        )


def remove(
    paths: list[Path] = typer.Argument(..., help="Files, or folders whose stored files are removed."),
    store: Store = None,
    as_json: AsJson = False,
) -> None:
    """Remove files' chunks from a store."""
    from graphcraft import api

    report = api.remove([str(p) for p in paths], store=store)
    if as_json:
        print_json(report)
    else:
        out.print(f"files: {report['files']}  removed chunks: {report['removed']}")


def hierarchy(
    store: Store = None,
    extractive: bool = typer.Option(False, help="Extractive summaries even with a chat model."),
    clusters: bool = typer.Option(True, help="RAPTOR-style cluster summaries across documents."),
    as_json: AsJson = False,
) -> None:
    """Build or update the summary hierarchy (documents > sections > chunks) used by hierarchical_rag."""
    from graphcraft import api

    with working("building the hierarchy…"):
        report = api.hierarchy(store, extractive=extractive, clusters=clusters)
    if as_json:
        print_json(report)
        return
    out.print(
        ", ".join(f"{k}: {v}" for k, v in report.items() if k != "usage")
        + f", llm_calls: {report['usage'].get('llm_calls', 0)}"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    add_commands(app, ingest, calibration, remove, hierarchy)
