"""Shared CLI pieces: the --db option, the console, progress bars, and user-error handling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

console = Console()
err_console = Console(stderr=True)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar="EMPLIFAI_DB", help="Database URL or SQLite path (default sqlite:///emplifai.db)."),
]


class ProgressBoard:
    """The one Rich progress display of the CLI: a bar per task, set by ``update(task, done, total)``.

    Library code never sees Rich: it is handed ``update`` (or ``bar(...)``'s advance) as a plain callable.
    Quiet when stderr is not a terminal."""

    def __init__(self) -> None:
        self._prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=err_console, transient=True,
                              disable=not err_console.is_terminal)
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressBoard:
        self._prog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._prog.stop()

    def update(self, task: str, done: int, total: int | None) -> None:
        if task not in self._tasks:
            self._tasks[task] = self._prog.add_task(task, total=total)
        self._prog.update(self._tasks[task], completed=done, total=total)

    def bar(self, task: str, total: int | None) -> Callable[[int], None]:
        """An ``advance(n=1)`` callable for a task counted item by item."""
        tid = self._prog.add_task(task, total=total)
        return lambda n=1: self._prog.advance(tid, n)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """One bar; yields advance(n)."""
    with ProgressBoard() as board:
        yield board.bar(description, total)
