"""Rating sheets: export layout, import validation (file/row/column), all-or-nothing, agreement; both DBs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from emplifai.errors import InputError
from emplifai.evaluate.groups import rating_groups
from emplifai.evaluate.ratings import export_sheets, import_sheets, summary
from emplifai.evaluate.rubrics import METRICS
from emplifai.evaluate.sample import make_sample
from emplifai.store.evaluation import EvalSampleItem, Rating
from tests.evaluate.fixtures import seeded_store


def _fill(path: Path, scores: dict[int, int] | None = None, edit=None) -> None:
    rows = list(csv.reader(path.open(encoding="utf-8-sig")))
    h = rows[0]
    for i, r in enumerate(rows[1:]):
        for m in METRICS:
            r[h.index(m)] = str((scores or {}).get(i, 1 + (i + len(m)) % 5))
    if edit:
        edit(h, rows)
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        csv.writer(fh).writerows(rows)


def test_sample_is_reproducible_and_groups_follow_it(store) -> None:
    seeded_store(store, n=25, model=None)
    assert not make_sample(store, n=25, seed=42).created
    with store.transaction() as s:
        first = [i.situation_id for i in s.scalars(select(EvalSampleItem).order_by(EvalSampleItem.position))]
        groups = rating_groups(s, "default", "human")
    assert [len(g) for g in groups] == [10, 10, 5]
    assert [g.situation_id for grp in groups for g in grp] == first
    with pytest.raises(Exception, match="exists with other items"):
        make_sample(store, n=25, seed=7)


def test_export_import_roundtrip_and_agreement(store, tmp_path: Path) -> None:
    seeded_store(store, n=12, model=None)
    files = export_sheets(store, tmp_path / "sheets", source="human")
    csvs = sorted(p for p in files if p.suffix == ".csv")
    assert len(csvs) == 6 and len(files) == 12  # 2 groups x 3 raters, CSV + XLSX
    header = next(csv.reader(csvs[0].open(encoding="utf-8-sig")))
    assert header[-7:] == list(METRICS) and "source" not in header  # blind: no model name
    for p in csvs:
        _fill(p)
    r = import_sheets(store, csvs)
    assert r.added == 12 * 3 * 7 and len(r.raters) == 6
    assert import_sheets(store, csvs).unchanged == 12 * 3 * 7  # idempotent
    sm = summary(store, "default", "human")
    m = sm["metrics"]["fluency"]
    assert m["items"] == 12 and m["ratings"] == 36 and m["alpha_ordinal"] == 1.0 and m["icc1"] == 1.0
    assert all(float(v).is_integer() for v in m["per_dialogue_mean"].values())  # raters agreed exactly


def test_bad_cells_name_file_row_column_and_nothing_is_stored(store, tmp_path: Path) -> None:
    seeded_store(store, n=10, model=None)
    files = export_sheets(store, tmp_path / "s", source="human")
    good, bad = sorted(p for p in files if p.suffix == ".csv")[:2]
    _fill(good)

    def spoil(h: list[str], rows: list[list[str]]) -> None:
        rows[2][h.index("fluency")] = "4.5"
        rows[3][h.index("harmlessness")] = "6"
        rows[4][h.index("security")] = ""
        rows[5][h.index("rater")] = ""
        rows[6][h.index("generation_id")] = "99999"
        rows[7][h.index("group_no")] = "2"
        rows[8][h.index("consistency")] = "５"  # full-width is fine

    _fill(bad, edit=spoil)
    with pytest.raises(InputError) as exc:
        import_sheets(store, [good, bad])
    msgs = {(p.line, p.field): p.message for p in exc.value.problems}
    assert all(p.file == str(bad) for p in exc.value.problems)
    assert "not a whole number" in msgs[(3, "fluency")] and "outside 1–5" in msgs[(4, "harmlessness")]
    assert "empty cell" in msgs[(5, "security")] and "empty rater" in msgs[(6, "rater")]
    assert "no generation 99999" in msgs[(7, "generation_id")] and "belongs to group 1" in msgs[(8, "group_no")]
    assert len(exc.value.problems) == 6
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 0  # all or nothing


def test_changed_score_needs_replace_and_xlsx_imports(store, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    seeded_store(store, n=10, model=None)
    files = export_sheets(store, tmp_path / "s", source="human")
    xlsx = sorted(p for p in files if p.suffix == ".xlsx")[0]
    wb = load_workbook(xlsx)
    ws = wb["評価"]
    for row in ws.iter_rows(min_row=2, min_col=8, max_col=14):
        for c in row:
            c.value = 4
    wb.save(xlsx)
    assert import_sheets(store, [xlsx]).added == 70
    ws["H2"] = 2
    wb.save(xlsx)
    with pytest.raises(InputError, match="already gave 4"):
        import_sheets(store, [xlsx])
    assert import_sheets(store, [xlsx], replace=True).replaced == 1
    missing = tmp_path / "missing.csv"
    missing.write_text("group_no,generation_id\n1,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing column"):
        import_sheets(store, [missing])
