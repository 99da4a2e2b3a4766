"""`graphcraft erase --subject "Jane Doe" [--store S] [--json] [--dry-run]`: erase a data subject.

Removes every chunk that mentions the subject and what was derived from it (summaries, entity
graph, LLM cache, checkpoints, run log), and tombstones the subject in the audit trail, which
still verifies. See graphcraft/guards/erase.py.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from graphcraft.cli.common import AsJson, Store, add_commands, out, print_json


def erase(
    subject: str = typer.Option(..., "--subject", help="Full name or e-mail address (whole words, any case)."),
    store: Store = None,
    as_json: AsJson = False,
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be erased; change nothing."),
) -> None:
    """Erase a data subject from the store: chunks, summaries, entity graph, caches; audit keeps a tombstone."""
    from graphcraft.config import get_settings
    from graphcraft.guards.erase import erase_subject

    settings = get_settings(store=store)
    report = erase_subject(settings.store, subject, settings=settings, dry_run=dry_run)
    if as_json:
        print_json(report.as_dict())
        return
    table = Table("store", "erased" if not dry_run else "would erase", title=f"graphcraft erase ({settings.store})")
    for name, counts in _rows(report.as_dict()):
        table.add_row(escape(name), escape(counts))
    out.print(table)
    for note in report.notes:
        out.print(f"note: {escape(note)}")
    if not report.subject_found:
        out.print("the subject was not found in this store")


def _rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """One table row per store: its non-zero counts."""
    rows = [(f"chunks: {name}", _counts(counts)) for name, counts in report["chunks"].items()]
    for name in ("hierarchy", "graph", "llm_cache", "checkpoints", "feedback", "audit"):
        rows.append((name, _counts(report[name]) if report[name] else "not present"))
    return rows


def _counts(counts: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict) and v not in (None, 0, "")]
    parts += [f"{k}: {_counts(v)}" for k, v in counts.items() if isinstance(v, dict)]
    return ", ".join(parts) or "nothing"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    add_commands(app, erase)
