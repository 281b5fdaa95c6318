"""Assignment: atomic claims with expiring leases, release, and submission.

Choosing work (paper 3.3: randomised to reduce fatigue, balanced labels, a pair disabled once full):
among the worker's eligible buckets (open, not full, never done by this worker, and in round 2 never a situation
the worker wrote: nobody writes the dialogue for their own situation) take those furthest from their target,
prefer an emotion other than the worker's previous one, then pick at random.

No re-rolling: releasing a lease gives its slot back to the pool at once, but not the worker's choice. Until the
released lease would have expired, the worker's next claim of that kind hands back the same task (while it still
has room), so release-and-reclaim cannot be repeated until the emotion one wants comes up. A campaign wants this
because the hard emotions (Grief, Fear) would otherwise be skipped by everyone and fill last, from the few workers
who did not skip them; a worker who truly cannot write one waits out the lease, the same cost as letting it
expire. Deterministic per-worker picks were not enough: the pool changes between claims, so the pick would too.

Taking the slot is one conditional statement, ``UPDATE collect_tasks SET filled = filled + 1 WHERE id = :id AND
filled < target``: on PostgreSQL the row lock makes a concurrent claimer re-check the condition after the first
commits, on SQLite the whole claim runs under ``BEGIN IMMEDIATE``. A CHECK constraint repeats the rule in the
schema, and the unique (task, worker, live) key forbids handing a worker the same task twice. Expired leases are
swept back into the pool at the start of every claim (PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so sweepers never
wait on each other).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from emplifai.collect.inputs import check_text
from emplifai.collect.reconcile import new_code
from emplifai.collect.tx import is_sqlite, run_write
from emplifai.errors import UserError
from emplifai.evaluate import rubrics
from emplifai.evaluate.rubrics import METRICS
from emplifai.records import MAX_SITUATION_CHARS, MAX_TURN_CHARS, Kind, Source, Status
from emplifai.store.collect import Campaign, Claim, ClaimStatus, Task, User
from emplifai.store.db import Store
from emplifai.store.evaluation import Rating
from emplifai.store.models import Dialogue, Situation


class NotFound(UserError):
    """No such claim for this worker (another worker's claim looks exactly like a missing one)."""


class Conflict(UserError):
    """The request cannot be applied in the claim's current state."""


class LateWork(Conflict):
    """The lease ran out and its slot went to someone else: the work could not be accepted. It is kept on the
    claim (``Claim.answer``) and handed back here, so the page can show the worker what they wrote."""

    def __init__(self, message: str, answer: dict[str, Any]):
        super().__init__(message)
        self.answer = answer


LATE_JA = ("作業時間が過ぎ、この枠は他の方に割り当てられたため、提出を受け付けられませんでした。"
           "書いた内容は消えていません。下に表示していますので、コピーして保存してください。")


@dataclass(frozen=True, slots=True)
class Claimed:
    claim_id: int
    task_id: int
    reused: bool  # the worker already held an open lease of this kind: it is handed back instead


# The claim path runs hundreds of times a second: its statements are built once (bound parameters, Core rows
# instead of ORM objects), so each claim costs SQL time and little else.
_C, _T = Claim.__table__, Task.__table__
_STALE = select(_C.c.id).where(_C.c.status == ClaimStatus.LEASED, _C.c.expires_at <= bindparam("now"))
_SWEEP = {
    locked: update(_C).where(_C.c.id.in_((_STALE.with_for_update(skip_locked=True) if locked else _STALE)
                                         .scalar_subquery()))
    .values(status=ClaimStatus.EXPIRED, live=None).returning(_C.c.task_id)
    for locked in (False, True)
}
_GIVE_BACK = update(_T).where(_T.c.id == bindparam("tid")).values(filled=_T.c.filled - bindparam("n"))
_TAKE = (update(_T).where(_T.c.id == bindparam("tid"), _T.c.filled < _T.c.target, _T.c.enabled.is_(True))
         .values(filled=_T.c.filled + 1))
_LOCK_WORKER = select(User.__table__.c.id).where(User.__table__.c.id == bindparam("w")).with_for_update()
_CAMPAIGN = select(Campaign.__table__.c.id, Campaign.__table__.c.active, Campaign.__table__.c.paused,
                   Campaign.__table__.c.lease_seconds, Campaign.__table__.c.worker_quota)
_TAKEN = select(func.count()).select_from(_C).where(  # tasks the worker has taken (for the quota)
    _C.c.worker_id == bindparam("w"), _C.c.campaign_id == bindparam("c"),
    _C.c.status.not_in((ClaimStatus.EXPIRED, ClaimStatus.RELEASED)))
_HELD = select(_C.c.id, _C.c.task_id).where(
    _C.c.worker_id == bindparam("w"), _C.c.campaign_id == bindparam("c"), _C.c.kind == bindparam("k"),
    _C.c.status == ClaimStatus.LEASED).limit(1)
_DONE = select(_C.c.task_id).where(_C.c.worker_id == bindparam("w"), _C.c.campaign_id == bindparam("c"),
                                   _C.c.live == 1)
# Situations the worker wrote (any campaign, any outcome). Only round-2 tasks are filtered by it: their
# situation_id is never NULL, and NOT IN over a NULL column would drop round-1 and rating tasks altogether.
_OWN_SITUATIONS = select(_C.c.entity_id).where(_C.c.worker_id == bindparam("w"), _C.c.kind == Kind.SITUATION,
                                               _C.c.entity_id.is_not(None))
_OPEN_WHERE = (_T.c.campaign_id == bindparam("c"), _T.c.kind == bindparam("k"), _T.c.enabled.is_(True),
               _T.c.filled < _T.c.target, _T.c.id.not_in(_DONE))
_NEEDIEST = ((_T.c.target - _T.c.filled).desc(), func.random())  # the neediest, ties in random order
_OPEN = {
    kind: select(_T.c.id, _T.c.emotion, _T.c.target, _T.c.filled).where(
        *_OPEN_WHERE, *((_T.c.situation_id.not_in(_OWN_SITUATIONS),) if kind == Kind.DIALOGUE else ()))
    .order_by(*_NEEDIEST).limit(64)
    for kind in Kind
}
# The task of the worker's latest released lease that would still be running (see "No re-rolling" above).
_PINNED = (select(_C.c.task_id).where(
    _C.c.worker_id == bindparam("w"), _C.c.campaign_id == bindparam("c"), _C.c.kind == bindparam("k"),
    _C.c.status == ClaimStatus.RELEASED, _C.c.expires_at > bindparam("now"), _C.c.task_id.not_in(_DONE))
    .order_by(_C.c.id.desc()).limit(1))
_LAST = (select(_T.c.emotion).join(_C, _C.c.task_id == _T.c.id)
         .where(_C.c.worker_id == bindparam("w"), _C.c.campaign_id == bindparam("c"))
         .order_by(_C.c.id.desc()).limit(1))
_INSERT = insert(_C).returning(_C.c.id)


def sweep_expired(s: Session, now: float) -> int:
    """Expired leases give their slot back; returns how many were swept."""
    conn = s.connection()
    rows = conn.execute(_SWEEP[not is_sqlite(s)], {"now": now}).scalars().all()
    for task_id, n in sorted(Counter(rows).items()):  # sorted: a fixed lock order between sweepers
        conn.execute(_GIVE_BACK, {"tid": task_id, "n": n})
    return len(rows)


def _take_slot(s: Session, task_id: int) -> bool:
    return s.connection().execute(_TAKE, {"tid": task_id}).rowcount == 1


def _free_slot(s: Session, task_id: int) -> None:
    s.connection().execute(_GIVE_BACK, {"tid": task_id, "n": 1})


def _claim(s: Session, campaign_id: int, lease_seconds: int, worker_id: int, kind: str, now: float,
           rng: random.Random, quota: int | None = None) -> Claimed | None:
    conn = s.connection()
    key = {"w": worker_id, "c": campaign_id, "k": kind}
    if not is_sqlite(s):  # one claim at a time per worker (SQLite's write lock already serialises everything)
        conn.execute(_LOCK_WORKER, key)
    sweep_expired(s, now)
    held = conn.execute(_HELD, key).first()
    if held is not None:
        return Claimed(held.id, held.task_id, reused=True)
    if quota is not None and conn.execute(_TAKEN, key).scalar_one() >= quota:  # under the worker's row lock
        raise Conflict(f"このキャンペーンで受けられるタスクの上限（{quota}件）に達しました。ありがとうございました")

    def lease(task_id: int) -> Claimed:
        cid = conn.execute(_INSERT, {
            "campaign_id": campaign_id, "task_id": task_id, "worker_id": worker_id, "kind": kind,
            "status": ClaimStatus.LEASED, "live": 1, "leased_at": now, "expires_at": now + lease_seconds,
        }).scalar_one()
        return Claimed(cid, task_id, reused=False)

    pinned = conn.execute(_PINNED, {**key, "now": now}).scalar()
    if pinned is not None and _take_slot(s, pinned):  # released a moment ago: the same task again
        return lease(pinned)
    candidates = list(conn.execute(_OPEN[Kind(kind)], key).all())  # open, not full, not done, not own
    if not candidates:
        return None
    last = conn.execute(_LAST, key).scalar()
    while candidates:
        need = max(t.target - t.filled for t in candidates)
        top = [t for t in candidates if t.target - t.filled == need]
        pick = rng.choice([t for t in top if t.emotion != last] or top)
        if _take_slot(s, pick.id):
            return lease(pick.id)
        candidates.remove(pick)  # a concurrent claimer filled it first (PostgreSQL only)
    return None


def claim(store: Store, campaign: str | int, worker_id: int, kind: str, *, now: float | None = None,
          rng: random.Random | None = None, before: Callable[[Session], object] | None = None) -> Claimed | None:
    """Lease one slot for the worker, or None when no eligible work is left.

    ``before`` runs first inside the same transaction (the web app's role check), raising to refuse."""
    if kind not in {k.value for k in Kind}:
        raise UserError(f"unknown task kind {kind!r}")
    rng = rng or random.Random()

    def work(s: Session) -> Claimed | None:
        if before is not None:
            before(s)
        if isinstance(campaign, int) or str(campaign).isdigit():
            row = s.connection().execute(_CAMPAIGN.where(Campaign.__table__.c.id == int(campaign))).first()
        else:
            row = s.connection().execute(_CAMPAIGN.where(Campaign.__table__.c.name == str(campaign))).first()
        if row is None:
            raise NotFound(f"no campaign {campaign!r}")
        if not row.active:
            raise Conflict("このキャンペーンは終了しています")
        if row.paused:
            raise Conflict("このキャンペーンは一時停止中です。再開までお待ちください（作業中のタスクは提出できます）")
        return _claim(s, row.id, row.lease_seconds, worker_id, kind, time.time() if now is None else now, rng,
                      row.worker_quota)

    return run_write(store, work)


def _own_claim(s: Session, claim_id: int, worker_id: int) -> Claim:
    q = select(Claim).where(Claim.id == claim_id, Claim.worker_id == worker_id)
    if not is_sqlite(s):
        q = q.with_for_update()
    c = s.scalar(q)
    if c is None:
        raise NotFound("タスクが見つかりません")
    return c


def release(store: Store, claim_id: int, worker_id: int) -> None:
    """Give a lease back before it expires (the slot returns to the pool at once)."""

    def work(s: Session) -> None:
        c = _own_claim(s, claim_id, worker_id)
        if c.status != ClaimStatus.LEASED:
            raise Conflict("このタスクはすでに返却・提出されています")
        c.status, c.live = ClaimStatus.RELEASED, None
        _free_slot(s, c.task_id)

    run_write(store, work)


def release_all(s: Session, worker_id: int) -> int:
    """Every open lease of the worker goes back to the pool (a deactivated account holds no slots)."""
    held = list(s.scalars(select(Claim).where(Claim.worker_id == worker_id, Claim.status == ClaimStatus.LEASED)
                          .order_by(Claim.task_id)))
    for c in held:
        c.status, c.live = ClaimStatus.RELEASED, None
        _free_slot(s, c.task_id)
    return len(held)


def _text(form: dict[str, Any], key: str, label: str, limit: int) -> str:
    value = str(form.get(key) or "").replace("\r\n", "\n").strip()
    check_text(key, value)  # NUL and other control characters, undecodable bytes
    if not value:
        raise UserError(f"{label}を入力してください")
    if len(value) > limit:
        raise UserError(f"{label}は{limit}文字以内で入力してください（{len(value)}文字）")
    return value


def _scores(task: Task, form: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for item in task.payload["items"]:
        gid = str(item["generation_id"])
        out[gid] = {}
        for m in METRICS:
            raw = str(form.get(f"score_{gid}_{m}") or "")
            if raw not in {"1", "2", "3", "4", "5"}:
                raise UserError(f"すべての会話のすべての項目を1〜5で評価してください"
                                f"（会話{item['position']}の「{rubrics.label(m)}」）")
            out[gid][m] = int(raw)
    return out


def validate(task: Task, form: dict[str, Any]) -> dict[str, Any]:
    """The cleaned answer for a task kind; raises UserError (Japanese) on a missing or oversized field."""
    if task.kind == Kind.SITUATION:
        return {"situation": _text(form, "situation", "状況", MAX_SITUATION_CHARS)}
    if task.kind == Kind.DIALOGUE:
        return {"patient": _text(form, "patient", "患者の発話", MAX_TURN_CHARS),
                "supporter": _text(form, "supporter", "支援者の応答", MAX_TURN_CHARS)}
    return {"scores": _scores(task, form)}


def _late(s: Session, c: Claim, task: Task) -> Claim | None:
    """Work submitted under a swept (expired or released) lease: the claim it can still be filed under, or None.

    The worker's own new lease on the same task takes it (opened again in another tab); otherwise the old claim
    is revived if the bucket still has room. Never a second live claim, never past the target."""
    live = s.scalar(select(Claim).where(Claim.task_id == task.id, Claim.worker_id == c.worker_id, Claim.live == 1))
    if live is not None:
        return live if live.status == ClaimStatus.LEASED else None
    if not _take_slot(s, task.id):
        return None
    c.live = 1
    return c


def submit(store: Store, claim_id: int, worker_id: int, form: dict[str, Any], *, now: float | None = None) -> Claim:
    """Store the work done under a lease: a pending Situation (round 1), Dialogue (round 2) or rating answer.

    Late work is never dropped: if the lease was swept it is filed as a new submission when the bucket still has
    room; otherwise it stays on the claim and :class:`LateWork` carries it back to the worker."""
    now = time.time() if now is None else now

    def work(s: Session) -> Claim | dict[str, Any]:
        c = _own_claim(s, claim_id, worker_id)
        task = s.get(Task, c.task_id)
        assert task is not None
        answer = validate(task, form)
        if c.status in (ClaimStatus.EXPIRED, ClaimStatus.RELEASED):
            filed = _late(s, c, task)
            if filed is None:
                c.answer = answer  # committed: the text survives even though the work was not accepted
                return answer
            c = filed
        elif c.status != ClaimStatus.LEASED:
            raise Conflict("このタスクはすでに提出済みです")
        camp = s.get(Campaign, c.campaign_id)
        user = s.get(User, worker_id)
        assert camp is not None and user is not None
        if not camp.active:  # a plain UserError: the page comes back with the text kept
            raise UserError("このキャンペーンは終了したため、提出できません")
        meta = {"campaign": camp.name, "claim": c.id}
        if task.kind == Kind.SITUATION:
            sit = Situation(id=f"{camp.name}-s{c.id:06d}", emotion=task.emotion, text=answer["situation"],
                            source=Source.CROWD, status=Status.PENDING, author=user.username, meta=meta)
            s.add(sit)
            c.entity_id = sit.id
        elif task.kind == Kind.DIALOGUE:
            d = Dialogue(id=f"{camp.name}-d{c.id:06d}", situation_id=task.situation_id, patient=answer["patient"],
                         supporter=answer["supporter"], source=Source.CROWD, status=Status.PENDING,
                         author=user.username, meta=meta)
            s.add(d)
            c.entity_id = d.id
        elif s.scalar(select(Rating.id).where(Rating.rater == user.username, Rating.generation_id.in_(
                [int(g) for g in answer["scores"]])).limit(1)) is not None:
            raise Conflict("この会話はすでにあなたが評価しています")
        # Ratings wait in the claim's answer: they enter the ``ratings`` table (and the analysis) only when a
        # reviewer approves them (collect.review.approve).
        c.answer = answer
        c.status, c.submitted_at = ClaimStatus.PENDING, now
        c.completion_code = new_code()
        s.flush()
        return c

    out = run_write(store, work)
    if not isinstance(out, Claim):
        raise LateWork(LATE_JA, out)
    return out
