"""`emplifai validate-taxonomy`: predict the emotion of every dialogue of a split with one or more models,
store the predictions, and write Table 2 (paper section 4) with accuracy, macro-F1, top-3, per-group and
per-emotion results and a confusion heatmap per model. Rerunning the same command resumes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from emplifai.cli.common import DbOpt, ProgressBoard, console, err_console
from emplifai.errors import UserError
from emplifai.formatting import num

DEFAULT_OUT = Path("results/table2")


def validate_taxonomy(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help=(
        "Model spec, repeatable: embedded, gguf:PATH[+lora:ADAPTER], openai:MODEL@URL, hf:DIR."))] = None,
    mode: Annotated[str, typer.Option(help="score: rank the 28 labels by log-likelihood; generate: free text.")]
    = "score",
    split: Annotated[str, typer.Option(
        help="Split to evaluate (train, validation, test), or all: every pair, no split needed.")] = "test",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N dialogues of the split.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for table2.md/json, per-emotion CSVs and heatmaps.")]
    = DEFAULT_OUT,
    shots: Annotated[int, typer.Option(min=0, max=28, help="Solved examples from the training split.")] = 0,
    calibrate: Annotated[bool, typer.Option(help="Score mode: content-free calibration.")] = False,
    definitions: Annotated[bool, typer.Option(help="List each label with its definition in the prompt.")] = True,
    chat: Annotated[bool, typer.Option(help="Generate mode: send the prompt as a chat turn.")] = False,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Parallel requests (default: the backend's, 8 on HTTP servers, 1 in process).")] = None,
    seed: Annotated[int, typer.Option(help="Few-shot choice and decoding seed.")] = 42,
    baseline: Annotated[bool, typer.Option("--baseline", help="Add the TF-IDF + logistic-regression row.")]
    = False,
    encoder: Annotated[str | None, typer.Option(help="BERTScore encoder: a local HF folder (default: embedded).")]
    = None,
    layer: Annotated[int | None, typer.Option(help="BERTScore layer (default 9 for the embedded encoder).")] = None,
    vectors: Annotated[str, typer.Option(help="Word vectors: 'chive' (ja-ginza) or a fastText .bin path.")]
    = "chive",
    label_lang: Annotated[str, typer.Option(help="Label names compared by the similarity metrics: ja or en.")]
    = "ja",
    db: DbOpt = None,
) -> None:
    """Taxonomy validation by reverse-engineering: the paper's Table 2 and more."""
    from emplifai.predict import validate
    from emplifai.store.db import open_store

    if mode not in ("score", "generate"):
        raise UserError(f"--mode must be 'score' or 'generate', got {mode!r}")
    models = model or ([] if baseline else ["embedded"])
    for spec in models:  # a bad spec fails before the database is opened
        validate.parse_model_spec(spec)
    store = open_store(db)
    started = time.perf_counter()
    with ProgressBoard() as board:
        results = validate.validate_taxonomy(
            store, models=models, mode=mode, split=split, limit=limit, shots=shots, baseline=baseline,
            encoder=encoder, layer=layer, vectors=vectors, out=out, seed=seed, calibrate=calibrate,
            definitions=definitions, chat=chat, concurrency=concurrency, label_lang=label_lang,
            progress=lambda spec, done, total: board.update(f"{spec} ({mode})", done, total),
            notify=lambda msg: err_console.print(msg, highlight=False),
        )
    _print_table(results)
    console.print(f"done in {time.perf_counter() - started:.1f}s")


def _print_table(results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from emplifai.predict.table2 import TABLE_KEYS

    table = Table(title="Table 2")
    table.add_column("model")
    for k in TABLE_KEYS:
        table.add_column(k, justify="right")
    for r in results:
        e = r["entry"]
        table.add_row(e["model"], *(num(e[k], 3) for k in TABLE_KEYS))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("validate-taxonomy")(validate_taxonomy)
