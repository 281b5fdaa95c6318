"""Assignment, leases, review and pay against the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from emplifai.collect import assign, review
from emplifai.collect.assign import Conflict, NotFound
from emplifai.collect.campaigns import ledger, ledger_csv, rejection_state, seed_round2, worker_stats
from emplifai.dataset.export import export_store
from emplifai.errors import UserError
from emplifai.records import Kind
from emplifai.store import repo
from emplifai.store.collect import Campaign, Claim, ClaimStatus, Task, User
from emplifai.store.db import Store
from emplifai.store.models import Dialogue, Situation
from tests.collect.fixtures import bulk_workers, campaign, situations, users


def _user(store: Store, uid: int) -> User:
    with store.open_session() as s:
        u = s.get(User, uid)
        assert u is not None
        return u


def _live_per_task(store: Store) -> dict[int, int]:
    with store.open_session() as s:
        q = select(Claim.task_id, func.count()).where(Claim.status.in_(
            [ClaimStatus.LEASED, ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.FLAGGED])).group_by(
            Claim.task_id)
        return dict(s.execute(q).all())


def test_migration_creates_tables(store: Store) -> None:
    assert {"collect_users", "collect_campaigns", "collect_tasks", "collect_claims", "collect_pay"} <= set(
        store.tables())


def test_claim_spreads_across_emotions_and_never_repeats(store: Store) -> None:
    cid = campaign(store, emotions=["Joy", "Fear", "Anger"], round1_target=2)
    (w,) = bulk_workers(store, 1)
    got = [assign.claim(store, cid, w, Kind.SITUATION, rng=random.Random(i)) for i in range(3)]
    assert got[0] is not None and got[1] is not None
    assert got[1].reused and got[1].claim_id == got[0].claim_id  # one open lease per kind: handed back
    seen = []
    for i in range(3):
        c = assign.claim(store, cid, w, Kind.SITUATION, rng=random.Random(i))
        assert c is not None
        assign.submit(store, c.claim_id, w, {"situation": f"状況{i}"})
        seen.append(c.task_id)
    assert len(set(seen)) == 3  # every emotion once, never the same task twice
    assert assign.claim(store, cid, w, Kind.SITUATION) is None  # nothing left this worker has not done


def test_furthest_from_target_first(store: Store) -> None:
    cid = campaign(store, emotions=["Joy", "Fear"], round1_target=3)
    ws = bulk_workers(store, 3)
    with store.transaction() as s:
        joy = s.scalar(select(Task).where(Task.campaign_id == cid, Task.emotion == "Joy"))
        joy.filled = 2  # joy is nearly full (as if two others held it)
    for w in ws[:2]:
        c = assign.claim(store, cid, w, Kind.SITUATION)
        assert c is not None
        with store.open_session() as s:
            assert s.get(Task, c.task_id).emotion == "Fear"  # type: ignore[union-attr]


def test_expired_lease_returns_to_pool(store: Store) -> None:
    cid = campaign(store, emotions=["Joy"], round1_target=1, lease_seconds=60)
    a, b = bulk_workers(store, 2)
    first = assign.claim(store, cid, a, Kind.SITUATION, now=1000.0)
    assert first is not None
    assert assign.claim(store, cid, b, Kind.SITUATION, now=1030.0) is None  # full while the lease lives
    second = assign.claim(store, cid, b, Kind.SITUATION, now=1061.0)  # expired: b gets the slot
    assert second is not None and second.task_id == first.task_id
    with store.open_session() as s:
        assert s.get(Claim, first.claim_id).status == ClaimStatus.EXPIRED  # type: ignore[union-attr]
        assert s.get(Task, first.task_id).filled == 1  # type: ignore[union-attr]
    # a's late submission cannot overshoot: the slot is b's now
    with pytest.raises(Conflict):
        assign.submit(store, first.claim_id, a, {"situation": "遅れた提出"})


def test_release_frees_slot(store: Store) -> None:
    cid = campaign(store, emotions=["Joy"], round1_target=1)
    a, b = bulk_workers(store, 2)
    c = assign.claim(store, cid, a, Kind.SITUATION)
    assert c is not None
    assign.release(store, c.claim_id, a)
    assert assign.claim(store, cid, b, Kind.SITUATION) is not None
    with pytest.raises(NotFound):
        assign.release(store, c.claim_id, b)  # not b's claim


def test_round1_to_round2_review_pay_and_history(store: Store) -> None:
    cid = campaign(store, emotions=["Joy"], round1_target=2, round2_target=2)
    ids = users(store, ("rev", "reviewer"), ("boss", "lead"))
    rev, boss = _user(store, ids["rev"]), _user(store, ids["boss"])
    w1, w2 = bulk_workers(store, 2)
    c1 = assign.claim(store, cid, w1, Kind.SITUATION)
    assert c1 is not None
    sql_like = "'; DROP TABLE situations; -- 通院中の出来事"
    assign.submit(store, c1.claim_id, w1, {"situation": sql_like})
    assert assign.claim(store, cid, w1, Kind.DIALOGUE) is None  # no round-2 prompt before approval
    review.approve(store, c1.claim_id, rev)
    with store.open_session() as s:
        sit = s.scalar(select(Situation).where(Situation.author == "w0000"))
        assert sit.text == sql_like and sit.source == "crowd" and sit.status == "approved"
        assert s.scalar(select(func.count()).select_from(Task).where(Task.kind == Kind.DIALOGUE)) == 1
    d1 = assign.claim(store, cid, w2, Kind.DIALOGUE)
    assert d1 is not None
    assign.submit(store, d1.claim_id, w2, {"patient": "検査の結果が良くて", "supporter": "よかったですね"})
    review.modify(store, d1.claim_id, rev, {"supporter": "本当によかったですね"}, "丁寧に")
    review.flag(store, d1.claim_id, rev, "医療的な表現を確認")
    review.keep(store, d1.claim_id, boss)
    with store.open_session() as s:
        d = s.scalar(select(Dialogue))
        assert (d.status, d.supporter, d.source) == ("approved", "本当によかったですね", "crowd")
        hist = [(e.action, e.field, e.before, e.after) for e in repo.history(s, "dialogue", d.id)]
        assert ("modify", "supporter", "よかったですね", "本当によかったですね") in hist
        assert [h[0] for h in hist] == ["modify", "flag", "keep"]
        camp = s.get(Campaign, cid)
        assert ledger(s, camp) == [
            {"username": "w0000", "platform_id": "", "display_name": "w0", "situations": 1, "dialogues": 0,
             "ratings": 0, "amount_yen": 10},
            {"username": "w0001", "platform_id": "", "display_name": "w1", "situations": 0, "dialogues": 1,
             "ratings": 0, "amount_yen": 50}]
        assert ledger_csv(ledger(s, camp)).splitlines()[0] == (
            "username,platform_id,display_name,situations,dialogues,ratings,amount_yen")
        stats = {w.username: w for w in worker_stats(s, camp)}
        assert stats["w0001"].counts["approved"] == 1 and stats["w0001"].yen == 50
    n = export_store(store, __import__("pathlib").Path("out.jsonl"), "jsonl", statuses=["approved"])
    assert n == {"all": 1}


def test_reject_frees_slot_and_cap_is_enforced(store: Store) -> None:
    cid = campaign(store, emotions=["Joy", "Fear", "Anger"], round1_target=1, rejection_cap=0.30)
    rev = _user(store, users(store, ("rev", "reviewer"))["rev"])
    ws = bulk_workers(store, 4)
    claims = []
    for w in ws[:3]:
        c = assign.claim(store, cid, w, Kind.SITUATION)
        assert c is not None
        assign.submit(store, c.claim_id, w, {"situation": "状況です"})
        claims.append(c)
    with pytest.raises(Conflict, match="上限"):  # 1 of 3 would be 33% > 30%
        review.reject(store, claims[0].claim_id, rev, "短すぎる")
    with pytest.raises(UserError):
        review.reject(store, claims[0].claim_id, rev, "")  # a reason is required
    with store.transaction() as s:  # make room: 10 submissions allow 3 rejections
        assert rejection_state(s, s.get(Campaign, cid)) == (0, 3)
    cid2 = campaign(store, "c2", emotions=["Joy"], round1_target=10)
    ws2 = bulk_workers(store, 10, prefix="x")
    cl2 = []
    for w in ws2:
        c = assign.claim(store, cid2, w, Kind.SITUATION)
        assert c is not None
        assign.submit(store, c.claim_id, w, {"situation": "状況です"})
        cl2.append(c)
    for c in cl2[:3]:
        review.reject(store, c.claim_id, rev, "内容が不適切")
    with pytest.raises(Conflict):
        review.reject(store, cl2[3].claim_id, rev, "4件目")
    with store.open_session() as s:
        task = s.get(Task, cl2[0].task_id)
        assert task.filled == 7  # type: ignore[union-attr]  # three rejected slots went back to the pool
    again = assign.claim(store, cid2, ws[3], Kind.SITUATION)
    assert again is not None
    assert assign.claim(store, cid2, ws2[0], Kind.SITUATION) is None  # the rejected worker never gets it again


def test_lead_remove_frees_slot(store: Store) -> None:
    cid = campaign(store, emotions=["Joy"], round1_target=1)
    ids = users(store, ("rev", "reviewer"), ("boss", "lead"))
    (w,) = bulk_workers(store, 1)
    c = assign.claim(store, cid, w, Kind.SITUATION)
    assert c is not None
    assign.submit(store, c.claim_id, w, {"situation": "有害な内容"})
    review.flag(store, c.claim_id, _user(store, ids["rev"]), "有害")
    with pytest.raises(Conflict):
        review.approve(store, c.claim_id, _user(store, ids["rev"]))
    review.remove(store, c.claim_id, _user(store, ids["boss"]), "有害なため")
    with store.open_session() as s:
        assert s.get(Task, c.task_id).filled == 0  # type: ignore[union-attr]
        assert s.scalar(select(Situation.status)) == "removed"


def test_seed_round2_from_store(store: Store) -> None:
    situations(store, ["Joy", "Fear", "Anger"], 2)
    cid = campaign(store, emotions=["Joy", "Fear"])
    with store.transaction() as s:
        assert seed_round2(s, s.get(Campaign, cid)) == 4
        assert seed_round2(s, s.get(Campaign, cid)) == 0  # idempotent


def _hammer(store: Store, cid: int, workers: list[int], kind: str, rounds: int) -> list[tuple[int, int, int]]:
    """Every worker claims `rounds` times from its own thread, all released at once; returns (worker, task, claim)."""
    got: list[tuple[int, int, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(w: int) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                c = assign.claim(store, cid, w, kind)
                if c is None:
                    return
                with lock:
                    got.append((w, c.task_id, c.claim_id))
                assign.submit(store, c.claim_id, w, {"patient": "患者", "supporter": "支援者"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return got


def test_concurrent_claims_never_overshoot(db_url: str) -> None:
    store = Store(db_url)
    situations(store, ["Joy", "Fear", "Anger", "Sadness"], 2)
    cid = campaign(store, emotions=["Joy", "Fear", "Anger", "Sadness"], round2_target=3)
    with store.transaction() as s:
        seed_round2(s, s.get(Campaign, cid))  # 8 pairs × 3 = 24 slots
    workers = bulk_workers(store, 24)
    got = _hammer(store, cid, workers, Kind.DIALOGUE, rounds=8)
    live = _live_per_task(store)
    with store.open_session() as s:
        tasks = {t.id: t for t in s.scalars(select(Task).where(Task.kind == Kind.DIALOGUE))}
        assert all(live.get(tid, 0) == t.filled <= t.target for tid, t in tasks.items())
        assert sum(live.values()) == 24  # every slot filled, none twice
    assert len({c for _, _, c in got}) == len(got) == 24  # no claim handed out twice
    assert max(Counter((w, t) for w, t, _ in got).values()) == 1  # no worker got a pair twice
    store.dispose()
