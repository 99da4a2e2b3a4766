"""What every command shares: the consoles, the option types, error handling, progress display.

Results go to stdout (`out`), everything else (errors, spinners, progress bars) to stderr (`err`),
so that ``graphcraft ask ... --json | jq`` always reads clean JSON. Both are declared here once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from graphcraft.errors import GraphcraftError

out = Console()
err = Console(stderr=True)

Store = Annotated[
    Path | None,
    typer.Option("--store", "-s", help="Store directory (default: GRAPHCRAFT_STORE or ./.graphcraft)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

ProgressCallback = Callable[[int, int, str], None]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one red line on stderr and end the command with `code`."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with GraphcraftErrors turned into a one-line message and exit code 1 (never a traceback).

    This is the one place the command line decides how an error looks; the message is the
    error's command-line wording (`GraphcraftError.for_cli`). Ctrl-C exits with 130, like a shell.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except GraphcraftError as exc:
            fail(exc.for_cli())
        except KeyboardInterrupt:
            fail("interrupted: committed work is kept; re-run to resume", 130)

    return wrapper


def add_commands(app: typer.Typer, *commands: Callable[..., None]) -> None:
    """Register each function as a command named after it, guarded."""
    for command in commands:
        app.command()(guarded(command))


def print_json(data: Any) -> None:
    """One JSON object on stdout (values JSON does not know, such as paths, as strings)."""
    out.print_json(json.dumps(data, default=str))


def print_answer(answer: str) -> None:
    """The answer in bold, printed verbatim: text such as "[/var/x]" is not read as markup."""
    out.print(f"[bold]{escape(answer)}[/]\n", highlight=False)


def working(message: str, *, quiet: bool = False) -> contextlib.AbstractContextManager[Any]:
    """A spinner on stderr while short-to-medium work runs; nothing when `quiet` (--json)."""
    return contextlib.nullcontext() if quiet else err.status(message, spinner="dots")


@contextlib.contextmanager
def progress_bar(label: str, *, quiet: bool = False) -> Iterator[ProgressCallback]:
    """A progress bar on stderr for long work; yields the ``(done, total, current)`` callback that moves it.

    With `quiet` (--json) the bar is removed when done, and not drawn at all into a log
    that is not a terminal.
    """
    with Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        TimeElapsedColumn(),
        console=err,
        transient=quiet,
        disable=quiet and not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(label, total=None, current="")

        def advance(done: int, total: int, current: str) -> None:
            progress.update(task, completed=done, total=total, current=current)

        yield advance
