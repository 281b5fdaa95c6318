"""Reverse-engineering the emotion of each situation–dialogue pair (paper section 4).

A Japanese prompt lists the 28 labels (optionally with their definitions and a few solved examples drawn
only from the *training* split, never the item itself) and asks for the patient's emotion. Two modes:

* ``score``: the log-likelihood of each of the 28 label strings as the continuation of the prompt
  (``LLM.score``: one prompt evaluation, 28 continuations from the cached prefix). Top-1, top-3 and the
  full distribution are stored. Optional content-free calibration (Zhao et al., 2021, "Calibrate before
  use"): the distribution is divided by the one the same prompt gives for empty inputs, which removes the
  model's prior preference for some label strings.
* ``generate``: free text, read with :func:`emplifai.taxonomy.parse_label`. What cannot be mapped is stored
  with its raw text and the reason, and counted as unparsed; it is never dropped.

Each item is committed on its own, under a run id that hashes everything that determines the output, so
rerunning the same command after Ctrl-C or a kill resumes: finished items are skipped, failed ones retried.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from emplifai import taxonomy
from emplifai.errors import UserError
from emplifai.prompts import render
from emplifai.prompts.generation import format_dialogue
from emplifai.records import Record
from emplifai.store.predict import Prediction, PredStatus
from emplifai.store.repo import require_manifest

if TYPE_CHECKING:
    from emplifai.llm.base import LLM
    from emplifai.store.db import Store

PROMPT_VERSION = "predict-v1"
TEMPLATE = "predict_ja.j2"
#: appended to each label when scoring: the label must *end* there, so 愛 is not favoured as a prefix of 愛情
CANDIDATE_END = "\n"
#: content-free inputs for calibration; their label distributions are averaged (Zhao et al. use the same idea)
CONTENT_FREE: tuple[str, ...] = ("N/A", "")

Mode = Literal["score", "generate"]


class PredictConfig(BaseModel):
    """Everything about the prompt and decoding that changes predictions (all of it is in the run id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field("score", description="score: rank the 28 labels by log-likelihood; generate: free text")
    shots: int = Field(0, ge=0, le=28, description="solved examples from the training split, one per emotion")
    seed: int = Field(42, description="chooses the few-shot examples; decoding seed in generate mode")
    definitions: bool = Field(True, description="list each label with its Japanese definition")
    calibrate: bool = Field(False, description="score mode: divide by the content-free label distribution")
    chat: bool = Field(False, description="generate mode: send the prompt as a chat turn instead of raw text")
    max_tokens: int = Field(24, ge=1, description="generate mode: answer length limit")


@dataclass(frozen=True)
class Example:
    situation_id: str
    dialogue_id: str
    situation: str
    dialogue: str
    label: str  # Japanese label name


@dataclass
class ItemResult:
    """What one item produced; becomes one row of the predictions table."""

    status: PredStatus
    predicted: str | None  # English label
    reason: str | None
    raw_output: str | None = None
    top3: list[str] | None = None
    distribution: dict[str, Any] | None = None


@dataclass
class RunSummary:
    run_id: str
    model: str
    total: int
    skipped: int  # already finished in an earlier run (resumed)
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ prompt
def choose_examples(pool: Sequence[Record], seed: int) -> list[Example]:
    """A fixed, seeded ranking of one training dialogue per emotion (emotions in shuffled order).

    Fixed across items so the shared prompt prefix is evaluated once and reused from the cache; an item
    takes the first ``shots`` examples that are not itself (nor from its situation)."""
    rng = random.Random(seed)
    by_emotion: dict[str, list[Record]] = {}
    for r in sorted(pool, key=lambda r: r.dialogue_id):
        by_emotion.setdefault(r.emotion, []).append(r)
    emotions = sorted(by_emotion)
    rng.shuffle(emotions)
    ranked = []
    for emo in emotions:
        r = rng.choice(by_emotion[emo])
        ranked.append(
            Example(r.situation_id, r.dialogue_id, r.situation, format_dialogue(r.patient, r.supporter),
                    taxonomy.get(r.emotion).ja)
        )
    return ranked


def examples_for(item: Record, ranked: Sequence[Example], shots: int) -> list[Example]:
    return [e for e in ranked if e.situation_id != item.situation_id and e.dialogue_id != item.dialogue_id][:shots]


def build_prompt(situation: str, patient: str, supporter: str, examples: Sequence[Example] = (),
                 *, definitions: bool = True) -> str:
    """The prompt text; it ends with ``感情：`` so the label is the continuation."""
    dialogue = format_dialogue(patient, supporter) if (patient or supporter) else "患者：\n支援者："
    return render(TEMPLATE, labels=taxonomy.LABELS, definitions=definitions, examples=list(examples),
                  situation=situation.strip(), dialogue=dialogue)


def candidates() -> list[str]:
    return [lab.ja + CANDIDATE_END for lab in taxonomy.LABELS]


# --------------------------------------------------------------------------------------------- scoring
def _normalise(logps: Sequence[float]) -> list[float]:
    m = max(logps)
    z = m + math.log(sum(math.exp(x - m) for x in logps))
    return [x - z for x in logps]


def content_free_logprobs(llm: LLM, examples: Sequence[Example], definitions: bool) -> list[float]:
    """log of the label distribution for content-free inputs (averaged in probability space)."""
    probs = [0.0] * len(taxonomy.LABELS)
    for text in CONTENT_FREE:
        lp = _normalise(llm.score(build_prompt(text, text, text, examples, definitions=definitions), candidates()))
        probs = [p + math.exp(x) / len(CONTENT_FREE) for p, x in zip(probs, lp, strict=True)]
    return [math.log(max(p, 1e-300)) for p in probs]


def score_item(llm: LLM, prompt: str, prior: Sequence[float] | None = None) -> ItemResult:
    raw = llm.score(prompt, candidates())
    if len(raw) != len(taxonomy.LABELS) or not all(math.isfinite(x) for x in raw):
        return ItemResult(PredStatus.FAILED, None, f"backend returned unusable scores: {raw!r}"[:500])
    logp = _normalise(raw)
    final = _normalise([x - c for x, c in zip(logp, prior, strict=True)]) if prior is not None else logp
    order = sorted(range(len(final)), key=lambda i: -final[i])
    names = [lab.en for lab in taxonomy.LABELS]
    dist: dict[str, Any] = {
        "loglik": dict(zip(names, raw, strict=True)),  # total log-probability of each label string
        "prob": {n: math.exp(x) for n, x in zip(names, logp, strict=True)},
    }
    if prior is not None:
        dist["calibrated"] = {n: math.exp(x) for n, x in zip(names, final, strict=True)}
    top3 = [names[i] for i in order[:3]]
    return ItemResult(PredStatus.OK, top3[0], "calibrated top-1" if prior else "top-1 log-likelihood",
                      top3=top3, distribution=dist)


def read_answer(text: str | None) -> ItemResult:
    """Generate mode: map the model's free text to a label, or keep it as unparsed with the reason."""
    match = taxonomy.parse_label(text)
    if match.label is None:
        return ItemResult(PredStatus.UNPARSED, None, match.reason, raw_output=text)
    return ItemResult(PredStatus.OK, match.label.en, match.reason, raw_output=text)


# ------------------------------------------------------------------------------------------------ runs
def run_id(model: str, signature: dict[str, Any], cfg: PredictConfig, manifest_id: int, manifest_hash: str,
           split: str) -> str:
    payload = {
        "model": model, "llm": signature, "config": cfg.model_dump(), "prompt_version": PROMPT_VERSION,
        "manifest": [manifest_id, manifest_hash], "split": split,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def select_items(store: Store, split: str, limit: int | None) -> tuple[list[Record], list[Record], int, str]:
    """(items of the split, training pool, manifest id, manifest hash); items in a stable order."""
    from emplifai.store.repo import iter_records

    with store.transaction() as s:
        manifest = require_manifest(s)
        items = list(iter_records(s, split=split, manifest=manifest))
        pool = list(iter_records(s, split="train", manifest=manifest))
        mid, mhash = manifest.id, manifest.content_hash
    if limit is not None:
        items = items[:limit]
    return items, pool, mid, mhash


def finished_ids(store: Store, rid: str) -> set[str]:
    """Dialogues of a run that need no more work (a label or an unparsed answer; failures are retried)."""
    with store.transaction() as s:
        q = select(Prediction.dialogue_id).where(Prediction.run_id == rid, Prediction.status != PredStatus.FAILED)
        return set(s.scalars(q))


def save(store: Store, *, rid: str, model: str, signature: dict[str, Any], manifest_id: int, split: str,
         item: Record, result: ItemResult) -> None:
    """Insert the item's row, or overwrite an earlier failed row of the same run (one transaction)."""
    values = dict(
        model=model, signature=signature, mode=signature["mode"], prompt_version=signature["prompt_version"],
        manifest_id=manifest_id,
        split=split, gold=item.emotion, status=str(result.status), raw_output=result.raw_output,
        predicted=result.predicted, reason=result.reason, top3=result.top3, distribution=result.distribution,
    )
    with store.transaction() as s:
        row = s.scalars(
            select(Prediction).where(Prediction.run_id == rid, Prediction.dialogue_id == item.dialogue_id)
        ).first()
        if row is None:
            s.add(Prediction(run_id=rid, dialogue_id=item.dialogue_id, **values))
        elif row.status == PredStatus.FAILED:
            for k, v in values.items():
                setattr(row, k, v)


def run_signature(model: str, llm: LLM, cfg: PredictConfig, split: str, manifest_id: int) -> dict[str, Any]:
    return {
        "model": model, "llm": llm.signature(), "mode": cfg.mode, "prompt_version": PROMPT_VERSION,
        "config": cfg.model_dump(), "split": split, "manifest_id": manifest_id,
    }


def predict_split(
    store: Store,
    llm: LLM,
    model: str,
    cfg: PredictConfig,
    *,
    split: str = "test",
    limit: int | None = None,
    concurrency: int = 1,
    on_start: Callable[[RunSummary], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> RunSummary:
    """Predict every item of ``split`` not finished in an earlier run with the same settings."""
    items, pool, mid, mhash = select_items(store, split, limit)
    sig = run_signature(model, llm, cfg, split, mid)
    rid = run_id(model, sig["llm"], cfg, mid, mhash, split)
    done = finished_ids(store, rid)
    todo = [it for it in items if it.dialogue_id not in done]
    summary = RunSummary(rid, model, total=len(items), skipped=len(items) - len(todo))
    if on_start:
        on_start(summary)
    ranked = choose_examples(pool, cfg.seed) if cfg.shots else []

    def record(item: Record, result: ItemResult) -> None:
        save(store, rid=rid, model=model, signature=sig, manifest_id=mid, split=split, item=item, result=result)
        summary.done += 1
        summary.counts[str(result.status)] = summary.counts.get(str(result.status), 0) + 1
        if advance:
            advance(1)

    if cfg.mode == "generate" and cfg.chat:
        _generate_chat(llm, cfg, todo, ranked, record, concurrency)
    else:
        _sequential(llm, cfg, todo, ranked, record)
    return summary


def _sequential(llm: LLM, cfg: PredictConfig, todo: Sequence[Record], ranked: Sequence[Example],
                record: Callable[[Record, ItemResult], None]) -> None:
    from emplifai.llm.base import GenParams

    priors: dict[tuple[str, ...], list[float]] = {}  # content-free distribution per example set
    params = GenParams(max_tokens=cfg.max_tokens, temperature=0.0, seed=cfg.seed, stop=("\n",))
    for item in todo:
        exs = examples_for(item, ranked, cfg.shots)
        prompt = build_prompt(item.situation, item.patient, item.supporter, exs, definitions=cfg.definitions)
        try:
            if cfg.mode == "score":
                prior = None
                if cfg.calibrate:
                    key = tuple(e.dialogue_id for e in exs)
                    if key not in priors:
                        priors[key] = content_free_logprobs(llm, exs, cfg.definitions)
                    prior = priors[key]
                result = score_item(llm, prompt, prior)
            else:
                result = read_answer(llm.complete(prompt, params).text)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failing item must not stop the run; the reason is stored
            result = ItemResult(PredStatus.FAILED, None, _failure_reason(exc))
        record(item, result)


def _generate_chat(llm: LLM, cfg: PredictConfig, todo: Sequence[Record], ranked: Sequence[Example],
                   record: Callable[[Record, ItemResult], None], concurrency: int) -> None:
    """Chat models through ``batch_chat`` (bounded concurrency on HTTP backends); each result is saved the
    moment it arrives, so a kill loses at most the requests in flight."""
    from emplifai.llm.base import GenParams, LLMFailure

    params = GenParams(max_tokens=cfg.max_tokens, temperature=0.0, seed=cfg.seed)
    convs = []
    for item in todo:
        exs = examples_for(item, ranked, cfg.shots)
        prompt = build_prompt(item.situation, item.patient, item.supporter, exs, definitions=cfg.definitions)
        convs.append([{"role": "user", "content": prompt}])

    def arrived(i: int, out: Any) -> None:
        if isinstance(out, LLMFailure):
            record(todo[i], ItemResult(PredStatus.FAILED, None, f"failure: {out.reason}", raw_output=out.raw))
        else:
            record(todo[i], read_answer(out.text))

    llm.batch_chat(convs, params, concurrency=concurrency, progress=arrived)


def _failure_reason(exc: BaseException) -> str:
    return f"failure: {type(exc).__name__}: {exc}"[:2000]


def load_predictions(store: Store, rid: str, dialogue_ids: Sequence[str] | None = None) -> list[Prediction]:
    """The rows of a run, ordered by dialogue id (optionally only the given dialogues)."""
    with store.transaction() as s:
        q = select(Prediction).where(Prediction.run_id == rid)
        rows = list(s.scalars(q.order_by(Prediction.dialogue_id)))
    if dialogue_ids is not None:
        keep = set(dialogue_ids)
        rows = [r for r in rows if r.dialogue_id in keep]
    return rows


# ----------------------------------------------------------------------------------------- Table 2 run
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
    concurrency: int = 4,
    label_lang: str = "ja",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Predict ``split`` with each model (resuming earlier runs), add the TF-IDF baseline, score everything
    and write Table 2 into ``out``. Returns :func:`emplifai.predict.table2.model_entry` results in table order.

    Raises :class:`UserError` for bad settings or a bad model spec (before any model runs)."""
    from emplifai.metrics import similarity
    from emplifai.predict import baseline as bl
    from emplifai.predict import table2 as report_table2

    if mode not in ("score", "generate"):
        raise UserError(f"mode must be 'score' or 'generate', got {mode!r}")
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
        runs.append((bl.SPEC, bl.run_baseline(store, split=split, limit=limit, seed=seed)))

    items, *_ = select_items(store, split, limit)
    ids = [it.dialogue_id for it in items]
    bcfg = similarity.BertScoreConfig(encoder=encoder, **({"layer": layer} if layer is not None else {}))
    scorers = similarity.Scorers(similarity.BertScorer(bcfg), similarity.VectorScorer(vectors), lang=label_lang)
    notify("scoring predictions (BERTScore, word vectors, label metrics)…")
    results = [report_table2.model_entry(spec, rid, load_predictions(store, rid, ids), scorers) for spec, rid in runs]
    files = report_table2.write_report(out, results, split)
    notify(f"wrote {files['md']} and {files['json']}")
    return results


def parse_model_spec(spec: str) -> str:
    """The spec unchanged if the LLM layer accepts its form; else a UserError listing the valid forms."""
    from emplifai.llm import LLMError, parse_spec

    try:
        parse_spec(spec)
    except LLMError as exc:  # its message lists the valid forms
        raise UserError(str(exc)) from exc
    return spec


def _predict_model(store: Store, spec: str, cfg: PredictConfig, split: str, limit: int | None, concurrency: int,
                   notify: Callable[[str], None], progress: Progress | None) -> str:
    from emplifai.evaluate.models import load_llm  # the one loader every stage uses

    llm = load_llm(spec)
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
