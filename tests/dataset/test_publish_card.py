"""The dataset card's collection protocol (a real campaign: claims, reviews, rejections, pay ledger) and its
Table 2 section (a stored, signed result), and `publish` on a store whose validation and test splits are empty."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from emplifai.collect import assign, review
from emplifai.dataset.export import export_store
from emplifai.dataset.ingest import import_file
from emplifai.dataset.splits import make_split
from emplifai.llm import FakeLLM
from emplifai.predict import validate
from emplifai.provenance import json_digest
from emplifai.records import Kind
from emplifai.store.collect import User
from emplifai.store.db import Store
from emplifai.store.models import ReviewEvent
from emplifai.study.publish import publish
from tests.collect.fixtures import bulk_workers, campaign, users
from tests.helpers import record, write_jsonl
from tests.predict.fixtures import label_scores


@pytest.fixture(autouse=True)
def _salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPLIFAI_PUBLISH_SALT", "card-test-salt")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _user(store: Store, uid: int) -> User:
    with store.open_session() as s:
        u = s.get(User, uid)
        assert u is not None
        return u


def _campaign(store: Store) -> None:
    """Round 1: 4 situations written, 3 approved, 1 rejected, its slot rewritten (pending); round 2: one dialogue
    written and approved. Pay: 3 × ¥12 + 1 × ¥70."""
    cid = campaign(store, "spring", emotions=["Joy", "Fear"], round1_target=2, round2_target=1, pay_situation=12,
                   pay_dialogue=70, rejection_cap=0.25)
    rev = _user(store, users(store, ("rev", "reviewer"))["rev"])
    ws = bulk_workers(store, 6)
    claims = []
    for w in ws[:4]:
        c = assign.claim(store, cid, w, Kind.SITUATION)
        assert c is not None
        assign.submit(store, c.claim_id, w, {"situation": f"通院の帰りに起きた出来事です（{w}）。"})
        claims.append(c)
    review.reject(store, claims[0].claim_id, rev, "状況が短すぎます")
    for c in claims[1:]:
        review.approve(store, c.claim_id, rev)
    again = assign.claim(store, cid, ws[4], Kind.SITUATION)  # the rejected slot went back to the pool
    assert again is not None
    assign.submit(store, again.claim_id, ws[4], {"situation": "検査を待つ間の出来事です。"})
    d = assign.claim(store, cid, ws[5], Kind.DIALOGUE)
    assert d is not None
    assign.submit(store, d.claim_id, ws[5], {"patient": "検査の結果が良くて安心しました。",
                                             "supporter": "本当によかったですね。"})
    review.approve(store, d.claim_id, rev)


def test_card_collection_protocol_and_table2_from_the_store(store: Store, tmp_path: Path) -> None:
    import_file(store, write_jsonl(tmp_path / "d.jsonl", [record(i, sit=i // 2) for i in range(56)]))
    _campaign(store)
    make_split(store, seed=42, fractions=(0.8, 0.1, 0.1))
    with store.open_session() as s:
        events = dict(s.execute(select(ReviewEvent.action, func.count()).group_by(ReviewEvent.action)).all())
    assert events["approve"] == 4 and events["reject"] == 1
    live = sum(export_store(store, tmp_path / "all.jsonl", "jsonl").values())
    FakeLLM.named("t2").enqueue([label_scores("Joy")] * live)
    res = validate.validate_taxonomy(store, models=["fake:t2"], split="all", baseline=False, out=tmp_path / "o",
                                     notify=lambda m: None)
    sheet = publish(store, tmp_path / "pub")
    card = (tmp_path / "pub" / "README.md").read_text(encoding="utf-8")

    col = sheet["collection"]
    assert col["campaigns"] == [{"name": "spring", "emotions": 2, "round1_situations_per_emotion": 2,
                                 "round2_dialogues_per_pair": 1, "pay_yen": {"situation": 12, "dialogue": 70,
                                                                             "rating": 500},
                                 "rejection_cap": 0.25}]
    assert col["workers"] == 6
    assert col["claims"]["situation"] == {"claims": {"approved": 3, "rejected": 1, "pending": 1}, "reviewed": 4,
                                          "rejection_rate": 0.25}
    assert col["claims"]["dialogue"] == {"claims": {"approved": 1}, "reviewed": 1, "rejection_rate": 0.0}
    assert col["pay"] == {"situation": {"entries": 3, "yen": 36}, "dialogue": {"entries": 1, "yen": 70}}
    assert col["review_events"] == dict(sorted(events.items()))
    assert "| spring | 2 | 2 | 1 | 12 / 70 / 500 | 25% |" in card
    assert "- situation submissions: approved 3, pending 1, rejected 1; rejection rate 0.250 of 4 reviewed" in card
    assert "- dialogue submissions: approved 1; rejection rate 0.000 of 1 reviewed" in card
    assert "- workers: 6 (pseudonymised in `author`)" in card
    assert "- paid: dialogue: 1 entries, ¥70, situation: 3 entries, ¥36" in card
    assert "- review history: " + ", ".join(f"{k} {v}" for k, v in sorted(events.items())) in card
    assert "w0000" not in card  # worker names never reach the card

    # Table 2: the stored row with its signature, as the predict stage signed it
    [entry] = [r["entry"] for r in res]
    [t2] = sheet["table2"]
    assert (t2["model"], t2["split"], t2["n"], t2["run_id"]) == ("fake:t2", "all", live, entry["run_id"])
    assert t2["accuracy"] == entry["accuracy"] and t2["signature"] == entry["signature"]
    assert t2["signature_digest"] == json_digest(entry["signature"])
    assert t2["signature"]["predictions"]["llm"]["backend"] == "fake"
    assert (f"| fake:t2 | all | {live} | {entry['accuracy']:.3f} | {entry['macro_f1']:.3f} |" in card
            and f"`{t2['signature_digest']}` |" in card)
    assert "Not computed yet" not in card


def test_publish_with_empty_validation_and_test_splits_loads_back(store: Store, tmp_path: Path) -> None:
    """Regression: three situations split 0.8/0.1/0.1 leave validation and test empty; datasets saved them with
    no shard, and load_from_disk then raised IndexError."""
    from datasets import load_from_disk

    import_file(store, write_jsonl(tmp_path / "d.jsonl", [record(i, sit=i) for i in range(3)]))
    sizes = make_split(store, seed=42, fractions=(0.8, 0.1, 0.1)).sizes
    assert sizes["validation"]["dialogues"] == sizes["test"]["dialogues"] == 0
    sheet = publish(store, tmp_path / "pub")
    assert sheet["splits"] == {"train": 3, "validation": 0, "test": 0}
    ds = load_from_disk(str(tmp_path / "pub"))
    assert list(ds) == ["train", "validation", "test"]
    assert ds["train"].num_rows == 3 and ds["validation"].num_rows == ds["test"].num_rows == 0
    assert list(ds["validation"]) == [] and ds["test"].column_names == ds["train"].column_names
    assert "| validation | 0 |" in (tmp_path / "pub" / "README.md").read_text(encoding="utf-8")
