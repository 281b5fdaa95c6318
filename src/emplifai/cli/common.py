"""Shared CLI pieces: the --db option, the console, progress bars, and user-error handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err_console = Console(stderr=True)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar="EMPLIFAI_DB", help="Database URL or SQLite path (default sqlite:///emplifai.db)."),
]


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[callable]:
    """A Rich progress bar; yields advance(n). Quiet when output is not a terminal."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)
