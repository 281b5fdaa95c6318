"""Prediction runs with a scripted LLM: generate and score modes, storage, resume (both databases)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai import taxonomy
from emplifai.errors import UserError
from emplifai.llm.fake import FakeLLM
from emplifai.predict import prompt as predict_prompt
from emplifai.predict import runs, validate
from emplifai.store.db import Store
from emplifai.store.predict import Prediction
from tests.predict.fixtures import label_scores, seed_store

LIMIT = 6


def _rows(store: Store, rid: str) -> list[Prediction]:
    return runs.load_predictions(store, rid)


def test_generate_mode_maps_labels_and_keeps_unparsable_answers(store: Store, tmp_path: Path) -> None:
    seed_store(store, tmp_path)
    items, *_ = runs.select_items(store, "test", LIMIT)
    answers = ["喜び", " 悲しみ。\n余計な説明", "よくわかりません", "Joy", "怒り", "感情は不明です"]
    llm = FakeLLM("gen").enqueue(answers)
    s = runs.predict_split(store, llm, "fake:gen", runs.PredictConfig(mode="generate"), split="test", limit=LIMIT)
    assert (s.total, s.skipped, s.done) == (LIMIT, 0, LIMIT)
    assert s.counts == {"ok": 4, "unparsed": 2}
    rows = {r.dialogue_id: r for r in _rows(store, s.run_id)}
    got = [rows[it.dialogue_id] for it in items]
    assert [r.predicted for r in got] == ["Joy", "Sadness", None, "Joy", "Anger", None]
    assert [r.gold for r in got] == [it.emotion for it in items]
    for r, raw in zip(got, answers, strict=True):
        assert r.raw_output == raw.split("\n")[0]  # the stop sequence cut the second line
        assert r.reason  # how the label was read, or why not
    assert got[2].status == "unparsed" and got[2].raw_output == "よくわかりません"
    assert got[0].signature["prompt_version"] == predict_prompt.PROMPT_VERSION
    assert got[0].signature["llm"]["backend"] == "fake"
    assert all(c.method == "complete" for c in llm.calls)


def test_score_mode_stores_top1_top3_and_distribution(store: Store, tmp_path: Path) -> None:
    seed_store(store, tmp_path)
    llm = FakeLLM("sc").enqueue([label_scores("Fear", second="Joy", third="Anger")] * 2)
    s = runs.predict_split(store, llm, "fake:sc", runs.PredictConfig(), split="test", limit=2)
    assert s.counts == {"ok": 2}
    row = _rows(store, s.run_id)[0]
    assert row.predicted == "Fear" and row.top3 == ["Fear", "Joy", "Anger"] and row.mode == "score"
    prob = row.distribution["prob"]
    assert set(prob) == {lab.en for lab in taxonomy.LABELS}
    assert sum(prob.values()) == pytest.approx(1.0)
    assert prob["Fear"] > prob["Joy"] > prob["Anger"] > prob["Love"]
    assert row.distribution["loglik"]["Fear"] == -1.0
    prompt, cands = llm.calls[0].input
    assert cands == predict_prompt.candidates() and prompt.endswith("感情：")


def test_calibration_divides_by_the_content_free_distribution(store: Store, tmp_path: Path) -> None:
    seed_store(store, tmp_path)
    # content-free prior strongly favours fear: after calibration joy wins
    prior = label_scores("Fear")
    llm = FakeLLM("cal").enqueue([prior, prior, label_scores("Fear", second="Joy")])
    s = runs.predict_split(store, llm, "fake:cal", runs.PredictConfig(calibrate=True), split="test", limit=1)
    row = _rows(store, s.run_id)[0]
    assert row.predicted == "Joy" and "calibrated" in row.distribution
    assert len(llm.calls) == 3  # two content-free inputs, then the item


def test_failures_are_stored_and_retried_and_finished_items_are_kept(store: Store, tmp_path: Path) -> None:
    seed_store(store, tmp_path)
    cfg = runs.PredictConfig(mode="generate")
    llm = FakeLLM("res").enqueue(["喜び", ConnectionError("server down"), "わからない", "恐れ"])
    s1 = runs.predict_split(store, llm, "fake:res", cfg, split="test", limit=4)
    assert s1.counts == {"ok": 2, "failed": 1, "unparsed": 1}
    before = {r.dialogue_id: (r.id, r.created_at, r.status, r.reason) for r in _rows(store, s1.run_id)}
    failed = [d for d, v in before.items() if v[2] == "failed"]
    assert len(failed) == 1 and "ConnectionError: server down" in before[failed[0]][3]

    llm.enqueue(["悲しみ"])
    s2 = runs.predict_split(store, llm, "fake:res", cfg, split="test", limit=4)
    assert (s2.run_id, s2.total, s2.skipped, s2.done) == (s1.run_id, 4, 3, 1)
    assert llm.pending == 0 and len(llm.calls) == 5
    after = {r.dialogue_id: (r.id, r.created_at, r.status, r.reason) for r in _rows(store, s1.run_id)}
    for d, v in before.items():
        if d not in failed:
            assert after[d] == v  # untouched: same row, same timestamp
    assert after[failed[0]][2] == "ok" and after[failed[0]][0] == before[failed[0]][0]
    with store.transaction() as ses:
        assert len(list(ses.scalars(select(Prediction)))) == 4

    # a different setting is a different run: nothing reused
    s3 = runs.predict_split(store, FakeLLM("echo"), "fake:echo", runs.PredictConfig(), split="test", limit=4)
    assert s3.run_id != s1.run_id and s3.skipped == 0


def test_validate_taxonomy_library_call_writes_table2(store: Store, tmp_path: Path) -> None:
    seed_store(store, tmp_path)
    FakeLLM.reset_all()
    FakeLLM.named("t2").enqueue([label_scores(lab) for lab in ["Joy"] * 3])
    seen: list[tuple[str, int, int]] = []
    msgs: list[str] = []
    res = validate.validate_taxonomy(store, models=["fake:t2"], limit=3, baseline=False, out=tmp_path / "o",
                               notify=msgs.append, progress=lambda *a: seen.append(a))
    assert [r["entry"]["model"] for r in res] == ["fake:t2"]
    assert seen[0] == ("fake:t2", 0, 3) and seen[-1] == ("fake:t2", 3, 3)
    assert (tmp_path / "o" / "table2.json").is_file() and any("wrote" in m for m in msgs)
    with pytest.raises(UserError, match="hf:DIR"):
        validate.validate_taxonomy(store, models=["nonsense"], out=tmp_path / "o")
    with pytest.raises(UserError, match="mode"):
        validate.validate_taxonomy(store, models=["fake:t2"], mode="guess", out=tmp_path / "o")  # type: ignore[arg-type]


def test_table2_is_stored_signed_and_read_back_without_the_files(store: Store, tmp_path: Path) -> None:
    """Stages meet in the store: Table 2 is a stored metrics row per run, not table2.json."""
    import shutil

    from emplifai.predict import table2

    seed_store(store, tmp_path)
    FakeLLM.named("t2s").enqueue([label_scores(lab) for lab in ["Joy", "Joy", "Fear"]])
    res = validate.validate_taxonomy(store, models=["fake:t2s"], limit=3, baseline=False, out=tmp_path / "o",
                                     notify=lambda m: None)
    shutil.rmtree(tmp_path / "o")  # the files are for people; nothing below reads them
    run_id = res[0]["entry"]["run_id"]
    got = table2.stored_results(store, [run_id], "test")
    assert [g["entry"]["run_id"] for g in got] == [run_id]
    entry = got[0]["entry"]
    assert entry["model"] == "fake:t2s" and entry["n"] == 3
    assert entry["accuracy"] == res[0]["entry"]["accuracy"]
    assert entry["signature"]["metrics"] and entry["signature"]["predictions"]["llm"]["backend"] == "fake"
    assert set(got[0]["metrics"]["per_emotion"]) == {lab.en for lab in taxonomy.LABELS}
    assert "Table 2" in table2.markdown(got, "test")
    assert table2.stored_results(store, [run_id], "validation") == []
    # recomputing the same run replaces its row instead of adding a second one
    FakeLLM.named("t2s").enqueue([label_scores(lab) for lab in ["Joy", "Joy", "Fear"]])
    validate.validate_taxonomy(store, models=["fake:t2s"], limit=3, baseline=False, out=tmp_path / "o",
                               notify=lambda m: None)
    assert len(table2.stored_results(store, [run_id], "test")) == 1


def test_limit_takes_a_stratified_subset_not_the_first_rows(store: Store, tmp_path: Path) -> None:
    """Regression: --limit N took the first N dialogues of the split (all Admiration/Amusement/Anger)."""
    seed_store(store, tmp_path)
    items, *_ = runs.select_items(store, "test", None)
    some, *_ = runs.select_items(store, "test", 5)
    emotions_in_split = {it.emotion for it in items}
    assert len(some) == min(5, len(items)) and len({it.emotion for it in some}) == min(5, len(emotions_in_split))
    assert [it.dialogue_id for it in runs.select_items(store, "test", 5)[0]] == [it.dialogue_id for it in some]


def test_split_all_predicts_every_pair_without_a_manifest(store: Store, tmp_path: Path, monkeypatch) -> None:
    """Issue 15 item 2: the paper scored every pair (n = 4,125); `all` needs no split and the baseline predicts
    each pair out of fold (trained on the folds its situation is not in)."""
    from emplifai.dataset.ingest import import_file
    from emplifai.predict import baseline
    from emplifai.predict.table2 import stored_results
    from tests.helpers import record, write_jsonl

    rows = [record(i, sit=i // 2) for i in range(56)]  # 28 situations, one per emotion, two dialogues each
    import_file(store, write_jsonl(tmp_path / "d.jsonl", rows))
    with pytest.raises(UserError, match="dataset split"):  # a named split still needs the manifest
        runs.select_items(store, "test", None)
    items, pool, mid, _ = runs.select_items(store, "all", None)
    assert len(items) == 56 and mid is None and pool == items
    trained_on: list[set[str]] = []
    scored: list[set[str]] = []
    fit, dist = baseline.TfidfBaseline.fit, baseline.TfidfBaseline.distribution
    monkeypatch.setattr(baseline.TfidfBaseline, "fit",
                        lambda self, train: trained_on.append({r.situation_id for r in train}) or fit(self, train))
    monkeypatch.setattr(baseline.TfidfBaseline, "distribution",
                        lambda self, part: scored.append({r.situation_id for r in part}) or dist(self, part))
    FakeLLM.named("all").enqueue([label_scores(it.emotion) for it in items])
    res = validate.validate_taxonomy(store, models=["fake:all"], split="all", baseline=True, out=tmp_path / "o",
                                     notify=lambda m: None)
    by_model = {r["entry"]["model"]: r["entry"] for r in res}
    assert by_model["fake:all"]["n"] == 56 and by_model["fake:all"]["accuracy"] == 1.0
    assert by_model[baseline.SPEC]["n"] == 56 and by_model[baseline.SPEC]["failed"] == 0
    sig = by_model[baseline.SPEC]["signature"]["predictions"]["llm"]
    assert sig["cross_validation"] == {"folds": 5, "grouped_by": "situation"}
    assert len(trained_on) == 5 and set().union(*scored) == {r["situation_id"] for r in rows}
    for train, part in zip(trained_on, scored, strict=True):
        assert not train & part  # out of fold: no pair scored by a model that saw its situation
    assert stored_results(store, [by_model["fake:all"]["run_id"]], "all")[0]["entry"]["n"] == 56
    with pytest.raises(UserError, match="unknown split"):
        validate.validate_taxonomy(store, models=["fake:all"], split="everything", out=tmp_path / "o")
