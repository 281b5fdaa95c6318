"""Judge–human agreement (paper §5.4, Table 5) and inter-rater agreement.

Per metric, over the dialogues that have both a judge score (mean over repeats) and human ratings (mean over
raters): Pearson r with p-value and Spearman rho (scipy), mean absolute difference (MAD), mean signed
difference (judge − human), and percentile bootstrap 95% confidence intervals (pairs resampled with a fixed
seed). When one side has zero variance — the paper's case, the judge gave every item 5 — correlations are
undefined: the result says so and carries MAD only, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from emplifai.errors import UserError


def _constant(x: np.ndarray) -> bool:
    return bool(len(x) == 0 or np.ptp(x) == 0)


def _r(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def _ci(values: list[float]) -> list[float] | None:
    if len(values) < 20:  # too few defined resamples for a percentile interval
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def pair_stats(judge: Sequence[float], human: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    from scipy import stats

    x, y = np.asarray(judge, dtype=float), np.asarray(human, dtype=float)
    if x.shape != y.shape:
        raise ValueError("judge and human scores must pair up")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        bad = "judge" if not np.isfinite(x).all() else "human"
        raise UserError(f"the {bad} scores contain a non-finite value (NaN or infinity); agreement needs finite "
                        "scores — check the ratings or judge rows it came from")
    n = len(x)
    out: dict[str, Any] = {"n": n, "judge_mean": _round(x.mean()) if n else None,
                           "human_mean": _round(y.mean()) if n else None,
                           "mad": _round(np.abs(x - y).mean()) if n else None,
                           "mean_diff": _round((x - y).mean()) if n else None,
                           "pearson_r": None, "pearson_p": None, "spearman_rho": None, "spearman_p": None,
                           "ci95": {}, "note": None}
    if n < 3:
        out["note"] = f"only {n} paired item(s): correlations need at least 3; MAD only"
    elif _constant(x) or _constant(y):
        side = "judge" if _constant(x) else "human"
        value = (x if side == "judge" else y)[0]
        out["note"] = (f"zero variance: the {side} side gave every item {value:g}; correlation is undefined, "
                       "MAD only")
    else:
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
        # p-values are kept unrounded (8e-24 is not 0); both are two-sided, Spearman's from the t distribution
        # of its ρ (scipy's default), as the "tests" entry below records.
        out.update(pearson_r=_round(pr.statistic), pearson_p=float(pr.pvalue),
                   spearman_rho=_round(sr.statistic), spearman_p=float(sr.pvalue),
                   tests={"pearson": "scipy.stats.pearsonr, two-sided",
                          "spearman": "scipy.stats.spearmanr, two-sided, t approximation"})
    if n >= 2 and n_boot > 0:
        rng = np.random.default_rng(seed)
        rs, rhos, mads = [], [], []
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            bx, by = x[idx], y[idx]
            mads.append(float(np.abs(bx - by).mean()))
            if out["pearson_r"] is not None and not (_constant(bx) or _constant(by)):
                rs.append(_r(bx, by))
                rhos.append(_r(_rank(bx), _rank(by)))
        out["ci95"] = {"mad": _ci(mads), "pearson_r": _ci(rs) if rs else None,
                       "spearman_rho": _ci(rhos) if rhos else None}
        out["bootstrap"] = {"method": "percentile, 95%, resampling items with replacement",
                            "resamples": n_boot, "seed": seed, "undefined_correlation_resamples": n_boot - len(rs)
                            if out["pearson_r"] is not None else None}
    return out


def _round(v: float) -> float | None:
    v = float(v)
    return None if not math.isfinite(v) else round(v, 4)


def icc_oneway(matrix: Sequence[Sequence[float]]) -> dict[str, float | int | str | None]:
    """ICC(1,1) and ICC(1,k), one-way random effects (Shrout & Fleiss 1979), on complete items only.

    One-way because each group of dialogues has its own raters: raters are not crossed with all items.
    Rows are items, columns their ratings (order irrelevant). ``k`` is the most ratings any item has; an item
    with fewer (a missing sheet) is left out and counted in ``items_excluded`` — cutting every row to the
    shortest, as before, computed ICC on each item's lowest ratings. ICC(1,1) is −1/(k−1) when the
    between-item mean square is 0 (defined); None, with the reason in ``note``, where it is not defined.
    """
    rows = [list(map(float, r)) for r in matrix if r and all(v is not None for v in r)]
    k = max((len(r) for r in rows), default=0)
    complete = [r for r in rows if len(r) == k]
    out: dict[str, float | int | str | None] = {"icc1": None, "icc1k": None, "items": len(complete), "k": k,
                                                "items_excluded": len(rows) - len(complete), "note": None}
    if len(complete) < 2 or k < 2:
        out["note"] = "needs at least 2 items with at least 2 ratings each"
        return out
    a = np.asarray(complete, dtype=float)
    n = a.shape[0]
    grand = a.mean()
    msb = k * ((a.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    msw = ((a - a.mean(axis=1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    if msb + (k - 1) * msw == 0:
        out["note"] = "every rating is the same: no variance, ICC undefined"
        return out
    out["icc1"] = _round((msb - msw) / (msb + (k - 1) * msw))
    if msb == 0:
        out["note"] = "no between-item variance: ICC(1,1) = −1/(k−1), ICC(1,k) undefined"
    else:
        out["icc1k"] = _round((msb - msw) / msb)
    return out


def kripp_alpha(reliability: Sequence[Sequence[float | None]], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha on the 1–5 scale (``level`` "ordinal", the reported one, or "interval"); rows are
    raters, columns items, None = not rated."""
    import krippendorff

    data = np.asarray([[np.nan if v is None else float(v) for v in row] for row in reliability], dtype=float)
    if data.size == 0 or np.sum(~np.isnan(data).all(axis=0) & (np.sum(~np.isnan(data), axis=0) >= 2)) < 1:
        return None
    values = data[~np.isnan(data)]
    if len(np.unique(values)) < 2:
        return None  # a single value used by everyone: alpha is undefined
    try:
        a = krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                               value_domain=[1, 2, 3, 4, 5] if level == "ordinal" else None)
    except (ValueError, ZeroDivisionError):
        return None
    return _round(a)
