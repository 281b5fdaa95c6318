"""Before/after comparison of two model specs (the paper's fine-tuning experiment, section 5.2).

Both models go through the same evaluation on held-out data:

* generation on a seeded sample of *test-split* situations (never seen in fine-tuning), with the strict
  format parser: **format adherence** is the share of outputs that are exactly ``患者：…\\n支援者：…``;
* the LLM judge on those generations (malformed output gets the lowest score by rule, as in the paper);
* taxonomy validation: label prediction on test-split dialogues (top-1 / top-3 accuracy against the gold
  emotion, unparsed answers counted).

Everything is stored through the evaluation and prediction stages (``generate``, ``judge``, ``predict``), so
a rerun resumes and skips finished items; the table is written as ``compare.md`` and ``compare.json`` with
what produced every number (specs, LLM signatures, judge, sample, prompt versions, library versions).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emplifai import __version__
from emplifai.errors import UserError
from emplifai.evaluate.generate import generate
from emplifai.evaluate.judge import JudgeConfig, item_scores
from emplifai.evaluate.judge import judge as run_judge
from emplifai.evaluate.rubrics import METRICS, check_metrics, scale
from emplifai.evaluate.sample import make_sample, population
from emplifai.formatting import delta, num, pct, to_json
from emplifai.llm import registry
from emplifai.predict.runs import PredictConfig, load_predictions, predict_split
from emplifai.prompts.generation import PROMPT_VERSION
from emplifai.store import repo
from emplifai.store.db import Store, open_store
from emplifai.store.evaluation import Generation

COMPARE_VERSION = "compare-v1"


@dataclass
class CompareResult:
    table: dict[str, Any]
    markdown: str
    md_path: Path
    json_path: Path


def ensure_test_sample(store: Store, n: int, seed: int) -> tuple[str, int]:
    """A seeded sample of test-split situations for generation (created once, reused on rerun)."""
    with store.open_session() as s:
        manifest = repo.require_manifest(s)
        available = len(population(s, "test"))
    if not available:
        raise UserError("the test split has no live situations: nothing to compare on")
    n_used = min(n, available)
    name = f"cmp-m{manifest.id}-n{n_used}-s{seed}"
    make_sample(store, n=n_used, seed=seed, name=name, split="test",
                meta={"manifest_id": manifest.id, "by": COMPARE_VERSION})
    return name, n_used


def _generation_stats(store: Store, sample: str, source: str) -> dict[str, Any]:
    from sqlalchemy import select

    with store.transaction() as s:
        gens = list(s.scalars(select(Generation).where(Generation.sample_name == sample, Generation.source == source)))
        sig = gens[0].signature if gens else None
        reasons: dict[str, int] = {}
        for g in gens:
            if g.malformed:
                key = g.malformed.split(";")[0][:60]
                reasons[key] = reasons.get(key, 0) + 1
        return {
            "n": len(gens),
            "format_ok": sum(g.malformed is None for g in gens),
            "format_adherence": (sum(g.malformed is None for g in gens) / len(gens)) if gens else None,
            "non_japanese": sum(bool(g.non_japanese) for g in gens),
            "malformed_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            "examples": [g.raw[:300] for g in gens[:3]],
            "signature": sig,
        }


def _judge_means(store: Store, judge_spec: str, sample: str, source: str, metrics: tuple[str, ...]) -> dict[str, Any]:

    scores = item_scores(store, judge_spec, sample, sources=[source])
    out: dict[str, Any] = {}
    for m in metrics:
        vals = [statistics.fmean(v) for (_gid, metric), v in scores.items() if metric == m and v]
        out[m] = {"mean": statistics.fmean(vals) if vals else None, "n": len(vals)}
    return out


def _taxonomy(store: Store, spec: str, limit: int | None) -> dict[str, Any]:

    cfg = PredictConfig()
    with registry.load_model(spec) as llm:
        summary = predict_split(store, llm, spec, cfg, split="test", limit=limit)
        sig = llm.signature()
    rows = load_predictions(store, summary.run_id)
    done = [r for r in rows if r.predicted is not None]
    return {
        "run_id": summary.run_id,
        "n": len(rows),
        "top1": (sum(r.predicted == r.gold for r in done) / len(rows)) if rows else None,
        "top3": (sum(bool(r.top3) and r.gold in r.top3 for r in done) / len(rows)) if rows else None,
        "unparsed_or_failed": len(rows) - len(done),
        "config": cfg.model_dump(),
        "signature": sig,
    }


def run(*, before: str, after: str, out: str | os.PathLike[str] = "compare", n: int = 100, seed: int = 42,
        judge: str | None = None, metrics: tuple[str, ...] | None = None, predict_limit: int | None = None,
        max_tokens: int = 160, db: str | None = None) -> CompareResult:
    """Generate, judge and validate the taxonomy with both specs; write compare.md and compare.json."""

    if before == after:
        raise UserError("--before and --after are the same spec")
    metrics = tuple(metrics or METRICS)
    check_metrics(metrics, what="judge metric")
    for spec in (before, after):  # a bad spec or a missing adapter fails before any work
        registry.load_model(spec).close()
    judge_spec = judge or before
    out = Path(out)
    store = open_store(db)
    try:
        sample, n_used = ensure_test_sample(store, n, seed)
        gen_reports = {}
        for spec in (before, after):
            rep = generate(store, spec=spec, sample_name=sample, max_tokens=max_tokens, seed=seed)
            gen_reports[spec] = {"added": rep.added, "skipped": rep.skipped, "backend_failures": rep.backend_failures}
        jcfg = JudgeConfig(spec=judge_spec, sample=sample, sources=(before, after), metrics=metrics, seed=seed,
                           allow_self=True)  # offline the embedded model is the only judge; marked in the table
        jrep = run_judge(store, jcfg)
        cols = {}
        for role, spec in (("before", before), ("after", after)):
            cols[role] = {
                "spec": spec,
                "generation": _generation_stats(store, sample, spec),
                "judge": _judge_means(store, judge_spec, sample, spec, metrics),
                "taxonomy": _taxonomy(store, spec, predict_limit),
            }
        table = {
            "compare_version": COMPARE_VERSION,
            "sample": {"name": sample, "n": n_used, "n_requested": n, "seed": seed, "split": "test"},
            "judge": {"spec": judge_spec, "metrics": list(metrics), "self_judging": judge_spec in (before, after),
                      "scored": jrep.scored, "failed": jrep.failed, "by_rule": jrep.by_rule,
                      "prompt_version": jcfg.prompt_version},
            "generation_prompt_version": PROMPT_VERSION,
            "generation_runs": gen_reports,
            "columns": cols,
            "versions": {"emplifai": __version__},
        }
    finally:
        store.dispose()
    md = render_markdown(table)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / "compare.md", out / "compare.json"
    for path, text in ((md_path, md), (json_path, to_json(table))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return CompareResult(table, md, md_path, json_path)


def render_markdown(table: dict[str, Any]) -> str:
    b, a = table["columns"]["before"], table["columns"]["after"]
    rows: list[tuple[str, float | None, float | None, bool]] = [
        ("format adherence (患者：/支援者： exactly)", b["generation"]["format_adherence"],
         a["generation"]["format_adherence"], True),
        ("non-Japanese outputs", _share(b["generation"], "non_japanese"), _share(a["generation"], "non_japanese"),
         True),
    ]
    for m in table["judge"]["metrics"]:
        lo, hi = scale(m)
        rows.append((f"judge: {m} ({lo}–{hi})", b["judge"][m]["mean"], a["judge"][m]["mean"], False))
    rows.append(("taxonomy validation top-1 accuracy", b["taxonomy"]["top1"], a["taxonomy"]["top1"], True))
    rows.append(("taxonomy validation top-3 accuracy", b["taxonomy"]["top3"], a["taxonomy"]["top3"], True))
    s = table["sample"]
    lines = [
        "# Before / after fine-tuning",
        "",
        f"- before: `{b['spec']}`",
        f"- after: `{a['spec']}`",
        f"- generation: {s['n']} test-split situations (seed {s['seed']}, sample `{s['name']}`), "
        f"prompt {table['generation_prompt_version']}",
        f"- judge: `{table['judge']['spec']}`" + (" (self-judging: the judge is one of the compared models)"
                                                  if table["judge"]["self_judging"] else "")
        + "; malformed generations get the lowest score by rule",
        f"- taxonomy validation: {b['taxonomy']['n']} test-split dialogues, label scoring",
        "",
        "| measure | before | after | Δ |",
        "|---|---:|---:|---:|",
    ]
    for label, x, y, is_share in rows:
        show = pct if is_share else num
        lines.append(f"| {label} | {show(x)} | {show(y)} | {delta(x, y, 1 if is_share else 2, as_points=is_share)} |")
    return "\n".join(lines) + "\n"


def _share(gen: dict[str, Any], key: str) -> float | None:
    return gen[key] / gen["n"] if gen["n"] else None
