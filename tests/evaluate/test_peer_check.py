"""Every published number recomputed with the reference library on adversarial inputs (issue 14).

Each figure equals the reference's, or — where the reference gives NaN or an arbitrary tie-break — emplifai
gives None/undecided with a note that says why. Reference libraries are test-only dependencies.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from emplifai import taxonomy
from emplifai.evaluate.agree import icc_oneway, kripp_alpha, pair_stats
from emplifai.metrics.labels import Scored, Scorers, evaluate

NAMES = [lab.en for lab in taxonomy.LABELS]


def _pingouin_icc(matrix: list[list[float]]) -> tuple[float, float]:
    import pingouin

    rows = [(i, j, v) for i, r in enumerate(matrix) for j, v in enumerate(r)]
    df = pd.DataFrame(rows, columns=["item", "rater", "score"])
    out = pingouin.intraclass_corr(df, targets="item", raters="rater", ratings="score").set_index("Type")
    return float(out.loc["ICC(1,1)", "ICC"]), float(out.loc["ICC(1,k)", "ICC"])


RNG = np.random.default_rng(7)
ICC_CASES = {
    "ties": [[3, 3, 4], [3, 3, 3], [4, 4, 4], [2, 3, 3], [5, 5, 4]],
    "n=3 items, k=2": [[1, 2], [4, 5], [3, 3]],  # pingouin needs at least 5 values
    "n>=100": [[int(v) for v in np.clip(np.round(RNG.normal(c, 0.8, 3)), 1, 5)] for c in RNG.integers(1, 6, 120)],
    "a missing rater": [[5, 5], [2, 3, 3], [4, 4, 4], [2, 2, 3], [4, 5, 5], [1, 2, 2]],
}


@pytest.mark.parametrize("case", sorted(ICC_CASES))
def test_icc_equals_pingouin_on_complete_items(case: str) -> None:
    matrix = ICC_CASES[case]
    ours = icc_oneway(matrix)
    k = max(len(r) for r in matrix)
    complete = [r for r in matrix if len(r) == k]
    ref1, ref1k = _pingouin_icc(complete)
    assert ours["items"] == len(complete) and ours["k"] == k
    assert ours["icc1"] == pytest.approx(ref1, abs=1e-4)
    assert ours["icc1k"] == pytest.approx(ref1k, abs=1e-4)


def test_icc_degenerate_inputs_say_why() -> None:
    everyone_five = [[5, 5, 5]] * 6
    with np.errstate(all="ignore"):
        ref1, _ = _pingouin_icc(everyone_five)
    assert math.isnan(ref1)  # the reference has no number either
    out = icc_oneway(everyone_five)
    assert out["icc1"] is None and "same" in out["note"]
    one_rater = icc_oneway([[4], [5], [3]])
    assert one_rater["icc1"] is None and "2 ratings" in one_rater["note"]


@pytest.mark.parametrize("level", ["ordinal", "interval"])
def test_krippendorff_alpha_equals_the_reference(level: str) -> None:
    import krippendorff

    data = [[1, 2, 3, 3, 2, None, 4, 5, 1, 2], [1, 2, 3, 4, 2, 2, 4, 5, None, 2], [2, 2, 3, 3, 1, 2, 5, 4, 1, None]]
    ref = krippendorff.alpha(reliability_data=np.array(data, dtype=float), level_of_measurement=level,
                             value_domain=[1, 2, 3, 4, 5] if level == "ordinal" else None)
    assert kripp_alpha(data, level) == pytest.approx(ref, abs=1e-4)
    assert kripp_alpha([[5, 5, 5], [5, 5, 5]], level) is None  # one value used by everyone: undefined, not NaN


@pytest.mark.parametrize("n", [3, 10, 150])
def test_pair_stats_equal_scipy_with_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.integers(1, 6, n).astype(float)
    y = np.clip(x + rng.integers(-1, 2, n), 1, 5)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        x[0], y[0] = 1.0, 5.0
    out = pair_stats(list(x), list(y), n_boot=1000, seed=1)
    pr, sr = stats.pearsonr(x, y), stats.spearmanr(x, y)
    assert out["pearson_r"] == pytest.approx(pr.statistic, abs=1e-4)
    assert out["pearson_p"] == pytest.approx(pr.pvalue, rel=1e-9)
    assert out["spearman_rho"] == pytest.approx(sr.statistic, abs=1e-4)
    assert out["spearman_p"] == pytest.approx(sr.pvalue, rel=1e-9)
    assert out["mad"] == pytest.approx(float(np.abs(x - y).mean()), abs=1e-4)
    assert out["bootstrap"]["method"].startswith("percentile")
    if n >= 10:  # the percentile interval agrees with scipy's percentile bootstrap to resampling noise
        ref = stats.bootstrap((x, y), lambda a, b: np.abs(a - b).mean(), paired=True, vectorized=False,
                              n_resamples=1000, method="percentile", random_state=2).confidence_interval
        lo, hi = out["ci95"]["mad"]
        assert lo == pytest.approx(ref.low, abs=0.12) and hi == pytest.approx(ref.high, abs=0.12)


def test_pair_stats_degenerate_inputs_say_why() -> None:
    const = pair_stats([3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0], n_boot=0)
    assert const["pearson_r"] is None and "zero variance" in const["note"] and const["mad"] == 1.0
    two = pair_stats([1.0, 2.0], [2.0, 1.0], n_boot=0)
    assert two["pearson_r"] is None and "at least 3" in two["note"]


class _NoSim:
    """No similarity scorer: the label metrics alone."""


def _scored(gold: list[str], pred: list[str | None], top3: list[tuple[str, ...] | None]) -> list[Scored]:
    return [Scored(f"d{i}", g, p, None if p is None else p, t, "ok" if p else "unparsed")
            for i, (g, p, t) in enumerate(zip(gold, pred, top3, strict=True))]


def test_label_metrics_equal_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    rng = np.random.default_rng(3)
    gold = [NAMES[i] for i in rng.integers(0, 28, 140)]
    scores = rng.normal(size=(140, 28))  # untied rankings: both tie rules agree
    for i, g in enumerate(gold[:60]):
        scores[i, NAMES.index(g)] += 3
    order = np.argsort(-scores, axis=1)
    pred = [NAMES[o[0]] for o in order]
    top3 = [tuple(NAMES[j] for j in o[:3]) for o in order]
    m = evaluate(_scored(gold, pred, top3), Scorers(None, None, lang="en"))
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    present = [n for n in NAMES if n in set(gold) | set(pred)]
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, labels=present, average="macro", zero_division=0))
    assert m["macro_f1_sklearn_default"] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    ref_top3 = top_k_accuracy_score([NAMES.index(g) for g in gold], scores, k=3, labels=list(range(28)))
    assert m["top3_accuracy"] == pytest.approx(ref_top3) and m["top3_n"] == 140


def test_unparsed_is_a_miss_for_macro_f1_and_a_class_for_sklearns_default() -> None:
    from sklearn.metrics import f1_score

    gold = ["Joy", "Joy", "Fear", "Anger"]
    pred: list[str | None] = ["Joy", None, "Fear", None]
    m = evaluate(_scored(gold, pred, [("Joy",), None, ("Fear",), None]), Scorers(None, None, lang="en"))
    filled = [p or "(unparsed)" for p in pred]
    assert m["macro_f1"] == pytest.approx(f1_score(gold, filled, labels=["Anger", "Fear", "Joy"], average="macro",
                                                   zero_division=0))
    assert m["macro_f1_sklearn_default"] == pytest.approx(f1_score(gold, filled, average="macro", zero_division=0))
    assert m["macro_f1"] != m["macro_f1_sklearn_default"] and m["unparsed"] == 2 and m["top3_n"] == 2


@pytest.mark.slow
def test_bertscore_equals_bert_score_on_the_same_encoder_and_layer() -> None:
    """emplifai's scorer against the package's own entry point, bert_score.score, with the same encoder, layer and
    token weights (special tokens 0: the rule recorded in the signature)."""
    from bert_score import score as reference

    from emplifai.metrics import BertScoreConfig, BertScorer

    scorer = BertScorer(BertScoreConfig(disk_cache=False))
    pairs = [("喜び", "喜び"), ("悲しみ", "喜び"), ("わからない", "怒り"), ("感謝", "称賛"), ("恐れ", "緊張")]
    ours = scorer.score_pairs(pairs)
    p, r, f = reference([c for c, _ in pairs], [g for _, g in pairs], model_type=str(scorer.encoder_dir),
                        num_layers=scorer.cfg.layer, idf=scorer.idf_dict(), batch_size=8, device="cpu")
    for i, pair in enumerate(pairs):
        assert ours[pair].precision == pytest.approx(min(float(p[i]), 1.0), abs=1e-5)
        assert ours[pair].recall == pytest.approx(min(float(r[i]), 1.0), abs=1e-5)
        assert ours[pair].f1 == pytest.approx(min(float(f[i]), 1.0), abs=1e-5)
    assert "final norm" in scorer.signature()["layer_convention"]
