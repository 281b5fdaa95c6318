"""`emplifai run CONFIG --out DIR`: the whole study, resumable, ending in an HTML + Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emplifai.cli.common import ProgressBoard, console, err_console


def run(
    config: Annotated[Path, typer.Argument(help="Study config (TOML or YAML); see configs/demo.toml.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (report, tables, state, default database).")]
    = Path("results/study"),
) -> None:
    """Run the whole study: validate → split → predict → (finetune) → sample → generate → judge → agree → report.

    Finished stages are skipped on a rerun; an interrupted stage resumes where it stopped.
    """
    from emplifai.study.runner import Study, load_config

    cfg = load_config(config)
    with ProgressBoard() as board:
        study = Study(cfg, out, notify=lambda msg: err_console.print(msg, highlight=False, markup=False),
                      progress=board)
        timings = study.run()
    console.print("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    console.print(f"report: {out / 'report.html'} (and report.md)")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
