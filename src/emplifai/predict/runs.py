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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from emplifai import taxonomy
from emplifai.provenance import json_digest
from emplifai.records import Record
from emplifai.store.predict import Prediction, PredStatus
from emplifai.store.repo import ALL, require_manifest

if TYPE_CHECKING:
    from emplifai.llm.base import LLM
    from emplifai.store.db import Store

from emplifai.llm.base import GenParams, LLMFailure
from emplifai.predict.prompt import (
    PROMPT_VERSION,
    Example,
    ItemResult,
    Mode,
    build_prompt,
    candidates,
    choose_examples,
    content_free_logprobs,
    examples_for,
    rank_scores,
    read_answer,
)
from emplifai.store.repo import iter_records


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


@dataclass
class RunSummary:
    run_id: str
    model: str
    total: int
    skipped: int  # already finished in an earlier run (resumed)
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)

# ------------------------------------------------------------------------------------------------ prompt


def run_id(model: str, signature: dict[str, Any], cfg: PredictConfig, manifest_id: int | None, manifest_hash: str,
           split: str) -> str:
    payload = {
        "model": model, "llm": signature, "config": cfg.model_dump(), "prompt_version": PROMPT_VERSION,
        "manifest": [manifest_id, manifest_hash], "split": split,
    }
    return json_digest(payload, 24)


def select_items(store: Store, split: str, limit: int | None
                 ) -> tuple[list[Record], list[Record], int | None, str]:
    """(items of the split, few-shot pool, manifest id, content hash); items in a stable order.

    ``split="all"`` takes every live pair and needs no manifest (id None; the hash is the items' content); its
    few-shot pool is those same pairs, and :func:`examples_for` never shows an item its own situation.
    ``limit`` takes a stratified subset, not the first N rows (which would be a few emotions only): the emotions
    in Table-1 order take turns, each giving its next dialogue in stored order, until N are chosen."""

    with store.transaction() as s:
        if split == ALL:
            items = list(iter_records(s, split=ALL))
            pool, mid, mhash = items, None, items_digest(items)
        else:
            manifest = require_manifest(s)
            items = list(iter_records(s, split=split, manifest=manifest))
            pool = list(iter_records(s, split="train", manifest=manifest))
            mid, mhash = manifest.id, manifest.content_hash
    if limit is not None:
        items = stratified_head(items, limit)
    return items, pool, mid, mhash


def items_digest(items: Sequence[Record]) -> str:
    """What a manifest's content hash is for a split: the pairs and their gold labels, in order."""
    return json_digest([[r.dialogue_id, r.situation_id, r.emotion, r.situation, r.patient, r.supporter]
                        for r in items], 64)


def stratified_head(items: Sequence[Record], limit: int) -> list[Record]:
    by_emotion: dict[str, list[Record]] = {}
    for it in items:
        by_emotion.setdefault(it.emotion, []).append(it)
    queues = [by_emotion[lab.en] for lab in taxonomy.LABELS if lab.en in by_emotion]
    out: list[Record] = []
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][: limit - len(out)]
        depth += 1
    return out


def finished_ids(store: Store, rid: str) -> set[str]:
    """Dialogues of a run that need no more work (a label or an unparsed answer; failures are retried)."""
    with store.transaction() as s:
        q = select(Prediction.dialogue_id).where(Prediction.run_id == rid, Prediction.status != PredStatus.FAILED)
        return set(s.scalars(q))


def save(store: Store, *, rid: str, model: str, signature: dict[str, Any], manifest_id: int | None, split: str,
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


def run_signature(model: str, llm: LLM, cfg: PredictConfig, split: str, manifest_id: int | None) -> dict[str, Any]:
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
    concurrency: int | None = None,
    on_start: Callable[[RunSummary], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> RunSummary:
    """Predict every item of ``split`` not finished in an earlier run with the same settings; ``concurrency``
    requests in flight (None: the backend's default)."""
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

    if not todo:
        return summary
    concurrency = concurrency or llm.default_concurrency
    if cfg.mode == "score":
        llm.check_score()  # a server that cannot score stops the run here, not with every item failed
        _score(llm, cfg, todo, ranked, record, concurrency)
    elif cfg.chat:
        _generate_chat(llm, cfg, todo, ranked, record, concurrency)
    else:
        _generate_raw(llm, cfg, todo, ranked, record, concurrency)
    return summary


def _prompt(item: Record, ranked: Sequence[Example], cfg: PredictConfig) -> str:
    exs = examples_for(item, ranked, cfg.shots)
    return build_prompt(item.situation, item.patient, item.supporter, exs, definitions=cfg.definitions)


def _score(llm: LLM, cfg: PredictConfig, todo: Sequence[Record], ranked: Sequence[Example],
           record: Callable[[Record, ItemResult], None], concurrency: int) -> None:
    """Every item through ``batch_score`` (items and candidates in parallel on HTTP backends); each result is
    saved the moment it arrives."""
    priors: dict[tuple[str, ...], list[float] | Exception] = {}  # content-free distribution per example set
    keys = [tuple(e.dialogue_id for e in examples_for(it, ranked, cfg.shots)) for it in todo]
    if cfg.calibrate:
        for item, key in zip(todo, keys, strict=True):
            if key not in priors:
                try:
                    priors[key] = content_free_logprobs(llm, examples_for(item, ranked, cfg.shots), cfg.definitions)
                except Exception as exc:  # the items that need this prior fail with the reason; others go on
                    priors[key] = exc

    def arrived(i: int, out: list[float] | LLMFailure) -> None:
        prior = priors.get(keys[i]) if cfg.calibrate else None
        if isinstance(out, LLMFailure):
            result = ItemResult(PredStatus.FAILED, None, f"failure: {out.reason}"[:2000], raw_output=out.raw)
        elif isinstance(prior, Exception):
            result = ItemResult(PredStatus.FAILED, None, "calibration " + _failure_reason(prior))
        else:
            result = rank_scores(out, prior)
        record(todo[i], result)

    items = [(_prompt(it, ranked, cfg), candidates()) for it in todo]
    llm.batch_score(items, concurrency=concurrency, progress=arrived)


def _generate_raw(llm: LLM, cfg: PredictConfig, todo: Sequence[Record], ranked: Sequence[Example],
                  record: Callable[[Record, ItemResult], None], concurrency: int) -> None:
    """Base models, prompted with raw text through ``batch_complete``; saved as each answer arrives."""
    params = GenParams(max_tokens=cfg.max_tokens, temperature=0.0, seed=cfg.seed, stop=("\n",))

    def arrived(i: int, out: Any) -> None:
        if isinstance(out, LLMFailure):
            record(todo[i], ItemResult(PredStatus.FAILED, None, f"failure: {out.reason}"[:2000], raw_output=out.raw))
        else:
            record(todo[i], read_answer(out.text))

    llm.batch_complete([_prompt(it, ranked, cfg) for it in todo], params, concurrency=concurrency, progress=arrived)


def _generate_chat(llm: LLM, cfg: PredictConfig, todo: Sequence[Record], ranked: Sequence[Example],
                   record: Callable[[Record, ItemResult], None], concurrency: int) -> None:
    """Chat models through ``batch_chat`` (bounded concurrency on HTTP backends); each result is saved the
    moment it arrives, so a kill loses at most the requests in flight."""

    params = GenParams(max_tokens=cfg.max_tokens, temperature=0.0, seed=cfg.seed)
    convs = [[{"role": "user", "content": _prompt(item, ranked, cfg)}] for item in todo]

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
