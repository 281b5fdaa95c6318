"""A judge panel: several judges score the same generations; Table 4 per judge and for the panel, and how
well the judges agree per metric (ordinal Krippendorff's α, judges as coders, generations as units).

* The panel's mean is the mean of the judges' Table-4 means (each judge counts once, whatever its n).
* Agreement uses the judges' own answers only: rule scores (malformed generations at the lowest score) are
  the same for every judge by construction and would inflate α. A judge's value for an item is its mean over
  repeats rounded to the scale (ordinal α needs values of the scale).
* When α is undefined (one judge, no item scored by two judges, one value used throughout) the entry says
  why instead of carrying NaN.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select

from emplifai.errors import UserError
from emplifai.evaluate import rubrics
from emplifai.evaluate.tables import md4, table4
from emplifai.formatting import MISSING, num
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore


def ordinal_alpha(reliability: Sequence[Sequence[float | None]], scale: tuple[int, int]
                  ) -> tuple[float | None, str | None]:
    """(α, None) or (None, the reason it is undefined). Rows are judges, columns items, None = not scored."""
    import krippendorff

    if len(reliability) < 2:
        return None, "fewer than two judges"
    data = np.asarray([[np.nan if v is None else float(v) for v in row] for row in reliability], dtype=float)
    paired = np.sum(~np.isnan(data), axis=0) >= 2
    if not paired.any():
        return None, "no item was scored by two or more judges"
    values = np.unique(data[:, paired][~np.isnan(data[:, paired])])
    if len(values) < 2:
        return None, f"every judge gave every item the same score ({num(float(values[0]), 0)}): no variation"
    domain = list(range(scale[0], scale[1] + 1))
    a = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=domain)
    if not np.isfinite(a):
        return None, "α is undefined for these scores (no disagreement is possible)"
    return round(float(a), 4), None


def _judge_values(store: Store, judges: Sequence[str], sample: str, metrics: Sequence[str]
                  ) -> dict[str, dict[tuple[int, str], float]]:
    out: dict[str, dict[tuple[int, str], list[int]]] = {j: defaultdict(list) for j in judges}
    with store.transaction() as s:
        q = select(JudgeScore).join(Generation, Generation.id == JudgeScore.generation_id).where(
            JudgeScore.judge.in_(list(judges)), JudgeScore.layout == "standard", JudgeScore.rule.is_(None),
            JudgeScore.score.is_not(None), JudgeScore.metric.in_(list(metrics)), Generation.sample_name == sample)
        for r in s.scalars(q):
            out[r.judge][(r.generation_id, r.metric)].append(int(r.score))  # type: ignore[arg-type]
    # round half up: the ordinal scale has no half points
    return {j: {k: float(int(statistics.fmean(v) + 0.5)) for k, v in d.items()} for j, d in out.items()}


def agreement(store: Store, judges: Sequence[str], sample: str, metrics: Sequence[str]) -> dict[str, Any]:
    values = _judge_values(store, judges, sample, metrics)
    out: dict[str, Any] = {}
    for m in metrics:
        items = sorted({gid for d in values.values() for (gid, mm) in d if mm == m})
        matrix = [[values[j].get((gid, m)) for gid in items] for j in judges]
        alpha, reason = ordinal_alpha(matrix, rubrics.scale(m))
        out[m] = {"alpha_ordinal": alpha, "note": reason, "items": len(items),
                  "items_by_two_or_more": sum(sum(v is not None for v in col) >= 2 for col in zip(*matrix, strict=True))
                  if items else 0}
    return out


def panel_table4(store: Store, judges: Sequence[str], sample: str = "default", *, weighted: bool = False,
                 metrics: tuple[str, ...] = rubrics.METRICS) -> dict[str, Any]:
    if len(set(judges)) != len(judges) or not judges:
        raise UserError("a panel needs distinct judges")
    per = {j: table4(store, j, sample, weighted=weighted, metrics=metrics) for j in judges}
    rows: dict[str, Any] = {}
    for src in sorted({src for t in per.values() for src in t["rows"]}):
        entry: dict[str, Any] = {"metrics": {}}
        for m in metrics:
            means = {j: t["rows"][src]["metrics"][m]["mean"] for j, t in per.items()
                     if src in t["rows"] and m in t["rows"][src]["metrics"]
                     and t["rows"][src]["metrics"][m]["mean"] is not None}
            if means:
                entry["metrics"][m] = {"mean": round(statistics.fmean(means.values()), 4), "judges": len(means),
                                       "per_judge": means}
        entry["n"] = max((t["rows"][src]["n"] for t in per.values() if src in t["rows"]), default=0)
        rows[src] = entry
    return {"table": "4-panel", "judges": list(judges), "metrics": list(metrics), "weighted": weighted,
            "rows": rows, "agreement": agreement(store, judges, sample, metrics),
            "per_judge": per, "provenance": {"judges": {j: t["provenance"] for j, t in per.items()}}}


def md_panel(t: dict[str, Any]) -> str:
    ms = t["metrics"]
    head = "| 生成元 Source (n) | " + " | ".join(f"{rubrics.label(m)} ({'–'.join(map(str, rubrics.scale(m)))})"
                                               for m in ms) + " |"
    lines = [f"# Table 4 (judge panel, {len(t['judges'])} judges): mean of the judges' means", "",
             "Judges: " + ", ".join(f"`{j}`" for j in t["judges"]), "", head, "|" + "---|" * (len(ms) + 1)]
    for src, e in t["rows"].items():
        cells = [num(e["metrics"][m]["mean"]) + f" ({e['metrics'][m]['judges']} judges)" if m in e["metrics"]
                 else MISSING for m in ms]
        lines.append(f"| {src} ({e['n']}) | " + " | ".join(cells) + " |")
    lines += ["", "## Agreement between judges (ordinal Krippendorff's α; the judges' own answers, rule scores "
              "left out)", "", "| metric | α | items (scored by ≥ 2 judges) | note |", "|---|---|---|---|"]
    for m, a in t["agreement"].items():
        lines.append(f"| {rubrics.label(m)} | {num(a['alpha_ordinal'], 3)} | {a['items']} "
                     f"({a['items_by_two_or_more']}) | {a['note'] or ''} |")
    for j, per in t["per_judge"].items():
        lines += ["", f"## Judge `{j}`", "", md4(per).split("\n", 2)[2]]
    return "\n".join(lines) + "\n"
