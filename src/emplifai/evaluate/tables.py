"""Tables 4 and 5, the judge bias report and per-metric plots, from stored results only.

Table 4: judge mean per metric per source (malformed generations at the rule score 1, as in the paper) plus the
mean over well-formed generations only, the malformed / non-Japanese / judge-failure counts.
Table 5: judge vs human means, Pearson r (p), Spearman rho, MAD with bootstrap CIs, and the raters' alpha/ICC.
Every JSON carries its provenance: judge spec + signature, prompt versions, sample, library versions.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import select

from emplifai import __version__
from emplifai.errors import UserError
from emplifai.evaluate import rubrics
from emplifai.evaluate.agree import pair_stats
from emplifai.evaluate.judge import item_scores, spread
from emplifai.evaluate.ratings import human_scores, left_out_note, summary
from emplifai.evaluate.rubrics import METRICS
from emplifai.evaluate.sample import require_sample
from emplifai.formatting import MISSING, num, pvalue, to_json
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"emplifai": __version__}
    for dist in ("scipy", "numpy", "krippendorff", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _provenance(store: Store, judge: str, sample: str) -> dict[str, Any]:
    with store.transaction() as s:
        smp = require_sample(s, sample)
        row = s.scalars(select(JudgeScore).where(JudgeScore.judge == judge, JudgeScore.rule.is_(None)).limit(1)).first()
        versions = sorted(set(s.scalars(select(JudgeScore.prompt_version).where(JudgeScore.judge == judge))))
        return {"judge": judge, "judge_signature": row.signature if row else None, "judge_prompt_versions": versions,
                "sample": {"name": sample, "seed": smp.seed, "n": smp.n, **smp.meta}, "versions": _versions()}


def _sources(store: Store, sample: str) -> list[str]:
    with store.transaction() as s:
        return sorted(set(s.scalars(select(Generation.source).where(Generation.sample_name == sample))))


def _mean(v: list[float]) -> float | None:
    return round(statistics.fmean(v), 4) if v else None


def table4(store: Store, judge: str, sample: str = "default", weighted: bool = False,
           metrics: tuple[str, ...] = METRICS) -> dict[str, Any]:
    """Table 4 on one rubric set (``metrics``: the paper's 7 by default, or EPITOME's 3 mechanisms)."""
    rows: dict[str, Any] = {}
    with store.transaction() as s:
        gens = {g.id: g for g in s.scalars(select(Generation).where(Generation.sample_name == sample))}
        failed_rows: dict[tuple[str, str], int] = defaultdict(int)  # every failed attempt, repeats included
        failed: set[tuple[int, str]] = set()  # (item, metric) with at least one failed judgement
        judged: set[tuple[int, str]] = set()  # (item, metric) with a score from the judge itself (not the rule)
        for r in s.scalars(select(JudgeScore).where(JudgeScore.judge == judge, JudgeScore.layout == "standard")):
            if r.generation_id not in gens:
                continue
            key = (r.generation_id, r.metric)
            if r.failure is not None:
                failed_rows[(gens[r.generation_id].source, r.metric)] += 1
                failed.add(key)
            elif r.rule is None and r.score is not None:
                judged.add(key)
    scores = {k: v for k, v in item_scores(store, judge, sample, weighted=weighted).items() if k[1] in metrics}
    if not scores:
        raise UserError(f"no scores of judge {judge!r} on {', '.join(metrics)} in sample {sample!r}; "
                        "run `emplifai judge` first")
    for src in _sources(store, sample):
        ids = [g.id for g in gens.values() if g.source == src]
        malformed = {g.id for g in gens.values() if g.source == src and g.malformed is not None}
        entry: dict[str, Any] = {"n": len(ids), "malformed": len(malformed),
                                 "non_japanese": sum(gens[i].non_japanese for i in ids), "metrics": {}}
        for m in metrics:
            per_item = {i: statistics.fmean(scores[(i, m)]) for i in ids if (i, m) in scores}
            unscored = [i for i in ids if (i, m) in failed and (i, m) not in scores]
            if not per_item and not unscored:
                continue
            n_judged = sum(1 for i in per_item if (i, m) in judged)
            entry["metrics"][m] = {
                "mean": _mean(list(per_item.values())),
                "mean_wellformed": _mean([v for i, v in per_item.items() if i not in malformed]),
                "scored": len(per_item), "failures": len(unscored),
                "judged": n_judged, "rule_scored": len(per_item) - n_judged,
                "failed_attempts": failed_rows.get((src, m), 0),
            }
        if entry["metrics"]:
            rows[src] = entry
    return {"table": "4", "weighted": weighted, "metrics": list(metrics),
            "scales": {m: list(rubrics.scale(m)) for m in metrics}, "rows": rows, "spread": spread(scores),
            "provenance": _provenance(store, judge, sample)}


def table5(store: Store, judge: str, source: str, sample: str = "default", *, weighted: bool = False,
           n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    judged = item_scores(store, judge, sample, weighted=weighted, sources=[source])
    humans = human_scores(store, sample, source)
    if not humans:
        raise UserError(f"no human ratings for source {source!r} in sample {sample!r}; run `emplifai ratings import`")
    raters = summary(store, sample, source)
    metrics: dict[str, Any] = {}
    for m in METRICS:
        pairs = [(statistics.fmean(judged[(gid, mm)]), statistics.fmean(d.values()))
                 for (gid, mm), d in sorted(humans.items()) if mm == m and (gid, mm) in judged]
        if not pairs:
            continue
        st = pair_stats([p[0] for p in pairs], [p[1] for p in pairs], n_boot=n_boot, seed=seed)
        r = raters["metrics"].get(m, {})
        metrics[m] = {**st, "alpha_ordinal": r.get("alpha_ordinal"), "icc1": r.get("icc1"), "icc1k": r.get("icc1k"),
                      "icc_k": r.get("icc_k"), "icc_items": r.get("icc_items"),
                      "icc_items_excluded": r.get("icc_items_excluded"), "icc_note": r.get("icc_note")}
    if not metrics:
        raise UserError("no dialogue has both a judge score and human ratings")
    return {"table": "5", "source": source, "weighted": weighted, "raters": raters["raters"], "metrics": metrics,
            "human_ratings_left_out": raters["left_out"], "provenance": _provenance(store, judge, sample)}


def bias(store: Store, judge: str, sample: str = "default", layout: str = "blocks") -> dict[str, Any]:
    """Length bias (score vs supporter-reply length) and layout bias (score shift under another layout)."""
    with store.transaction() as s:
        gens = {g.id: g for g in s.scalars(select(Generation).where(Generation.sample_name == sample,
                                                                      Generation.malformed.is_(None)))}
    std = item_scores(store, judge, sample)
    alt = item_scores(store, judge, sample, layout=layout)
    out: dict[str, Any] = {"layout": layout, "length": {}, "layout_shift": {}}
    for m in METRICS:
        pts = [(len(gens[g].supporter or ""), statistics.fmean(v))
               for (g, mm), v in std.items() if mm == m and g in gens]
        if pts:
            st = pair_stats([p[1] for p in pts], [float(p[0]) for p in pts], n_boot=0)
            out["length"][m] = {"n": st["n"], "pearson_r": st["pearson_r"], "pearson_p": st["pearson_p"],
                                "spearman_rho": st["spearman_rho"], "spearman_p": st["spearman_p"], "note": st["note"]}
        both = [(statistics.fmean(std[k]), statistics.fmean(alt[k])) for k in std if k[1] == m and k in alt
                and k[0] in gens]
        if both:
            diffs = [b - a for a, b in both]
            out["layout_shift"][m] = {"n": len(both), "mean_shift": _mean(diffs),
                                      "share_changed": round(sum(d != 0 for d in diffs) / len(diffs), 4),
                                      "mean_abs_shift": _mean([abs(d) for d in diffs])}
    out["provenance"] = _provenance(store, judge, sample)
    return out


# ---------------------------------------------------------------------------------------------- markdown
def _table4_cell(x: dict[str, Any] | None) -> str:
    """The mean with the n it rests on; items left unscored by failures; a mean of rule scores only says so."""
    if x is None or x["mean"] is None:
        return MISSING + (f" ({x['failures']} failed)" if x and x["failures"] else "")
    notes = [f"n={x['scored']}"]
    if x["judged"] == 0:
        notes.append("rule scores only")
    if x["failures"]:
        notes.append(f"{x['failures']} failed")
    return f"{num(x['mean'])} ({', '.join(notes)})"


def _icc(v: dict[str, Any]) -> str:
    if v.get("icc_k") is None:
        return num(v.get("icc1k"), 3)
    left_out = f", {v['icc_items_excluded']} incomplete left out" if v.get("icc_items_excluded") else ""
    return f"{num(v.get('icc1k'), 3)} (k={v['icc_k']}, {v['icc_items']} items{left_out})"


def _ci(v: dict[str, Any], key: str) -> str:
    ci = (v.get("ci95") or {}).get(key)
    return "[{:.2f}, {:.2f}]".format(*ci) if ci else ""


def _r_with_p(v: dict[str, Any]) -> str:
    return MISSING if v["pearson_r"] is None else f"{v['pearson_r']:.3f} (p {pvalue(v['pearson_p'])})"


def _scale_label(m: str) -> str:
    lo, hi = rubrics.scale(m)
    return f"{rubrics.label(m)} ({lo}–{hi})"


def md4(t: dict[str, Any]) -> str:
    metrics = t.get("metrics", METRICS)
    epitome = all(m in rubrics.EPITOME for m in metrics)
    head = ("| 生成元 Source (n) | " + " | ".join(_scale_label(m) for m in metrics)
            + " | 形式不備 Malformed | 非日本語 |")
    title = "# Table 4 (EPITOME mechanisms): LLM-as-a-Judge" if epitome else "# Table 4: LLM-as-a-Judge"
    lines = [title, "", f"Judge: `{t['provenance']['judge']}`"
             + (" (G-Eval weighted)" if t["weighted"] else ""), "", head, "|" + "---|" * (len(metrics) + 3)]
    for src, e in t["rows"].items():
        cells = []
        for m in metrics:
            cells.append(_table4_cell(e["metrics"].get(m)))
        lines.append(f"| {src} ({e['n']}) | " + " | ".join(cells) + f" | {e['malformed']} | {e['non_japanese']} |")
    lines += ["", "Each cell: the mean over the items that have a score (n), malformed generations at the lowest score "
              "by rule (paper §5.1); \"rule scores only\" marks a mean no judge answer contributed to; \"failed\" "
              "counts items the judge never scored (every attempt failed; raw outputs stored). Means over well-formed "
              "generations only and the failed attempts (repeats included) are in table4.json."]
    if t["spread"]:
        lines += ["", "Repeat spread (mean per-item SD): " + ", ".join(
            f"{rubrics.label(m)} {v['mean_sd']:.2f}" for m, v in t["spread"].items())]
    return "\n".join(lines) + "\n"


def md5(t: dict[str, Any]) -> str:
    ms = [m for m in METRICS if m in t["metrics"]]
    rows = {
        "LLM judge mean": [num(t["metrics"][m]["judge_mean"]) for m in ms],
        "Human mean": [num(t["metrics"][m]["human_mean"]) for m in ms],
        "Pearson r (p)": [_r_with_p(t["metrics"][m]) for m in ms],
        "Pearson r 95% CI": [_ci(t["metrics"][m], "pearson_r") for m in ms],
        "Spearman ρ [95% CI]": [f"{num(t['metrics'][m]['spearman_rho'], 3)} {_ci(t['metrics'][m], 'spearman_rho')}"
                                for m in ms],
        "MAD [95% CI]": [f"{num(t['metrics'][m]['mad'], 3)} {_ci(t['metrics'][m], 'mad')}" for m in ms],
        "Krippendorff α (raters)": [num(t["metrics"][m]["alpha_ordinal"], 3) for m in ms],
        "ICC(1,k) (raters; k, items)": [_icc(t["metrics"][m]) for m in ms],
    }
    lines = ["# Table 5: judge vs human raters", "", f"Judge: `{t['provenance']['judge']}`; source: `{t['source']}`; "
             f"raters: {t['raters']}", "", "| | " + " | ".join(rubrics.label(m) for m in ms) + " |",
             "|---|" + "---|" * len(ms)]
    lines += [f"| {k} | " + " | ".join(v) + " |" for k, v in rows.items()]
    notes = [f"- {rubrics.label(m)}: {t['metrics'][m]['note']}" for m in ms if t["metrics"][m]["note"]]
    boot = next((t["metrics"][m].get("bootstrap") for m in ms if t["metrics"][m].get("bootstrap")), None)
    if boot:
        undefined = {rubrics.label(m): (t["metrics"][m].get("bootstrap") or {}).get("undefined_correlation_resamples")
                     for m in ms}
        notes.append(f"- 95% CIs: {boot['method']}, {boot['resamples']} resamples (seed {boot['seed']}); resamples "
                     "without a defined correlation (constant on one side): "
                     + ", ".join(f"{k} {v}" for k, v in undefined.items() if v is not None))
    notes.append("- p-values: two-sided (scipy.stats.pearsonr; spearmanr with its t approximation)")
    if lo := left_out_note(t.get("human_ratings_left_out")):
        notes.append(f"- {lo}")
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def md_bias(b: dict[str, Any]) -> str:
    lines = ["# Judge bias report", "", "## Reply length (characters of the supporter turn) vs score", "",
             "| metric | n | Pearson r (p) | Spearman ρ | note |", "|---|---|---|---|---|"]
    for m, v in b["length"].items():
        r = _r_with_p(v)
        lines.append(f"| {rubrics.label(m)} | {v['n']} | {r} | {num(v['spearman_rho'], 3)} | {v['note'] or ''} |")
    lines += ["", f"## Layout shift ({b['layout']} − standard)", "",
              "| metric | n | mean shift | mean |shift| | share changed |", "|---|---|---|---|---|"]
    for m, v in b["layout_shift"].items():
        lines.append(f"| {rubrics.label(m)} | {v['n']} | {num(v['mean_shift'])} | {num(v['mean_abs_shift'])} | "
                     f"{v['share_changed']:.0%} |")
    if not b["layout_shift"]:
        lines.append(f"(no scores under layout {b['layout']!r}: run `emplifai judge --layout {b['layout']}`)")
    return "\n".join(lines) + "\n"


def write(out: Path, name: str, data: dict[str, Any], markdown: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(to_json(data), encoding="utf-8")
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    return [out / f"{name}.json", out / f"{name}.md"]


# ------------------------------------------------------------------------------------------------- plots
def plots(store: Store, judge: str, out: Path, sample: str = "default", human_source: str | None = None) -> list[Path]:
    """Per metric one PNG: score distribution per source (left) and judge vs human scatter (right, if rated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib_fontja  # noqa: F401  (sets a Japanese font family: labels render, no tofu boxes)
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    with store.transaction() as s:
        src_of = dict(s.execute(select(Generation.id, Generation.source).where(
            Generation.sample_name == sample)).all())
    scores = item_scores(store, judge, sample)
    humans = human_scores(store, sample, human_source) if human_source else {}
    rng = np.random.default_rng(0)
    written = []
    for m in METRICS:
        by_src: dict[str, list[float]] = defaultdict(list)
        for (gid, mm), v in scores.items():
            if mm == m:
                by_src[src_of[gid]].append(statistics.fmean(v))
        if not by_src:
            continue
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        bins = np.arange(0.75, 5.5, 0.5)
        for src, vals in sorted(by_src.items()):
            a1.hist(vals, bins=bins, alpha=0.5, label=f"{src[:30]} (n={len(vals)})")
        a1.set_title(f"{rubrics.label(m)}：生成元ごとのスコア分布")
        a1.set_xlabel("審査LLMのスコア（1〜5）")
        a1.set_ylabel("対話数")
        a1.legend(fontsize=7)
        pairs = [(statistics.fmean(scores[(gid, m)]), statistics.fmean(d.values()))
                 for (gid, mm), d in humans.items() if mm == m and (gid, m) in scores]
        if pairs:
            x = np.array([p[0] for p in pairs]) + rng.uniform(-0.08, 0.08, len(pairs))
            y = np.array([p[1] for p in pairs]) + rng.uniform(-0.08, 0.08, len(pairs))
            a2.scatter(x, y, s=14, alpha=0.7)
            a2.plot([1, 5], [1, 5], color="grey", lw=0.8, ls="--")
            a2.set_title(f"{rubrics.label(m)}：審査LLM と 人間評価者（n={len(pairs)}）")
        else:
            a2.text(0.5, 0.5, "人間の評価なし", ha="center", va="center", transform=a2.transAxes)
            a2.set_title(f"{rubrics.label(m)}：審査LLM と 人間評価者")
        a2.set_xlim(0.5, 5.5)
        a2.set_ylim(0.5, 5.5)
        a2.set_xlabel("審査LLMのスコア")
        a2.set_ylabel("人間評価者の平均スコア")
        fig.tight_layout()
        path = out / f"plot_{m}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
