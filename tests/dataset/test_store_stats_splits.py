"""Store, review history, statistics and splits on both databases."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import select

from emplifai import taxonomy
from emplifai.dataset import stats
from emplifai.dataset.ingest import bundled_corpus_path, import_file
from emplifai.dataset.splits import allocate, make_split
from emplifai.errors import UserError
from emplifai.records import Action, Status
from emplifai.store.db import Store, resolve_url
from emplifai.store.repo import history, iter_records, modify_dialogue, require_manifest, set_status, split_of


@pytest.fixture
def sample_store(store):
    import_file(store, bundled_corpus_path())
    return store


def test_url_resolution(monkeypatch):
    assert resolve_url(None) == "sqlite:///emplifai.db"
    assert resolve_url("x/y.db") == "sqlite:///x/y.db"
    assert resolve_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    monkeypatch.setenv("EMPLIFAI_DB", "sqlite:///env.db")
    assert resolve_url(None) == "sqlite:///env.db"
    assert resolve_url("sqlite:///flag.db") == "sqlite:///flag.db"


def test_migrations_create_core_tables(store):
    assert {"situations", "dialogues", "review_events", "split_manifests", "split_members",
            "alembic_version"} <= set(store.tables())
    Store(store.url)  # opening again is a no-op, not an error


def test_edit_never_erases_history(sample_store):
    with sample_store.transaction() as s:
        d = modify_dialogue(s, "d-joy-01-1", actor="ra1", supporter="新しい返答です。", reason="typo")
        set_status(s, d.id, Status.FLAGGED, actor="ra1", action=Action.FLAG, reason="要確認")
        set_status(s, d.id, Status.APPROVED, actor="lead", action=Action.KEEP)
    with sample_store.transaction() as s:
        events = history(s, "dialogue", "d-joy-01-1")
        assert [(e.actor, e.action, e.field) for e in events] == [
            ("ra1", "modify", "supporter"), ("ra1", "flag", "status"), ("lead", "keep", "status")]
        assert events[0].before.startswith("ご主人の") and events[0].after == "新しい返答です。"
        assert events[1].reason == "要確認"
        with pytest.raises(UserError, match="may not be empty"):
            modify_dialogue(s, "d-joy-01-1", actor="ra1", patient="  ")


def test_sample_statistics_match_the_paper_shape(sample_store):
    with sample_store.transaction() as s:
        r = stats.compute(iter_records(s))
    assert r["situations"] == 280 and r["dialogues"] == 840
    assert all(e["situations"] == 10 and e["dialogues"] == 30 for e in r["emotions"].values())
    assert r["groups"]["Positive"] == {"situations": 120, "dialogues": 360}
    assert r["groups"]["Neutral"] == {"situations": 10, "dialogues": 30}
    assert r["dialogues_per_pair"]["min"] == r["dialogues_per_pair"]["max"] == 3
    assert r["balance"]["dialogues_normalised_entropy"] == 1.0
    assert r["duplicates"]["exact"] == 0


def test_stats_duplicates_and_imbalance():
    from emplifai.records import Record

    def rec(i, emotion, patient):
        return Record(f"d{i}", f"s{i}", emotion, "状況", patient, "支援者の返答です。よく話してくれましたね。")

    long = "今日は病院で検査を受けてきて、結果を聞くのがとても怖かったけれど、先生が丁寧に説明してくれた。"
    recs = [rec(1, "Joy", long), rec(2, "Joy", long), rec(3, "Fear", long + "ほんとうに"), rec(4, "Fear", "全然違う話")]
    r = stats.compute(recs)
    assert r["duplicates"]["exact"] == 1
    assert r["duplicates"]["near"] == 3  # the two identical ones and the near copy
    assert 0 < r["balance"]["dialogues_normalised_entropy"] < 0.25
    assert stats.normalised_entropy([5] * 28) == 1.0


@pytest.mark.parametrize(("n", "expected"), [(10, (8, 1, 1)), (3, (1, 1, 1)), (2, (2, 0, 0)), (15, (11, 2, 2))])
def test_allocate(n, expected):
    assert allocate(n, (0.8, 0.1, 0.1)) == expected


def test_split_is_grouped_stratified_stored_and_reproducible(sample_store):
    res = make_split(sample_store, seed=42)
    assert res.sizes == {"train": {"situations": 224, "dialogues": 672},
                         "validation": {"situations": 28, "dialogues": 84},
                         "test": {"situations": 28, "dialogues": 84}}
    with sample_store.transaction() as s:
        m = require_manifest(s)
        assert (m.seed, m.content_hash) == (42, res.content_hash)
        mapping = split_of(s, m)
        emotions = {r.situation_id: r.emotion for r in iter_records(s)}
        per_split = {sp: Counter(emotions[sid] for sid, x in mapping.items() if x == sp) for sp in ("train", "test")}
        assert set(per_split["test"].values()) == {1} and len(per_split["test"]) == 28
        assert set(per_split["train"].values()) == {8}
        test_ids = {r.situation_id for r in iter_records(s, split="test")}
        train_ids = {r.situation_id for r in iter_records(s, split="train")}
        assert not test_ids & train_ids
    again = make_split(sample_store, seed=42)
    other = make_split(sample_store, seed=7)
    with sample_store.transaction() as s:
        from emplifai.store.models import SplitManifest, SplitMember

        def members(mid):
            return dict(s.execute(select(SplitMember.situation_id, SplitMember.split)
                                  .where(SplitMember.manifest_id == mid)).all())
        assert members(again.manifest_id) == members(res.manifest_id)
        assert members(other.manifest_id) != members(res.manifest_id)
        assert require_manifest(s).id == other.manifest_id == max(s.scalars(select(SplitManifest.id)))


def test_split_errors(store):
    with pytest.raises(UserError, match="import a dataset first"):
        make_split(store)
    with pytest.raises(UserError, match="sum to 1"):
        make_split(store, fractions=(0.5, 0.1, 0.1))
    with store.transaction() as s, pytest.raises(UserError, match="dataset split"):
        list(iter_records(s, split="test"))


def test_sample_corpus_shape_and_content():
    rows = [json.loads(x) for x in bundled_corpus_path().read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 840
    sits = {}
    for r in rows:
        assert r["emotion"] in taxonomy.BY_EN and r["source"] == "sample"
        sits.setdefault(r["situation_id"], []).append(r)
    assert len(sits) == 280
    for sid, group in sits.items():
        assert len(group) >= 3
        assert len({g["situation"] for g in group}) == 1, sid
        assert len({g["patient"] for g in group}) == len(group), sid  # dialogues of a situation differ
        assert len({g["supporter"] for g in group}) == len(group), sid
    conditions = Counter(r["condition"] for r in rows)
    assert len(conditions) >= 12 and {r["stage"] for r in rows} == {
        "diagnosis", "treatment", "relapse", "self_management", "family_work"}


def test_split_groups_situations_that_share_their_text(store: Store, tmp_path) -> None:
    """Regression: two ids with the same situation text landed in train and test (grouping by id only)."""
    from tests.helpers import record, write_jsonl

    rows = [record(i, sit=i // 2, emotion="Joy") for i in range(60)]
    twins = {}
    for k in range(10):  # ten situations get a twin: the same text (up to width and spacing) under a new id
        src = rows[2 * k]
        twin = dict(src, dialogue_id=f"t{k:03d}", situation_id=f"twin{k:02d}",
                    situation=src["situation"].replace("：", ":") + "  ")
        twins[twin["situation_id"]] = src["situation_id"]
        rows.append(twin)
    import_file(store, write_jsonl(tmp_path / "twins.jsonl", rows))
    res = make_split(store, seed=3)
    assert res.merged == 10
    with store.open_session() as s:
        where = split_of(s, require_manifest(s))
    assert {where[t] == where[o] for t, o in twins.items()} == {True}
    assert len({where[o] for o in twins.values()}) > 1  # the twins are not simply all in one split


def test_empty_statistics_report_nothing_rather_than_zero() -> None:
    out = stats.compute([])
    assert out["lengths_chars"]["patient"]["mean"] is None and out["dialogues_per_pair"]["mean"] is None
    assert out["dialogues"] == 0 and out["balance"]["dialogues_normalised_entropy"] is None
