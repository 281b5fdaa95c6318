"""Agreement statistics checked against scipy, krippendorff and published values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from emplifai.evaluate.agree import icc_oneway, kripp_alpha, pair_stats


def test_pair_stats_match_scipy() -> None:
    rng = np.random.default_rng(3)
    human = rng.integers(1, 6, 40).astype(float)
    judge = np.clip(human + rng.integers(-1, 2, 40), 1, 5)
    out = pair_stats(judge, human, n_boot=500, seed=1)
    pr, sr = stats.pearsonr(judge, human), stats.spearmanr(judge, human)
    assert out["pearson_r"] == pytest.approx(pr.statistic, abs=1e-4)
    assert out["pearson_p"] == pytest.approx(pr.pvalue, abs=1e-4)
    assert out["spearman_rho"] == pytest.approx(sr.statistic, abs=1e-4)
    assert out["mad"] == pytest.approx(np.abs(judge - human).mean(), abs=1e-4)
    assert out["mean_diff"] == pytest.approx((judge - human).mean(), abs=1e-4)
    lo, hi = out["ci95"]["pearson_r"]
    assert lo < out["pearson_r"] < hi
    lo, hi = out["ci95"]["mad"]
    assert lo <= out["mad"] <= hi
    assert pair_stats(judge, human, n_boot=500, seed=1)["ci95"] == out["ci95"]  # seeded: reproducible


def test_known_values() -> None:
    out = pair_stats([1, 2, 3, 4, 5], [2, 4, 6, 8, 10], n_boot=0)
    assert out["pearson_r"] == 1.0 and out["spearman_rho"] == 1.0 and out["mad"] == 3.0


def test_zero_variance_gives_mad_only() -> None:
    out = pair_stats([5, 5, 5, 5], [4, 5, 3, 4.5], n_boot=200)
    assert out["pearson_r"] is None and out["spearman_rho"] is None
    assert "zero variance" in out["note"] and "judge side gave every item 5" in out["note"]
    assert out["mad"] == pytest.approx((1 + 0 + 2 + 0.5) / 4)
    assert out["ci95"]["pearson_r"] is None and out["ci95"]["mad"] is not None
    assert "human side" in pair_stats([1, 2, 3], [4, 4, 4], n_boot=0)["note"]
    assert "at least 3" in pair_stats([1, 2], [1, 2], n_boot=0)["note"]


def test_icc_matches_shrout_fleiss_1979() -> None:
    # Table 2 of Shrout & Fleiss (1979): 6 targets x 4 judges; ICC(1,1) = .17, ICC(1,4) = .44
    data = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    out = icc_oneway(data)
    assert out["icc1"] == pytest.approx(0.1657, abs=1e-3) and out["icc1k"] == pytest.approx(0.4428, abs=1e-3)
    assert icc_oneway([[3, 3], [3, 3]])["icc1"] is None  # no variance: undefined, not NaN


def test_alpha_matches_krippendorff_package() -> None:
    import krippendorff

    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5], [None, 3, 3, 3, 2, 3, 4, 2, 2, 5]]
    arr = np.array([[np.nan if v is None else v for v in r] for r in data], dtype=float)
    expected = krippendorff.alpha(reliability_data=arr, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    assert kripp_alpha(data) == pytest.approx(expected, abs=1e-4)
    assert kripp_alpha([[5, 5, 5], [5, 5, 5]]) is None


def test_icc_with_a_missing_rater_uses_complete_items_only() -> None:
    """Regression: rows were cut to the shortest, i.e. ICC on each item's lowest k ratings (0.886 here)."""
    out = icc_oneway([[5, 5], [2, 3, 3], [4, 4, 4], [2, 2, 3], [4, 5, 5], [1, 2, 2]])
    assert (out["k"], out["items"], out["items_excluded"]) == (3, 5, 1)
    # pingouin.intraclass_corr on the 5 complete items: ICC1 = 0.843, ICC1k = 0.942
    assert out["icc1"] == pytest.approx(0.843, abs=1e-3) and out["icc1k"] == pytest.approx(0.942, abs=1e-3)
    # no between-item variance but some within: ICC(1,1) = -1/(k-1) is defined, ICC(1,k) is not
    flat = icc_oneway([[1, 2], [2, 1], [1, 2]])
    assert flat["icc1"] == -1.0 and flat["icc1k"] is None and "between-item" in flat["note"]
    assert icc_oneway([[3, 3], [3, 3]])["note"].startswith("every rating is the same")


def test_p_values_are_kept_unrounded_and_printed_honestly() -> None:
    """Regression: pearson_p was rounded to 4 places (0.0 where scipy gives 8e-24) and printed "p=0.00"."""
    from scipy import stats as sp

    from emplifai.formatting import pvalue

    x = [float(i % 5 + 1) for i in range(120)]
    y = [v if i % 7 else 6 - v for i, v in enumerate(x)]
    out = pair_stats(x, y, n_boot=0)
    ref = sp.pearsonr(x, y)
    assert 0 < out["pearson_p"] == pytest.approx(ref.pvalue, rel=1e-9) and out["pearson_p"] < 1e-4
    assert out["spearman_p"] == pytest.approx(sp.spearmanr(x, y).pvalue, rel=1e-9)
    assert "two-sided" in out["tests"]["pearson"] and pvalue(out["pearson_p"]) == "<1e-4"
    assert pvalue(0.0312) == "0.0312" and pvalue(None) == "–"


def test_non_finite_scores_are_refused_not_turned_into_nan_json() -> None:
    from emplifai.errors import UserError

    with pytest.raises(UserError, match="non-finite"):
        pair_stats([1.0, 2.0, float("nan"), 4.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(UserError, match="human scores"):
        pair_stats([1.0, 2.0, 3.0, 4.0], [1.0, float("inf"), 3.0, 4.0])


def test_every_json_emplifai_writes_is_strict() -> None:
    import json

    from emplifai.formatting import to_json

    text = to_json({"r": float("nan"), "ci": [float("inf"), 0.5], "nested": {"x": (float("-inf"),)}})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == {
        "r": None, "ci": [None, 0.5], "nested": {"x": [None]}}


def test_summaries_say_what_produced_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from emplifai.dataset import stats
    from emplifai.dataset.formats import check_record, iter_rows
    from emplifai.dataset.ingest import bundled_corpus_path

    recs = [check_record(r)[0] for r in iter_rows(bundled_corpus_path())][:30]
    a, b = stats.compute(recs, near=False), stats.compute(recs[:-1], near=False)
    assert a["provenance"]["emplifai"] and len(a["provenance"]["content_sha256"]) == 64
    assert a["provenance"]["content_sha256"] != b["provenance"]["content_sha256"]
