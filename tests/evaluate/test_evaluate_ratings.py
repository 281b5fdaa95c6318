"""Rating sheets (CSV + XLSX, 10 groups × 10 dialogues × 3 raters), all-or-nothing import, agreement statistics
checked against scipy / krippendorff, and the Table 4 / Table 5 reports. Database tests run on both DBs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from emplifai.errors import InputError
from emplifai.evaluate.agree import icc_oneway, kripp_alpha, pair_stats
from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.evaluate.ratings import COLUMNS, export_sheets, import_sheets, summary
from emplifai.evaluate.rubrics import METRICS
from emplifai.evaluate.tables import md4, md5, table4, table5, write
from emplifai.llm import FakeLLM
from emplifai.store.evaluation import Generation, Rating
from tests.evaluate.fixtures import answer, count, human_sample


def _score(gid: int, rater: str, metric_index: int) -> int:
    """A deterministic, varied 1–5 score: raters mostly agree (alpha well above 0)."""
    base = 1 + (gid * 7 + metric_index) % 5
    return base if rater.endswith("r1") or (gid + metric_index) % 4 else min(5, base + 1)


def _fill_csv(path: Path, override: dict[tuple[int, str], str] | None = None) -> None:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    for n, row in enumerate(rows[1:], 2):
        for k, m in enumerate(METRICS):
            row[len(COLUMNS) - len(METRICS) + k] = str(_score(int(row[2]), row[6], k))
            if override and (n, m) in override:
                row[len(COLUMNS) - len(METRICS) + k] = override[(n, m)]
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _fill_xlsx(path: Path, override: dict[tuple[int, str], object] | None = None) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(path)
    ws = wb["評価"]
    for n in range(2, ws.max_row + 1):
        gid, rater = int(ws.cell(n, 3).value), ws.cell(n, 7).value
        for k, m in enumerate(METRICS):
            value = override.get((n, m), _score(gid, rater, k)) if override else _score(gid, rater, k)
            ws.cell(n, len(COLUMNS) - len(METRICS) + k + 1).value = value
    wb.save(path)


@pytest.fixture
def hundred(store, tmp_path: Path):
    human_sample(store, tmp_path, 100)
    return store


def test_export_10_groups_of_10_for_3_raters(hundred, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    files = export_sheets(hundred, tmp_path / "sheets", source="human")
    assert len(files) == 60  # 10 groups × 3 raters × (CSV + XLSX)
    csvs = sorted(p for p in files if p.suffix == ".csv")
    assert csvs[0].name == "ratings_human_g01_r1.csv" and csvs[-1].name == "ratings_human_g10_r3.csv"
    seen: dict[int, set[str]] = {}
    for p in csvs:
        with p.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == COLUMNS and len(rows) == 11
        assert all(r[7:] == [""] * 7 for r in rows[1:])  # scores left blank
        for r in rows[1:]:
            seen.setdefault(int(r[2]), set()).add(r[6])
    assert len(seen) == 100 and all(len(v) == 3 for v in seen.values())  # every dialogue, 3 rater slots
    wb = load_workbook(tmp_path / "sheets" / "ratings_human_g03_r2.xlsx")
    ws = wb["評価"]
    assert [c.value for c in ws[1]] == list(COLUMNS) and ws.max_row == 11
    assert ws.cell(2, 1).value == 3 and ws.cell(2, 7).value == "g03-r2"
    [dv] = ws.data_validations.dataValidation
    assert (dv.type, dv.formula1, dv.formula2, str(dv.sqref)) == ("whole", "1", "5", "H2:N11")
    assert "説明" in wb.sheetnames


def test_import_filled_csv_and_xlsx_then_summary(hundred, tmp_path: Path) -> None:
    import krippendorff

    files = export_sheets(hundred, tmp_path / "sheets", source="human")
    csvs = [p for p in files if p.suffix == ".csv" and "_g10_" not in p.name]
    xlsxs = [p for p in files if p.suffix == ".xlsx" and "_g10_" in p.name]
    for p in csvs:
        _fill_csv(p)
    for p in xlsxs:
        _fill_xlsx(p)
    r = import_sheets(hundred, csvs + xlsxs)
    assert (r.files, r.added, r.unchanged, r.replaced, len(r.raters)) == (30, 2100, 0, 0, 30)
    assert count(hundred, Rating) == 2100
    # importing the same sheets again is a no-op
    r2 = import_sheets(hundred, csvs[:1])
    assert (r2.added, r2.unchanged) == (0, 70)
    sm = summary(hundred, "default", "human")
    assert sm["raters"] == 30 and set(sm["metrics"]) == set(METRICS)
    fl = sm["metrics"]["fluency"]
    assert fl["items"] == 100 and fl["ratings"] == 300
    # alpha equals the krippendorff package on the same reliability matrix
    with hundred.transaction() as s:
        rows = s.execute(select(Rating.rater, Rating.generation_id, Rating.score).where(Rating.metric == "fluency"))
        data: dict[str, dict[int, int]] = {}
        for rater, gid, score in rows:
            data.setdefault(rater, {})[gid] = score
    ids = sorted({g for d in data.values() for g in d})
    matrix = np.array([[d.get(g, np.nan) for g in ids] for _, d in sorted(data.items())], dtype=float)
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    assert fl["alpha_ordinal"] == pytest.approx(expected, abs=1e-4) and 0.5 < fl["alpha_ordinal"] < 1
    some = ids[0]
    assert fl["per_dialogue_mean"][some] == pytest.approx(np.nanmean(matrix[:, 0]), abs=1e-4)


def test_bad_cells_name_file_row_column_and_nothing_is_imported(hundred, tmp_path: Path) -> None:
    files = export_sheets(hundred, tmp_path / "sheets", source="human")
    good = [p for p in files if p.suffix == ".csv" and "_g01_" in p.name]
    for p in good:
        _fill_csv(p)
    bad_csv = tmp_path / "sheets" / "ratings_human_g02_r1.csv"
    _fill_csv(bad_csv, {(3, "general_empathy"): "6", (5, "fluency"): "４.５", (11, "security"): ""})
    bad_xlsx = tmp_path / "sheets" / "ratings_human_g03_r1.xlsx"
    _fill_xlsx(bad_xlsx, {(4, "harmlessness"): "よい", (2, "consistency"): 0})
    with pytest.raises(InputError) as exc:
        import_sheets(hundred, [*good, bad_csv, bad_xlsx])
    got = {(Path(p.file).name, p.line, p.field) for p in exc.value.problems}
    assert got == {
        ("ratings_human_g02_r1.csv", 3, "general_empathy"),
        ("ratings_human_g02_r1.csv", 5, "fluency"),
        ("ratings_human_g02_r1.csv", 11, "security"),
        ("ratings_human_g03_r1.xlsx", 4, "harmlessness"),
        ("ratings_human_g03_r1.xlsx", 2, "consistency"),
    }
    text = str(exc.value)
    assert "ratings_human_g02_r1.csv" in text and "general_empathy" in text and "nothing was stored" in text
    assert count(hundred, Rating) == 0  # the three good sheets were not half-imported


def test_import_rejects_wrong_group_and_unknown_generation(hundred, tmp_path: Path) -> None:
    files = export_sheets(hundred, tmp_path / "sheets", source="human")
    p = next(f for f in files if f.name == "ratings_human_g01_r1.csv")
    _fill_csv(p)
    rows = list(csv.reader(p.open(encoding="utf-8-sig", newline="")))
    rows[1][0] = "2"  # claims group 2
    rows[2][2] = "999999"  # no such generation
    with p.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(InputError) as exc:
        import_sheets(hundred, [p])
    fields = {(pr.line, pr.field) for pr in exc.value.problems}
    assert (2, "group_no") in fields and (3, "generation_id") in fields
    assert count(hundred, Rating) == 0


# ----------------------------------------------------------------------------------------- pure statistics
def test_pair_stats_match_scipy() -> None:
    from scipy import stats

    judge = [4, 5, 3, 4, 2, 5, 3, 4, 1, 5, 2, 4]
    human = [3.67, 4.33, 3.0, 4.0, 2.33, 4.67, 3.33, 3.0, 1.67, 4.0, 2.67, 4.33]
    st = pair_stats(judge, human, n_boot=500, seed=1)
    pr, sr = stats.pearsonr(judge, human), stats.spearmanr(judge, human)
    assert st["pearson_r"] == pytest.approx(pr.statistic, abs=1e-4)
    assert st["pearson_p"] == pytest.approx(pr.pvalue, abs=1e-4)
    assert st["spearman_rho"] == pytest.approx(sr.statistic, abs=1e-4)
    assert st["spearman_p"] == pytest.approx(sr.pvalue, abs=1e-4)
    assert st["mad"] == pytest.approx(np.mean(np.abs(np.subtract(judge, human))), abs=1e-4)
    assert st["mean_diff"] == pytest.approx(np.mean(np.subtract(judge, human)), abs=1e-4)
    assert st["n"] == 12 and st["note"] is None
    lo, hi = st["ci95"]["pearson_r"]
    assert lo < st["pearson_r"] < hi <= 1
    assert st["ci95"]["mad"][0] <= st["mad"] <= st["ci95"]["mad"][1]
    assert pair_stats(judge, human, n_boot=500, seed=1) == st  # seeded bootstrap is reproducible


def test_zero_variance_reported_as_such_with_mad_only() -> None:
    st = pair_stats([5, 5, 5, 5], [4.0, 3.0, 5.0, 4.5], n_boot=100)
    assert st["pearson_r"] is None and st["spearman_rho"] is None and st["pearson_p"] is None
    assert st["note"] == "zero variance: the judge side gave every item 5; correlation is undefined, MAD only"
    assert st["mad"] == pytest.approx(0.875)
    assert st["ci95"]["pearson_r"] is None
    assert "nan" not in json.dumps(st).lower()
    st2 = pair_stats([1, 2], [2, 2], n_boot=0)
    assert st2["note"].startswith("only 2 paired item(s)") and st2["mad"] == 0.5


def test_krippendorff_alpha_matches_package_on_known_matrix() -> None:
    import krippendorff

    # Krippendorff (2011) reliability example: 4 observers × 12 units, missing values
    m = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    arr = np.array([[np.nan if v is None else v for v in r] for r in m], dtype=float)
    expected = krippendorff.alpha(reliability_data=arr, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    assert kripp_alpha(m) == pytest.approx(expected, abs=1e-4)
    assert kripp_alpha(m) == pytest.approx(0.815, abs=0.005)  # value published for the ordinal metric
    assert kripp_alpha([[5, 5, 5], [5, 5, 5]]) is None  # one value everywhere: undefined, not NaN
    assert kripp_alpha([[1, 2, 3], [1, 2, 3]]) == 1.0


def test_icc_oneway_shrout_fleiss_example() -> None:
    # Shrout & Fleiss (1979), Table 2: 6 targets × 4 judges; ICC(1,1) = .17, ICC(1,4) = .44
    data = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    icc = icc_oneway(data)
    assert icc["icc1"] == pytest.approx(0.17, abs=0.005) and icc["icc1k"] == pytest.approx(0.44, abs=0.005)
    assert (icc["items"], icc["k"]) == (6, 4)
    assert icc_oneway([[3, 3], [3, 3]])["icc1"] is None


# --------------------------------------------------------------------------------------------------- reports
def test_table4_and_table5_reports(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 10)
    judge_scores = [5, 4, 3, 4, 2, 5, 3, 4, 1, 5]
    llm = FakeLLM("judge").enqueue([answer(x) for x in judge_scores] + [answer(5)] * 10)
    judge(store, JudgeConfig(spec="fake:judge", metrics=("general_empathy", "security"), shots=0), llm=llm)
    files = export_sheets(store, tmp_path / "sheets", source="human")
    csvs = [p for p in files if p.suffix == ".csv"]
    for p in csvs:
        _fill_csv(p)
    import_sheets(store, csvs)
    t4 = table4(store, "fake:judge")
    row = t4["rows"]["human"]
    assert (row["n"], row["malformed"], row["non_japanese"]) == (10, 0, 0)
    assert row["metrics"]["general_empathy"]["mean"] == pytest.approx(np.mean(judge_scores))
    assert row["metrics"]["security"] == {"mean": 5.0, "mean_wellformed": 5.0, "scored": 10, "failures": 0,
                                          "judged": 10, "rule_scored": 0, "failed_attempts": 0}
    assert t4["provenance"]
    t5 = table5(store, "fake:judge", "human", n_boot=200)
    assert set(t5["metrics"]) == {"general_empathy", "security"}
    ge, sec = t5["metrics"]["general_empathy"], t5["metrics"]["security"]
    with store.transaction() as s:
        gids = [g.id for g in s.scalars(select(Generation).where(Generation.source == "human"))]
    human_means = summary(store, "default", "human")["metrics"]["general_empathy"]["per_dialogue_mean"]
    assert ge["human_mean"] == pytest.approx(np.mean([human_means[g] for g in gids]), abs=1e-4)
    assert ge["pearson_r"] is not None and ge["alpha_ordinal"] is not None
    assert sec["pearson_r"] is None and sec["note"].startswith("zero variance: the judge side gave every item 5")
    paths = write(tmp_path / "reports", "table4", t4, md4(t4)) + write(tmp_path / "reports", "table5", t5, md5(t5))
    assert [p.name for p in paths] == ["table4.json", "table4.md", "table5.json", "table5.md"]
    assert json.loads(paths[2].read_text(encoding="utf-8"))["metrics"]["security"]["mad"] == sec["mad"]
    md = paths[3].read_text(encoding="utf-8")
    assert "|" in md and "zero variance" in md
    assert "| " in paths[1].read_text(encoding="utf-8")
