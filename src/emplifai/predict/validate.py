"""`validate-taxonomy`: every model and the TF-IDF baseline over one split, scored and written as Table 2."""


from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emplifai import metrics
from emplifai.errors import UserError
from emplifai.llm import LLMError, parse_spec, registry
from emplifai.predict import baseline as baseline_model
from emplifai.predict import table2
from emplifai.store.repo import EVAL_SPLITS

if TYPE_CHECKING:
    from emplifai.store.db import Store

from emplifai.predict.prompt import Mode
from emplifai.predict.runs import PredictConfig, RunSummary, load_predictions, predict_split, select_items

#: progress(model, completed, total): called when a model's run starts (completed = items resumed) and
#: after each item; a CLI turns it into a progress bar
Progress = Callable[[str, int, int], None]


def validate_taxonomy(
    store: Store,
    *,
    models: list[str],
    mode: Mode = "score",
    split: str = "test",
    limit: int | None = None,
    shots: int = 0,
    baseline: bool = True,
    encoder: str | None = None,
    layer: int | None = None,
    vectors: str = "chive",
    out: Path,
    notify: Callable[[str], None] = print,
    seed: int = 42,
    calibrate: bool = False,
    definitions: bool = True,
    chat: bool = False,
    concurrency: int | None = None,
    label_lang: str = "ja",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Predict ``split`` with each model (resuming earlier runs), add the TF-IDF baseline, score everything
    and write Table 2 into ``out``. Returns :func:`emplifai.predict.table2.model_entry` results in table order.

    Raises :class:`UserError` for bad settings or a bad model spec (before any model runs)."""
    if mode not in ("score", "generate"):
        raise UserError(f"mode must be 'score' or 'generate', got {mode!r}")
    if split not in EVAL_SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(EVAL_SPLITS)}")
    if label_lang not in ("ja", "en"):
        raise UserError(f"label language must be 'ja' or 'en', got {label_lang!r}")
    if chat and mode != "generate":
        raise UserError("chat applies to the generate mode only")
    if len(set(models)) != len(models):
        raise UserError("each model may be given once")
    if not models and not baseline:
        raise UserError("nothing to evaluate: give a model or the baseline")
    cfg = PredictConfig(mode=mode, shots=shots, seed=seed, definitions=definitions, calibrate=calibrate, chat=chat)
    specs = [parse_model_spec(m) for m in models]  # all specs checked before the first (slow) model runs
    runs: list[tuple[str, str]] = []
    for spec in specs:
        runs.append((spec, _predict_model(store, spec, cfg, split, limit, concurrency, notify, progress)))
    if baseline:
        notify("training the TF-IDF baseline…")
        runs.append((baseline_model.SPEC, baseline_model.run_baseline(store, split=split, limit=limit, seed=seed)))

    items, *_ = select_items(store, split, limit)
    ids = [it.dialogue_id for it in items]
    bcfg = metrics.BertScoreConfig(encoder=encoder, **({"layer": layer} if layer is not None else {}))
    scorers = metrics.Scorers(metrics.BertScorer(bcfg), metrics.VectorScorer(vectors), lang=label_lang)
    notify("scoring predictions (BERTScore, word vectors, label metrics)…")
    results = [table2.model_entry(spec, rid, load_predictions(store, rid, ids), scorers) for spec, rid in runs]
    table2.save_results(store, results, split)
    files = table2.write_report(out, results, split)
    notify(f"wrote {files['md']} and {files['json']}")
    return results


def parse_model_spec(spec: str) -> str:
    """The spec unchanged if the LLM layer accepts its form; else a UserError listing the valid forms."""
    try:
        parse_spec(spec)
    except LLMError as exc:  # its message lists the valid forms
        raise UserError(str(exc)) from exc
    return spec


def _predict_model(store: Store, spec: str, cfg: PredictConfig, split: str, limit: int | None,
                   concurrency: int | None,
                   notify: Callable[[str], None], progress: Progress | None) -> str:
    llm = registry.load_model(spec)
    state = {"done": 0, "total": 0}

    def started(s: RunSummary) -> None:
        state.update(done=s.skipped, total=s.total)
        notify(f"{spec}: run {s.run_id}, {s.total} items, {s.skipped} already done, {s.total - s.skipped} to predict")
        if progress:
            progress(spec, s.skipped, s.total)

    def advance(n: int) -> None:
        state["done"] += n
        if progress:
            progress(spec, state["done"], state["total"])

    try:
        summary = predict_split(store, llm, spec, cfg, split=split, limit=limit, concurrency=concurrency,
                                on_start=started, advance=advance)
    finally:
        close = getattr(llm, "close", None)
        if close:
            close()
    if summary.counts:
        notify(f"{spec}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items())))
    if failed := summary.counts.get("failed", 0):
        notify(f"{spec}: {failed} item(s) failed and are recorded; rerun to retry them")
    return summary.run_id
