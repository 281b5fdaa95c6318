"""`emplifai run CONFIG --out DIR`: the whole study, resumable, ending in an HTML + Markdown report.

`--plan` validates the config and prints what the study will do and spend, without loading a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from emplifai.cli.common import ProgressBoard, console, err_console


def run(
    config: Annotated[Path, typer.Argument(help="Study config (TOML or YAML); see configs/demo.toml.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (report, tables, state, default database).")]
    = Path("results/study"),
    plan: Annotated[bool, typer.Option("--plan", help=(
        "Validate the config and print the stages, item counts, LLM calls, tokens and cost it will spend; "
        "loads no model, contacts no server, writes nothing. Exit 2 when it is not ready to run."))] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --plan: the plan as JSON.")] = False,
) -> None:
    """Run the whole study: validate → split → predict → (finetune) → sample → generate → judge → agree → report.

    Finished stages are skipped on a rerun; an interrupted stage resumes where it stopped.
    """
    if plan:
        from emplifai.formatting import to_json
        from emplifai.study.config import read_config
        from emplifai.study.plan import make_plan, render_text

        cfg, unset = read_config(config)
        p = make_plan(cfg, unset, config, out)
        print(to_json(p.to_dict()) if as_json else render_text(p))
        if not p.ready:
            sys.exit(2)
        return
    from emplifai.study import spend
    from emplifai.study.runner import Study, load_config

    cfg = load_config(config)
    with ProgressBoard() as board:
        study = Study(cfg, out, notify=lambda msg: err_console.print(msg, highlight=False, markup=False),
                      progress=board)
        timings = study.run()
    console.print("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    t = spend.totals(study.state.data)
    calls = sum(m["calls"] for m in t["models"].values())
    tokens = sum(m["prompt_tokens"] + m["completion_tokens"] for m in t["models"].values())
    money = ", ".join(f"{v:.4f} {k}" for k, v in t["cost"].items())
    console.print(f"spent: {calls} LLM calls, {tokens} tokens" + (f", {money}" if money else "")
                  + " (per stage and model in state.json and the report)")
    console.print(f"report: {out / 'report.html'} (and report.md)")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
