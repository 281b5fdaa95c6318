"""Errors shown to the user (clean message, non-zero exit) as opposed to bugs (tracebacks)."""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """A problem the user can fix: bad input, bad option, missing prerequisite."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in an input file, located precisely enough to fix it."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field or '-'}: {self.message}"


class InputError(UserError):
    """An input file has problems; nothing was stored."""

    def __init__(self, problems: list[Problem], consequence: str = "nothing was stored"):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s); {consequence}:\n{shown}{more}")
