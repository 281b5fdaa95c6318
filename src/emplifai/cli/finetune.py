"""`emplifai finetune` (LoRA SFT on the training split) and `emplifai compare` (before/after table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emplifai import finetune
from emplifai.cli.common import DbOpt, console
from emplifai.finetune import compare


def finetune_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder: adapter, adapter.gguf, metrics, loss curve.")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML or TOML config (default: CPU config).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (dotted).")] = None,
    db: DbOpt = None,
) -> None:
    """LoRA fine-tuning (TRL SFTTrainer + PEFT) on the training split; rerun the same command to resume."""
    cfg = finetune.load_config(config, set_ or [])
    result = finetune.run(cfg, out, db)
    m = result.metrics
    console.print(f"trained {m['steps']} steps on {m['split']['train_examples']} examples "
                  f"in {m['train_seconds']:.0f} s ({m['train_tokens_per_second']:.0f} tokens/s, "
                  f"peak RSS {m['peak_rss_mib']:.0f} MiB)")
    if m["eval_losses"]:
        console.print("validation loss: " + " → ".join(f"{e['eval_loss']:.3f}" for e in m["eval_losses"]))
    console.print(f"adapter: {result.adapter_dir}")
    if result.spec:
        console.print(f"model spec: [bold]{result.spec}[/]")


def compare_command(
    before: Annotated[str, typer.Option("--before", help="Model spec before fine-tuning, e.g. embedded.")],
    after: Annotated[str, typer.Option("--after", help="Model spec after, e.g. embedded+lora:DIR/adapter.gguf.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for compare.md / compare.json.")] = Path("compare"),
    n: Annotated[int, typer.Option("--n", help="Test pairs to generate from (seeded sample).")] = 100,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    judge: Annotated[str | None, typer.Option("--judge", help="Judge model spec (default: --before).")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Judge metric (repeatable).")] = None,
    predict_limit: Annotated[int | None, typer.Option("--predict-limit", help="First N test dialogues.")] = None,
    db: DbOpt = None,
) -> None:
    """Before/after table: format adherence, judge scores and taxonomy validation for two model specs."""
    result = compare.run(before=before, after=after, out=out, n=n, seed=seed, judge=judge,
                     metrics=tuple(metric) if metric else None, predict_limit=predict_limit, db=db)
    console.print(result.markdown)
    console.print(f"written: {result.md_path}, {result.json_path}")


def experiment_command(
    config: Annotated[Path, typer.Argument(help="Experiment config (TOML); see configs/synth_experiment.toml.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: both fine-tunes, compare/, experiment.json.")]
    = Path("results/synth-experiment"),
    db: DbOpt = None,
) -> None:
    """SynthEmpathy's experiment: fine-tune on crowd data, and on crowd + reviewed synthetic data, then compare
    both on the 7 rubrics and the 3 EPITOME mechanisms. Rerun to resume."""
    from emplifai.finetune import experiment

    result = experiment.run(config, out, db)
    console.print(result.compare.markdown)
    console.print(f"written: {result.compare.md_path}, {result.compare.json_path}; provenance {result.path}")


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment_command)
    app.command("finetune")(finetune_command)
    app.command("compare")(compare_command)
