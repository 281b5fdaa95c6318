"""LLM-as-a-judge on the 7 rubrics of Table 3 (paper §5.3), with the failure modes made visible.

* Answers are valid by construction where the backend can (``constrained``, the default): the answer's JSON
  schema goes with every request (llama.cpp: a GBNF grammar; servers: response_format, falling back to plain
  decoding where refused; each score records how its answer was produced under ``signature.structured``).
* Every answer is validated by ``prompts.judge.parse_judgement``; an invalid answer is retried (at temperature
  ≥ 0.7 with a new seed, since greedy decoding would repeat itself) and, when all attempts fail, stored with
  score NULL, every raw output and every reason. Never NaN, never a default.
* A malformed generation is not shown to the judge: it gets the lowest score (1) on every metric by rule
  (``rule="malformed"``), counted separately in the reports.
* Blind: a judge may not score generations of the same model (same spec, or same weights + adapter according
  to the LLM signatures) unless ``allow_self`` is set.
* ``repeats`` independent judgements per item (seed + repeat index) give the per-item spread; with
  ``weighted`` the backend's top log-probabilities at the score token give a G-Eval expected score.
* ``score_only`` (off by default): no feedback paragraph; the answer is read after its prefix ``{"score": `` from
  the probabilities of 1–5 (``LLM.score`` on the rendered chat prompt: one decode step on the embedded model
  instead of up to 160 tokens). The score is the most probable digit, ``weighted`` the G-Eval expectation.
  Needs a backend that renders its chat template locally (``LLM.render_chat``).
* Judgements are ordered metric by metric so consecutive prompts share the rubric prefix (prompt cache), and
  stored chunk by chunk: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select

from emplifai import __version__
from emplifai.errors import UserError
from emplifai.evaluate import rubrics
from emplifai.evaluate.rubrics import JUDGE_METRICS, METRICS, check_metrics
from emplifai.evaluate.sample import require_sample
from emplifai.llm import registry
from emplifai.llm.base import LLM, GenParams, LLMError, LLMFailure, schema_text
from emplifai.prompts import judge as jp
from emplifai.store.db import Store
from emplifai.store.evaluation import HUMAN_SOURCE, Generation, JudgeScore
from emplifai.store.models import Situation

#: judgements per chunk for each request in flight. A chunk is the unit of commit (a kill loses at most one) and
#: of retry; sized from the concurrency, it never caps it (the old fixed 16 did), and only its tail runs below it
CHUNK_PER_REQUEST = 8
MIN_CHUNK = 16
RETRY_TEMPERATURE = 0.7
STOP = ("}",)  # the answer is one flat JSON object: stop at its end, put the brace back before parsing


class JudgeConfig(BaseModel):
    """Everything that decides a judge run's scores (recorded with every score through prompt_version/signature)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str
    sample: str = "default"
    sources: tuple[str, ...] | None = None  # None = every source of the sample
    metrics: tuple[str, ...] = METRICS
    repeats: int = 1
    layout: str = "standard"
    lang: str = "ja"
    shots: int = 2
    weighted: bool = False
    score_only: bool = False
    retries: int = 2
    max_tokens: int = 160
    temperature: float = 0.0
    seed: int = 42
    concurrency: int | None = None  # requests in flight; None: the backend's default
    allow_self: bool = False
    retry_failed: bool = False
    replace: bool = False
    limit: int | None = None  # first N generations per source (quick runs, tests)
    constrained: bool = True  # send the answer's JSON schema (grammar / response_format); False: parse and retry

    @property
    def prompt_version(self) -> str:
        return f"{jp.PROMPT_VERSION}/{self.lang}/{self.shots}shot" + ("/score-only" if self.score_only else "")


@dataclass
class JudgeReport:
    scored: int = 0
    failed: int = 0
    by_rule: int = 0
    skipped: int = 0
    attempts: int = 0
    invalid: int = 0  # answers (attempts) that failed the parser, before retries
    structured: dict[str, int] = field(default_factory=dict)  # answers per way the schema was enforced
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Task:
    gen_id: int
    metric: str
    repeat: int
    messages: list[dict[str, str]]


def model_identity(sig: dict[str, Any]) -> tuple[Any, Any] | None:
    """What makes two signatures the same model: weights hash (or name) + adapter hash."""
    llm = sig.get("llm") or sig
    weights = llm.get("model_sha256") or llm.get("model")
    return (weights, llm.get("adapter_sha256") or llm.get("adapter")) if weights else None


def check_blind(judge_spec: str, judge_sig: dict[str, Any], gens: Sequence[Generation], allow_self: bool) -> None:
    own = model_identity(judge_sig)
    clashes = sorted({g.source for g in gens if g.source != HUMAN_SOURCE and (
        g.source == judge_spec or (g.signature or {}).get("spec") == judge_spec
        or (own is not None and model_identity(g.signature or {}) == own))})
    if clashes and not allow_self:
        raise UserError(
            f"the judge {judge_spec!r} is the model that generated source(s) {', '.join(clashes)}; a judge may not "
            "score its own generations (the paper ruled such judges out). Pass --allow-self-judge to do it anyway, "
            "or choose --source"
        )


def _generations(store: Store, cfg: JudgeConfig) -> list[tuple[Generation, Situation]]:
    with store.transaction() as s:
        sample = require_sample(s, cfg.sample)
        order = {i.situation_id: i.position for i in sample.items}
        q = select(Generation, Situation).join(Situation, Situation.id == Generation.situation_id).where(
            Generation.sample_name == cfg.sample)
        if cfg.sources is not None:
            q = q.where(Generation.source.in_(cfg.sources))
        rows = [(g, sit) for g, sit in s.execute(q)]
    if cfg.sources is not None:
        missing = set(cfg.sources) - {g.source for g, _ in rows}
        if missing:
            raise UserError(f"no generations for source(s) {', '.join(sorted(missing))} in sample {cfg.sample!r}")
    if not rows:
        raise UserError(f"sample {cfg.sample!r} has no generations yet; run `emplifai generate` first")
    rows.sort(key=lambda r: (r[0].source, order[r[0].situation_id]))
    if cfg.limit is not None:
        per: dict[str, int] = defaultdict(int)
        kept = []
        for g, sit in rows:
            if per[g.source] < cfg.limit:
                kept.append((g, sit))
                per[g.source] += 1
        rows = kept
    return rows


def _existing(store: Store, cfg: JudgeConfig, gen_ids: list[int]) -> dict[tuple[int, str, int], JudgeScore]:
    with store.transaction() as s:
        rows = s.scalars(select(JudgeScore).where(
            JudgeScore.judge == cfg.spec, JudgeScore.layout == cfg.layout, JudgeScore.metric.in_(cfg.metrics),
            JudgeScore.generation_id.in_(gen_ids))).all()
        stale = [r for r in rows if r.prompt_version != cfg.prompt_version and r.rule is None]
        if stale and not cfg.replace:
            raise UserError(
                f"{len(stale)} stored scores of this judge come from prompt version {stale[0].prompt_version!r}, "
                f"not {cfg.prompt_version!r}; pass --replace to score again (old scores are deleted)"
            )
        drop = [r.id for r in rows if (cfg.replace and r.prompt_version != cfg.prompt_version)
                or (cfg.retry_failed and r.failure is not None)]
        if drop:
            s.execute(delete(JudgeScore).where(JudgeScore.id.in_(drop)))
        return {(r.generation_id, r.metric, r.repeat): r for r in rows if r.id not in set(drop)}


def judge(store: Store, cfg: JudgeConfig, *, progress: Callable[[int], None] | None = None,
          llm: LLM | None = None,
          on_total: Callable[[int], None] | None = None) -> JudgeReport:

    check_metrics(cfg.metrics)
    if cfg.layout not in jp.LAYOUTS:
        raise UserError(f"unknown layout {cfg.layout!r}; use {', '.join(jp.LAYOUTS)}")
    if cfg.repeats < 1 or cfg.retries < 0:
        raise UserError("--repeats must be ≥ 1 and --retries ≥ 0")
    rows = _generations(store, cfg)
    model = llm or registry.load_model(cfg.spec)
    try:
        judge_sig = model.signature()
        if cfg.score_only and model.render_chat([{"role": "user", "content": "確認"}]) is None:
            raise UserError(
                f"the judge {cfg.spec!r} cannot judge in score-only mode: it reads the score from the model's "
                "probabilities after the chat prompt, and this backend does not render its chat template locally "
                "(OpenAI-compatible servers apply their own); use the default mode, with --weighted if it gives "
                "log-probabilities")
        check_blind(cfg.spec, {"llm": judge_sig}, [g for g, _ in rows], cfg.allow_self)
        done = _existing(store, cfg, [g.id for g, _ in rows])
        report = JudgeReport()
        rule_rows, tasks = [], []
        base_sig = {"judge": cfg.spec, "llm": judge_sig, "lang": cfg.lang, "shots": cfg.shots, "layout": cfg.layout,
                    "retries": cfg.retries, "weighted": cfg.weighted, "constrained": cfg.constrained,
                    "parser": jp.PARSER_VERSION, "emplifai": __version__}
        if cfg.score_only:
            base_sig |= {"score_only": True, "answer_prefix": jp.SCORE_PREFIX, "constrained": False,
                         "rule": "score = most probable answer of the metric's scale after the prefix; "
                                 "weighted = its expectation"}
        for metric in cfg.metrics:
            for r in range(cfg.repeats):
                for g, sit in rows:
                    if (g.id, metric, r) in done:
                        report.skipped += 1
                    elif g.malformed is not None:
                        rule_rows.append(JudgeScore(
                            generation_id=g.id, judge=cfg.spec, metric=metric, layout=cfg.layout, repeat=r,
                            score=rubrics.scale(metric)[0],
                            feedback=f"形式不備のため規則により最低点（{g.malformed}）", rule="malformed", attempts=0,
                            signature={**base_sig, "rule": "malformed generation gets the lowest score (paper §5.1)"},
                            prompt_version=cfg.prompt_version))
                    else:
                        msgs = jp.messages(metric, emotion=sit.emotion, situation=sit.text, patient=g.patient or "",
                                           supporter=g.supporter or "", layout=cfg.layout, lang=cfg.lang,
                                           shots=cfg.shots, examples=rubrics.BY_KEY[metric].examples,  # type: ignore[arg-type]
                                           score_only=cfg.score_only)
                        tasks.append(_Task(g.id, metric, r, msgs))
        if on_total is not None:
            on_total(len(tasks) + len(rule_rows))
        if rule_rows:
            with store.transaction() as s:
                s.add_all(rule_rows)
            report.by_rule += len(rule_rows)
            if progress is not None:
                progress(len(rule_rows))
        cfg = cfg.model_copy(update={"concurrency": cfg.concurrency or model.default_concurrency})
        size = max(MIN_CHUNK, CHUNK_PER_REQUEST * (cfg.concurrency or 1))
        run = _score_only_chunk if cfg.score_only else _run_chunk
        for c0 in range(0, len(tasks), size):
            chunk = tasks[c0 : c0 + size]
            out = run(model, cfg, chunk, base_sig, report)
            with store.transaction() as s:
                s.add_all(out)
            if progress is not None:
                progress(len(chunk))
        return report
    finally:
        if llm is None:
            model.close()


def answer_params(cfg: JudgeConfig, metric: str, repeat: int, attempt: int) -> GenParams:
    """Decoding of one judgement. Constrained answers need no stop string: the grammar ends at the closing brace
    (a stop at "}" would also cut a feedback that contains one)."""
    temperature = cfg.temperature if attempt == 0 else max(cfg.temperature, RETRY_TEMPERATURE)
    schema = schema_text(jp.answer_schema(rubrics.scale(metric))) if cfg.constrained else None
    return GenParams(max_tokens=cfg.max_tokens, temperature=temperature, seed=cfg.seed + repeat + 1000 * attempt,
                     stop=() if schema else STOP, logprobs=5 if cfg.weighted else None, json_schema=schema)


def _refused_forms(model: Any) -> list[str]:
    """The response_format forms the server refused so far (OpenAI-compatible backends; cached or not)."""
    inner = getattr(model, "inner", model)
    return [form for form, _ in getattr(inner, "schema_refusals", [])]


def _run_chunk(model: Any, cfg: JudgeConfig, chunk: list[_Task], base_sig: dict[str, Any],
               report: JudgeReport) -> list[JudgeScore]:

    raws: dict[int, list[str]] = defaultdict(list)
    reasons: dict[int, list[str]] = defaultdict(list)
    results: dict[int, JudgeScore] = {}
    pending = list(range(len(chunk)))
    for attempt in range(cfg.retries + 1):
        if not pending:
            break
        # the params depend on the repeat index (seed) and the metric (the answer's scale), so batch per both
        groups: dict[tuple[int, str], list[int]] = defaultdict(list)
        for i in pending:
            groups[(chunk[i].repeat, chunk[i].metric)].append(i)
        still = []
        for (repeat, metric), idx in groups.items():
            params = answer_params(cfg, metric, repeat, attempt)
            answers = model.batch_chat([chunk[i].messages for i in idx], params, concurrency=cfg.concurrency)
            report.attempts += len(idx)
            for i, ans in zip(idx, answers, strict=True):
                if isinstance(ans, LLMFailure):
                    raws[i].append(ans.raw or "")
                    reasons[i].append(f"attempt {attempt + 1}: backend: {ans.reason}")
                    still.append(i)
                    continue
                text = ans.text
                parsed = parse_answer(text, metric)
                raws[i].append(text)
                how = ans.structured or "none"  # "none": the schema was not enforced (plain decoding)
                report.structured[how] = report.structured.get(how, 0) + 1
                if not parsed.ok:
                    report.invalid += 1
                    reasons[i].append(f"attempt {attempt + 1}: {parsed.error}")
                    still.append(i)
                    continue
                t = chunk[i]
                results[i] = JudgeScore(
                    generation_id=t.gen_id, judge=cfg.spec, metric=t.metric, layout=cfg.layout, repeat=t.repeat,
                    score=parsed.score, feedback=parsed.feedback, raw=_join(raws[i]), failure=None,
                    weighted=jp.weighted_score(ans.token_logprobs, rubrics.scale(metric)) if cfg.weighted else None,
                    attempts=attempt + 1,
                    signature={**base_sig, "params": params.model_dump(mode="json"),
                               "structured": ans.structured, "schema_refused": _refused_forms(model) or None,
                               "earlier_failures": reasons[i] or None},
                    prompt_version=cfg.prompt_version)
                report.scored += 1
        pending = still
    for i in pending:
        t = chunk[i]
        last = answer_params(cfg, t.metric, t.repeat, cfg.retries)
        reason = "; ".join(reasons[i])
        results[i] = JudgeScore(
            generation_id=t.gen_id, judge=cfg.spec, metric=t.metric, layout=cfg.layout, repeat=t.repeat, score=None,
            weighted=None, feedback=None, raw=_join(raws[i]), failure=reason, attempts=cfg.retries + 1,
            signature={**base_sig, "params": last.model_dump(mode="json"),
                       "schema_refused": _refused_forms(model) or None},
            prompt_version=cfg.prompt_version)
        report.failed += 1
        report.failures.append(f"generation {t.gen_id} {t.metric} #{t.repeat}: {reason}")
    return [results[i] for i in range(len(chunk))]


def parse_answer(text: str, metric: str) -> jp.Judgement:
    """Parse one raw answer on the metric's scale. An answer cut at the stop string "}" gets its brace back."""
    fixed = text if text.rstrip().endswith("}") else text + "}"
    return jp.parse_judgement(fixed, rubrics.scale(metric))


def _score_only_chunk(model: LLM, cfg: JudgeConfig, chunk: list[_Task], base_sig: dict[str, Any],
                      report: JudgeReport) -> list[JudgeScore]:
    """One score() call per judgement: every answer of the metric's scale after the answer prefix, no text
    generated, no retries (the numbers are deterministic)."""
    out = []
    for t in chunk:
        row = JudgeScore(generation_id=t.gen_id, judge=cfg.spec, metric=t.metric, layout=cfg.layout, repeat=t.repeat,
                         attempts=1, signature=base_sig, prompt_version=cfg.prompt_version, feedback=None)
        report.attempts += 1
        scale = rubrics.scale(t.metric)
        digits = jp.score_digits(scale)
        try:
            prompt = (model.render_chat(t.messages) or "") + jp.SCORE_PREFIX
            logps = model.score(prompt, list(digits))
        except LLMError as exc:
            logps, row.failure = None, f"backend: {exc}"
        read = jp.expected_score(logps, scale) if logps is not None else None
        if read is None:
            row.failure = row.failure or f"unusable log-probabilities for {digits[0]}–{digits[-1]}: {logps!r}"[:500]
            row.raw = repr(logps)  # may hold NaN/inf: kept as text, never as JSON
            report.failed += 1
            report.failures.append(f"generation {t.gen_id} {t.metric} #{t.repeat}: {row.failure}")
        else:
            row.score, row.weighted, probs = read
            row.raw = json.dumps({"answer_prefix": jp.SCORE_PREFIX, "logprobs": dict(zip(digits, logps,
                                 strict=True)), "p": dict(zip(digits, probs, strict=True))},
                                 ensure_ascii=False)
            report.scored += 1
        out.append(row)
    return out


def _join(raws: list[str]) -> str:
    if len(raws) == 1:
        return raws[0]
    return "".join(f"----- attempt {k} -----\n{r}\n" for k, r in enumerate(raws, 1))


# ------------------------------------------------------------------------------------------ per-item views
def item_scores(store: Store, judge_spec: str, sample: str, *, layout: str = "standard", weighted: bool = False,
                sources: Sequence[str] | None = None) -> dict[tuple[int, str], list[float]]:
    """(generation id, metric) -> the scores of every repeat (failures left out; rule scores included)."""
    with store.transaction() as s:
        q = select(JudgeScore).join(Generation, Generation.id == JudgeScore.generation_id).where(
            JudgeScore.judge == judge_spec, JudgeScore.layout == layout, Generation.sample_name == sample)
        if sources is not None:
            q = q.where(Generation.source.in_(sources))
        out: dict[tuple[int, str], list[float]] = defaultdict(list)
        for r in s.scalars(q):
            value = r.weighted if weighted and r.weighted is not None else r.score
            if weighted and r.weighted is None and r.rule is None:
                continue
            if value is not None:
                out[(r.generation_id, r.metric)].append(float(value))
        return dict(out)


def spread(scores: dict[tuple[int, str], list[float]]) -> dict[str, dict[str, float | int | None]]:
    """Per metric: how much repeated judgements of the same item disagree (mean and max per-item std, range)."""
    per: dict[str, list[list[float]]] = defaultdict(list)
    for (_gid, metric), vals in scores.items():
        if len(vals) > 1:
            per[metric].append(vals)
    out: dict[str, dict[str, float | int | None]] = {}
    for metric in JUDGE_METRICS:
        items = per.get(metric, [])
        if not items:
            continue
        sds = [statistics.pstdev(v) for v in items]
        out[metric] = {"items": len(items), "mean_sd": round(statistics.fmean(sds), 4), "max_sd": round(max(sds), 4),
                       "max_range": max(max(v) - min(v) for v in items),
                       "share_disagreeing": round(sum(sd > 0 for sd in sds) / len(sds), 4)}
    return out
