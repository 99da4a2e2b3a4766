"""`graphcraft audit verify`: check the store's hash-chained audit trail (see graphcraft/guards/audit.py).

Exit code 0 and "ok: N entries" when every line and the recorded head hold; exit code 1 and one
line naming the first bad entry otherwise, so a cron job or CI step can alert on it.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from graphcraft.cli.common import AsJson, Store, add_commands, fail, out, print_json


def verify(store: Store = None, as_json: AsJson = False) -> None:
    """Verify the audit log: exits 1 naming the first edited, removed, reordered or truncated entry."""
    from graphcraft.api import settings_for
    from graphcraft.guards import audit

    path = settings_for(store).store
    if not path.is_dir():
        fail(f"store {path} does not exist")
    try:
        bad = audit.verify(path)
        entries = audit.count(path)
    except OSError as exc:
        fail(f"cannot read the audit log in {path}: {exc.strerror or exc}")
    if as_json:
        print_json({"ok": bad is None, "entries": entries, "bad": bad.as_dict() if bad else None})
    elif bad is None:
        out.print(f"ok: {entries} entries", highlight=False)
    else:
        out.print(escape(bad.describe()), highlight=False, soft_wrap=True)
    if bad is not None:
        raise typer.Exit(1)


_app = typer.Typer(help="The audit trail of graph runs: verify its hash chain.", no_args_is_help=True)
add_commands(_app, verify)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `graphcraft` app."""
    app.add_typer(_app, name="audit")
