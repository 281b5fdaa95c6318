"""Regression tests for issue 12, items 4 (second half), 5, 6, 8 and 10: each failed before its fix."""

from __future__ import annotations

import random

from emplifai.collect import assign, review
from emplifai.records import Kind
from emplifai.store.collect import Task, User
from emplifai.store.db import Store
from tests.collect.fixtures import bulk_workers, campaign, users

SITUATION = "検査の結果を待つ間、ずっと落ち着かない日が続きました。"


def _user(store: Store, uid: int) -> User:
    with store.open_session() as s:
        u = s.get(User, uid)
        assert u is not None
        return u


def _approved_situation(store: Store, cid: int, writer: int, reviewer: User) -> str:
    c = assign.claim(store, cid, writer, Kind.SITUATION)
    assert c is not None
    claim = assign.submit(store, c.claim_id, writer, {"situation": SITUATION})
    review.approve(store, c.claim_id, reviewer)
    return str(claim.entity_id)


# ------------------------------------------------------------------------------------------- item 4
def test_a_worker_never_gets_the_round2_task_of_their_own_situation(store: Store) -> None:
    """Regression: the author of an approved situation was handed the dialogue task for it."""
    cid = campaign(store, emotions=["Joy", "Fear"], round1_target=1, round2_target=3)
    rev = _user(store, users(store, ("rev", "reviewer"))["rev"])
    writer, other = bulk_workers(store, 2)
    mine = _approved_situation(store, cid, writer, rev)
    for seed in range(5):
        assert assign.claim(store, cid, writer, Kind.DIALOGUE, rng=random.Random(seed)) is None
    theirs = _approved_situation(store, cid, other, rev)  # the other emotion's bucket
    got = assign.claim(store, cid, writer, Kind.DIALOGUE)
    assert got is not None
    with store.open_session() as s:
        assert s.get(Task, got.task_id).situation_id == theirs != mine  # type: ignore[union-attr]
    # round 1 and the other worker are unaffected by the filter
    got_other = assign.claim(store, cid, other, Kind.DIALOGUE)
    assert got_other is not None


def test_release_and_reclaim_cannot_reroll_the_emotion(store: Store) -> None:
    """Regression: releasing and claiming again drew a fresh random task each time, so a worker could repeat it
    until the emotion they wanted came up. Now the same task comes back until the released lease would end."""
    emotions = ["Joy", "Fear", "Anger", "Sadness", "Grief", "Pride"]
    cid = campaign(store, emotions=emotions, round1_target=2, lease_seconds=600)
    (w,) = bulk_workers(store, 1)
    first = assign.claim(store, cid, w, Kind.SITUATION, now=1000.0, rng=random.Random(0))
    assert first is not None
    seen = {first.task_id}
    for i in range(12):
        assign.release(store, (c := assign.claim(store, cid, w, Kind.SITUATION, now=1000.0 + i,
                                                 rng=random.Random(i + 1))).claim_id, w)  # type: ignore[union-attr]
        seen.add(c.task_id)  # type: ignore[union-attr]
    assert seen == {first.task_id}
    # once the released lease would have ended, claims draw freely again (the worker is not bound for ever)
    free = set()
    for i in range(6):
        c = assign.claim(store, cid, w, Kind.SITUATION, now=5000.0 + i * 1000, rng=random.Random(i))
        assert c is not None
        free.add(c.task_id)
        assign.release(store, c.claim_id, w)
    assert len(free) > 1
    # a pinned task that filled up meanwhile is not forced: the worker gets other work
    cid2 = campaign(store, "c2", emotions=["Joy", "Fear"], round1_target=1, lease_seconds=600)
    (a,) = bulk_workers(store, 1, prefix="x")
    ca = assign.claim(store, cid2, a, Kind.SITUATION, now=1000.0)
    assert ca is not None
    assign.release(store, ca.claim_id, a)
    with store.transaction() as s:
        s.get(Task, ca.task_id).filled = 1  # type: ignore[union-attr]  # as if someone else took it
    again = assign.claim(store, cid2, a, Kind.SITUATION, now=1001.0)
    assert again is not None and again.task_id != ca.task_id

