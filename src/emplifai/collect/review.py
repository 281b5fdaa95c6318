"""Review (paper 3.3–3.4): reviewers approve or reject (with a reason) and flag or modify entries; the lead
keeps or removes flagged ones. Every decision is appended to the core review history (``review_events``), an
edit with its text before and after, so nothing is ever erased.

Pay: approval (or a flag, which accepts the work but asks the lead about its content) writes one ledger entry
at the campaign's current rate. A rejection or a removal frees the slot so the bucket is refilled; the rejected
worker is still never given the same task again. Rejections are capped at ``rejection_cap`` of all submissions
in the campaign (the platform's rule in the paper: at most 30%).
"""

from __future__ import annotations

import math
import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from emplifai.collect.assign import Conflict, NotFound
from emplifai.collect.campaigns import ensure_round2_task, pay_rate, rejection_state
from emplifai.collect.inputs import check_text, field_ja
from emplifai.collect.tx import is_sqlite, run_write
from emplifai.dataset.review import NotAllowed, Rule, check
from emplifai.errors import UserError
from emplifai.records import MAX_SITUATION_CHARS, MAX_TURN_CHARS, Action, Kind, Status
from emplifai.store import repo
from emplifai.store.collect import Campaign, Claim, ClaimStatus, PayEntry, Task, User
from emplifai.store.db import Store
from emplifai.store.evaluation import Rating
from emplifai.store.models import Situation


def _load(s: Session, claim_id: int) -> tuple[Claim, Campaign, Task]:
    q = select(Claim).where(Claim.id == claim_id)
    if not is_sqlite(s):
        q = q.with_for_update()
    c = s.scalar(q)
    if c is None or c.status not in (ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.REJECTED,
                                     ClaimStatus.FLAGGED, ClaimStatus.REMOVED):
        raise NotFound("提出物が見つかりません")
    camp, task = s.get(Campaign, c.campaign_id), s.get(Task, c.task_id)
    assert camp is not None and task is not None
    return c, camp, task


# A claim's status as the dataset's review rules see it: a rejected claim's entry is removed.
CLAIM_AS_STATUS = {ClaimStatus.PENDING: Status.PENDING, ClaimStatus.APPROVED: Status.APPROVED,
                   ClaimStatus.FLAGGED: Status.FLAGGED, ClaimStatus.REJECTED: Status.REMOVED,
                   ClaimStatus.REMOVED: Status.REMOVED}


def _rule(c: Claim, action: Action, user: User, reason: str | None) -> Rule:
    """The review rule for this decision on this claim (the dataset's one table), or a Japanese refusal."""
    try:
        return check(action, CLAIM_AS_STATUS[ClaimStatus(c.status)], reason=reason, role=user.role, lang="ja")
    except NotAllowed as exc:
        raise Conflict(str(exc)) from None


def _entity_status(s: Session, c: Claim, status: Status, actor: str, action: Action, reason: str | None) -> None:
    if c.kind == Kind.DIALOGUE:
        repo.set_status(s, c.entity_id or "", status, actor=actor, action=action, reason=reason)
    elif c.kind == Kind.SITUATION:
        sit = s.get(Situation, c.entity_id)
        assert sit is not None
        repo.record_event(s, entity="situation", entity_id=sit.id, actor=actor, action=action, field="status",
                          before=sit.status, after=str(status), reason=reason)
        sit.status = str(status)
    # ratings have no core entity: their history is the claim itself


def _pay(s: Session, c: Claim, camp: Campaign) -> None:
    if s.scalar(select(PayEntry.id).where(PayEntry.claim_id == c.id)) is None:
        s.add(PayEntry(campaign_id=camp.id, worker_id=c.worker_id, claim_id=c.id, kind=c.kind,
                       amount_yen=pay_rate(camp, c.kind)))


def _promote(s: Session, c: Claim, camp: Campaign) -> None:
    """An approved (or kept) situation is a round-2 prompt, open for dialogues."""
    if c.kind == Kind.SITUATION:
        sit = s.get(Situation, c.entity_id)
        assert sit is not None
        ensure_round2_task(s, camp, sit).enabled = True


def _close_round2(s: Session, c: Claim, camp: Campaign) -> None:
    """A flagged (until kept) or removed situation collects no more dialogues: its round-2 task closes."""
    if c.kind == Kind.SITUATION:
        s.execute(Task.__table__.update().where(Task.campaign_id == camp.id, Task.kind == Kind.DIALOGUE,
                                                Task.situation_id == c.entity_id).values(enabled=False))


def _count_ratings(s: Session, c: Claim, task: Task) -> None:
    """An approved rating claim's scores enter the ``ratings`` table: only approved ratings reach the analysis
    (``ratings summary``, ``agree``, Table 5), which reports the pending ones it left out."""
    if c.kind != Kind.RATING:
        return
    user = s.get(User, c.worker_id)
    assert user is not None
    scores = (c.answer or {}).get("scores", {})
    if s.scalar(select(Rating.id).where(Rating.rater == user.username, Rating.generation_id.in_(
            [int(g) for g in scores])).limit(1)) is not None:
        raise Conflict(f"{user.username} の評価はすでに登録されています（評価シートから取り込まれた可能性があります）")
    for gid, per in scores.items():
        for metric, score in per.items():
            s.add(Rating(generation_id=int(gid), rater=user.username, metric=metric, score=int(score),
                         group_no=task.group_no, origin="web", file=None, line=None))


def _uncount_ratings(s: Session, c: Claim) -> None:
    """A rejected or removed rating claim's scores leave the analysis (a pending one has none there yet)."""
    if c.kind == Kind.RATING and c.status == ClaimStatus.APPROVED:
        user = s.get(User, c.worker_id)
        gids = [int(g) for g in (c.answer or {}).get("scores", {})]
        s.execute(delete(Rating).where(Rating.rater == user.username, Rating.generation_id.in_(gids)))  # type: ignore[union-attr]


def _decide(c: Claim, reviewer: User, status: ClaimStatus, reason: str | None) -> None:
    c.status, c.reviewer_id, c.reviewed_at, c.reason = status, reviewer.id, time.time(), reason


def approve(store: Store, claim_id: int, reviewer: User) -> Claim:
    def work(s: Session) -> Claim:
        c, camp, task = _load(s, claim_id)
        rule = _rule(c, Action.APPROVE, reviewer, None)
        _entity_status(s, c, rule.result, reviewer.username, Action.APPROVE, None)
        _count_ratings(s, c, task)
        _decide(c, reviewer, ClaimStatus.APPROVED, None)
        _pay(s, c, camp)
        _promote(s, c, camp)
        return c

    return run_write(store, work)


def rejection_allowed(rejected: int, submitted: int, cap: float) -> bool:
    return rejected + 1 <= math.floor(cap * submitted + 1e-9)


def reject(store: Store, claim_id: int, reviewer: User, reason: str) -> Claim:
    reason = (reason or "").strip()

    def work(s: Session) -> Claim:
        c, camp, _ = _load(s, claim_id)
        rule = _rule(c, Action.REJECT, reviewer, reason)
        rejected, submitted = rejection_state(s, camp)
        if not rejection_allowed(rejected, submitted, camp.rejection_cap):
            raise Conflict(f"却下の上限（提出 {submitted} 件の {camp.rejection_cap:.0%}）に達しています："
                           f"すでに {rejected} 件を却下しました")
        _entity_status(s, c, rule.result, reviewer.username, Action.REJECT, reason)
        _uncount_ratings(s, c)
        _decide(c, reviewer, ClaimStatus.REJECTED, reason)
        s.execute(Task.__table__.update().where(Task.id == c.task_id).values(filled=Task.filled - 1))
        return c

    return run_write(store, work)


def flag(store: Store, claim_id: int, reviewer: User, reason: str) -> Claim:
    """Accept the work (it is paid) but send its content to the lead."""
    reason = (reason or "").strip()

    def work(s: Session) -> Claim:
        c, camp, _ = _load(s, claim_id)
        rule = _rule(c, Action.FLAG, reviewer, reason)
        if c.kind == Kind.RATING:
            raise Conflict("評価タスクは要確認にできません")
        _entity_status(s, c, rule.result, reviewer.username, Action.FLAG, reason)
        _decide(c, reviewer, ClaimStatus.FLAGGED, reason)
        _pay(s, c, camp)
        _close_round2(s, c, camp)
        return c

    return run_write(store, work)


def modify(store: Store, claim_id: int, reviewer: User, fields: dict[str, str], reason: str | None) -> Claim:
    """Edit the text; the history keeps before and after for each changed field."""
    clean = {k: (v or "").replace("\r\n", "\n").strip() for k, v in fields.items() if v is not None}
    for k, v in clean.items():
        check_text(k, v)  # NUL and other control characters, undecodable bytes

    def work(s: Session) -> Claim:
        c, _, _ = _load(s, claim_id)
        if c.status not in (ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.FLAGGED):
            raise Conflict("却下・削除された提出物は修正できません")
        if c.kind == Kind.DIALOGUE:
            for k in ("patient", "supporter"):
                if len(clean.get(k, "")) > MAX_TURN_CHARS:
                    raise UserError(f"{field_ja(k)}は{MAX_TURN_CHARS}文字以内にしてください")
            repo.modify_dialogue(s, c.entity_id or "", actor=reviewer.username, patient=clean.get("patient"),
                                 supporter=clean.get("supporter"), reason=reason or None)
        elif c.kind == Kind.SITUATION:
            new = clean.get("situation")
            sit = s.get(Situation, c.entity_id)
            assert sit is not None
            if new is not None and new != sit.text:
                if not new or len(new) > MAX_SITUATION_CHARS:
                    raise UserError(f"状況は1〜{MAX_SITUATION_CHARS}文字にしてください")
                repo.record_event(s, entity="situation", entity_id=sit.id, actor=reviewer.username,
                                  action=Action.MODIFY, field="text", before=sit.text, after=new, reason=reason or None)
                sit.text = new
        else:
            raise Conflict("評価タスクは修正できません")
        return c

    return run_write(store, work)


def keep(store: Store, claim_id: int, lead: User, reason: str | None = None) -> Claim:
    def work(s: Session) -> Claim:
        c, camp, _ = _load(s, claim_id)
        rule = _rule(c, Action.KEEP, lead, reason)
        _entity_status(s, c, rule.result, lead.username, Action.KEEP, reason or None)
        _decide(c, lead, ClaimStatus.APPROVED, reason or None)
        _promote(s, c, camp)
        return c

    return run_write(store, work)


def remove(store: Store, claim_id: int, lead: User, reason: str | None = None) -> Claim:
    def work(s: Session) -> Claim:
        c, camp, _ = _load(s, claim_id)
        rule = _rule(c, Action.REMOVE, lead, reason)
        _entity_status(s, c, rule.result, lead.username, Action.REMOVE, reason or None)
        _close_round2(s, c, camp)
        _uncount_ratings(s, c)
        _decide(c, lead, ClaimStatus.REMOVED, reason or None)
        s.execute(Task.__table__.update().where(Task.id == c.task_id).values(filled=Task.filled - 1))
        return c

    return run_write(store, work)


BULK_ACTIONS = (Action.APPROVE, Action.REJECT)
MAX_BULK = 200


def decide_many(store: Store, claim_ids: list[int], action: str, reviewer: User,
                reason: str | None = None) -> list[tuple[int, str | None]]:
    """Approve or reject several claims from the queue, each through :func:`approve` / :func:`reject` in its own
    transaction (so the review rules and the rejection cap apply to each, in order); per claim: None when
    done, else the Japanese reason it was refused. A rejection without a reason refuses the whole batch."""
    if action not in BULK_ACTIONS:
        raise UserError("一括で行えるのは承認と却下だけです")
    if len(claim_ids) > MAX_BULK:
        raise UserError(f"一度に選べるのは{MAX_BULK}件までです")
    if action == Action.REJECT:
        check(Action.REJECT, Status.PENDING, reason=reason, role=reviewer.role, lang="ja")
    out: list[tuple[int, str | None]] = []
    for cid in dict.fromkeys(claim_ids):  # a repeated id is decided once
        try:
            if action == Action.APPROVE:
                approve(store, cid, reviewer)
            else:
                reject(store, cid, reviewer, reason or "")
            out.append((cid, None))
        except UserError as exc:
            out.append((cid, str(exc)))
    return out
