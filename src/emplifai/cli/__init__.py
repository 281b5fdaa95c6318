"""The `emplifai` command. Each stage's commands live in their own module; this file only wires them."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import typer

from emplifai.cli.common import err_console
from emplifai.errors import UserError

app = typer.Typer(
    name="emplifai",
    help="Build, validate and benchmark Japanese empathetic medical dialogue datasets (EmplifAI pipeline).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# In data-flow order. Each module defines register(app: typer.Typer) -> None.
STAGES = ("dataset", "collect", "synth", "predict", "finetune", "evaluate", "run")
for _name in STAGES:
    if importlib.util.find_spec(f"emplifai.cli.{_name}") is not None:
        importlib.import_module(f"emplifai.cli.{_name}").register(app)


@app.command()
def version() -> None:
    """Print the emplifai version."""
    from emplifai import __version__

    print(__version__)


def main() -> None:
    # llama.cpp's OpenMP threads spin while waiting; on a shared 2-core machine that slows it 20-40x.
    # Must be set before llama_cpp is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; finished items are kept and a rerun resumes[/]")
        sys.exit(130)
