"""Import never corrupts, export round-trips: every case on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from emplifai.dataset import formats as io
from emplifai.dataset.export import export_store
from emplifai.dataset.ingest import import_file, validate_file
from emplifai.dataset.splits import make_split
from emplifai.errors import InputError
from emplifai.store.models import Dialogue, Situation
from tests.helpers import record, write_jsonl


def counts(store) -> tuple[int, int]:
    with store.transaction() as s:
        return s.scalar(select(func.count()).select_from(Situation)), s.scalar(
            select(func.count()).select_from(Dialogue))


@pytest.fixture
def base_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "base.jsonl", [record(i) for i in range(30)])


def test_import_and_idempotent_reimport(store, base_file):
    rep = import_file(store, base_file)
    assert (rep.dialogues_added, rep.situations_added) == (30, 10)
    rep2 = import_file(store, base_file)
    assert (rep2.dialogues_added, rep2.situations_added, rep2.unchanged) == (0, 0, 30)
    assert counts(store) == (10, 30)


BAD_CASES = [
    # (description, lines to write (str or dict), expected line, expected field, message part)
    ("invalid json", [record(0), "{not json"], 2, None, "invalid JSON"),
    ("missing field", [record(0), {k: v for k, v in record(1).items() if k != "patient"}], 2, "patient", "missing"),
    ("unknown emotion", [record(0, emotion="Happiness")], 1, "emotion", "unknown emotion"),
    ("empty turn", [record(0, supporter="")], 1, "supporter", "empty"),
    ("whitespace turn", [record(0, patient=" 　\n")], 1, "patient", "empty"),
    ("duplicate dialogue id", [record(0), record(1), record(1)], 3, "dialogue_id", "duplicate"),
    ("situation text differs", [record(0), record(1, situation="別の状況です")], 2, "situation", "different text"),
    ("situation emotion differs", [record(0), record(1, emotion="Fear")], 2, "emotion", "situation"),
    ("turn too long", [record(0, patient="あ" * (io.MAX_TURN_CHARS + 1))], 1, "patient", "limit"),
    ("not a string", [record(0, patient=42)], 1, "patient", "must be a string"),
    ("bad status", [record(0, status="done")], 1, "status", "not one of"),
    ("list as source", [record(0, source=["crowd"])], 1, "source", "not one of"),
    ("null author", [record(0, author=None)], 1, "author", "must be a string"),
    ("id too long", [record(0, dialogue_id="d" * 129)], 1, "dialogue_id", "longer than 128"),
    ("lowercase label with a typo", [record(0, emotion="admirtion")], 1, "emotion", "unknown emotion"),
]


@pytest.mark.parametrize(("desc", "lines", "line", "field", "msg"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_line_field_and_changes_nothing(store, base_file, tmp_path, desc, lines, line, field, msg):
    import_file(store, base_file)
    before = counts(store)
    bad = tmp_path / "bad.jsonl"
    # A valid new record first, so a half-import would be visible.
    rows = [record(900, sit=900), *lines]
    bad.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                   encoding="utf-8")
    with pytest.raises(InputError) as ei:
        import_file(store, bad)
    problem = ei.value.problems[0]
    assert problem.file == str(bad)
    assert problem.line == line + 1
    assert problem.field == field
    assert msg in problem.message
    assert str(bad) in str(ei.value) and f":{line + 1}:" in str(ei.value)
    assert counts(store) == before
    # validate reports the same problem without a store
    assert any(p.line == line + 1 and p.field == field for p in validate_file(bad).problems)


def test_conflict_with_stored_content(store, base_file, tmp_path):
    import_file(store, base_file)
    before = counts(store)
    changed = write_jsonl(tmp_path / "c.jsonl", [record(0, supporter="別の返答です。")])
    with pytest.raises(InputError, match="already stored with different content"):
        import_file(store, changed)
    other_text = write_jsonl(tmp_path / "o.jsonl", [record(999, sit=0, situation="書き換えた状況")])
    with pytest.raises(InputError, match="different text in the store"):
        import_file(store, other_text)
    assert counts(store) == before


def test_not_utf8_says_which_encoding(store, tmp_path):
    path = tmp_path / "sjis.jsonl"
    text = "".join(json.dumps(record(i), ensure_ascii=False) + "\n" for i in range(3))
    path.write_bytes(text.encode("cp932"))
    with pytest.raises(InputError) as ei:
        import_file(store, path)
    p = ei.value.problems[0]
    assert p.line == 1 and "not UTF-8" in p.message and "Shift_JIS" in p.message
    assert counts(store) == (0, 0)


def test_all_problems_reported_at_once(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("{bad\n" + json.dumps(record(1, supporter="")) + "\n" + json.dumps(record(2, emotion="x")) + "\n",
                    encoding="utf-8")
    problems = validate_file(path).problems
    assert [(p.line, p.field) for p in problems] == [(1, None), (2, "supporter"), (3, "emotion")]


def test_csv_bad_row_names_row_and_column(store, tmp_path):
    path = tmp_path / "x.csv"
    rows = [record(0), record(1, emotion="???")]
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(InputError) as ei:
        import_file(store, path)
    assert (ei.value.problems[0].line, ei.value.problems[0].field) == (3, "emotion")
    assert counts(store) == (0, 0)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_import_round_trip_without_loss(store, tmp_path, fmt, db_url):
    rows = [record(i, condition="diabetes", stage="treatment", author=f"w{i % 2}", note={"k": i}) for i in range(12)]
    rows[0]["status"] = "flagged"
    rows[1]["patient"] = 'カンマ,引用符"と\n改行を含む発話'
    import_file(store, write_jsonl(tmp_path / "in.jsonl", rows))
    out = tmp_path / f"out.{fmt}"
    export_store(store, out, fmt)
    from emplifai.store.db import Store

    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    import_file(other, out)
    again = tmp_path / "again.jsonl"
    export_store(other, again, "jsonl")
    first = tmp_path / "first.jsonl"
    export_store(store, first, "jsonl")
    assert again.read_text(encoding="utf-8") == first.read_text(encoding="utf-8")
    exported = [json.loads(x) for x in first.read_text(encoding="utf-8").splitlines()]
    by_id = {r["dialogue_id"]: r for r in exported}
    for r in rows:
        got = by_id[r["dialogue_id"]]
        for k, v in r.items():
            assert got[k] == v, (k, got[k], v)


def test_hf_datasetdict_export_follows_split_and_reimports(store, tmp_path):
    import_file(store, write_jsonl(tmp_path / "in.jsonl", [record(i) for i in range(28 * 3 * 10)]))
    make_split(store, seed=1)
    out = tmp_path / "hf"
    counts_by_split = export_store(store, out, "hf")
    from datasets import load_from_disk

    dd = load_from_disk(str(out))
    assert set(dd) == {"train", "validation", "test"}
    assert {k: len(v) for k, v in dd.items()} == counts_by_split
    sits = {k: set(v["situation_id"]) for k, v in dd.items()}
    assert not (sits["train"] & sits["test"]) and not (sits["train"] & sits["validation"])
    from emplifai.store.db import Store

    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    assert import_file(other, out).dialogues_added == 28 * 3 * 10


def test_removed_dialogues_are_not_exported_by_default(store, tmp_path):
    import_file(store, write_jsonl(tmp_path / "in.jsonl", [record(0), record(1, status="removed")]))
    out = tmp_path / "o.jsonl"
    assert export_store(store, out, "jsonl") == {"all": 1}
    assert export_store(store, out, "jsonl", statuses=["removed"]) == {"all": 1}
    assert json.loads(out.read_text(encoding="utf-8"))["dialogue_id"] == "d00001"


def test_many_batches_import_whole_and_a_late_duplicate_rolls_back_everything(store, tmp_path):
    # 4,500 rows = three batches: a duplicate of batch 1 on the last line is found through the store.
    n = 4500
    good = write_jsonl(tmp_path / "good.jsonl", [record(i, meta_note=f"n{i}") for i in range(n)])
    bad_rows = [record(i) for i in range(n)] + [record(7, patient="別の内容")]  # batch 1's id, last line
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**r, "dialogue_id": "x" + r["dialogue_id"]} for r in bad_rows])
    with pytest.raises(InputError) as err:
        import_file(store, bad)
    assert [(p.line, p.field) for p in err.value.problems] == [(n + 1, "dialogue_id")]
    assert counts(store) == (0, 0)
    rep = import_file(store, good)
    assert (rep.dialogues_added, rep.situations_added) == (n, n // 3)
    with store.transaction() as s:
        d = s.get(Dialogue, "d04499")
        assert d.meta == {"meta_note": "n4499"} and d.created_at is not None and d.created_at.year >= 2026
        assert d.situation.emotion == record(4499)["emotion"]
