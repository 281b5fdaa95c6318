"""Campaigns: creation (round-1 buckets per emotion), round-2 buckets per approved situation, dashboards, pay."""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emplifai import taxonomy
from emplifai.dataset.formats import spreadsheet_safe
from emplifai.errors import UserError
from emplifai.records import Kind, Status
from emplifai.store.collect import Campaign, Claim, ClaimStatus, PayEntry, Task, User
from emplifai.store.models import Situation

NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def create_campaign(
    s: Session, name: str, emotions: Iterable[str] | None = None, *, round1_target: int = 10,
    round2_target: int = 15, rating_raters: int = 3, pay_situation: int = 10, pay_dialogue: int = 50,
    pay_rating: int = 500, rejection_cap: float = 0.30, lease_seconds: int = 1800,
) -> Campaign:
    """A campaign with one round-1 bucket per emotion (default: all 28 labels, Table-1 order)."""
    if not NAME.match(name):
        raise UserError(f"キャンペーン名 {name!r}：半角英数字と _ - で1〜32文字にしてください")
    if s.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
        raise UserError(f"キャンペーン {name!r} はすでに存在します")
    labels = taxonomy.resolve(emotions)
    for what, v in (("round1_target", round1_target), ("round2_target", round2_target),
                    ("rating_raters", rating_raters), ("lease_seconds", lease_seconds)):
        if v < 1:
            raise UserError(f"{what} は1以上にしてください（指定：{v}）")
    if min(pay_situation, pay_dialogue, pay_rating) < 0:
        raise UserError("報酬額は0円以上にしてください")
    if not 0 <= rejection_cap <= 1:
        raise UserError(f"却下の上限は0〜1の割合で指定してください（指定：{rejection_cap}）")
    camp = Campaign(name=name, emotions=labels, round1_target=round1_target, round2_target=round2_target,
                    rating_raters=rating_raters, pay_situation=pay_situation, pay_dialogue=pay_dialogue,
                    pay_rating=pay_rating, rejection_cap=rejection_cap, lease_seconds=lease_seconds, active=True,
                    paused=False)
    s.add(camp)
    s.flush()
    for emo in labels:
        s.add(Task(campaign_id=camp.id, kind=Kind.SITUATION, emotion=emo, target=round1_target, filled=0,
                   enabled=True, payload={}))
    s.flush()
    return camp


def get_campaign(s: Session, ref: str | int) -> Campaign:
    q = select(Campaign).where(Campaign.id == int(ref)) if str(ref).isdigit() else select(Campaign).where(
        Campaign.name == str(ref))
    camp = s.scalar(q)
    if camp is None:
        raise UserError(f"キャンペーン {ref!r} は見つかりません")
    return camp


# ---------------------------------------------------------------------------------------------- lifecycle
STATES = {"open": "受付中", "paused": "一時停止中", "closed": "終了"}
MAX_QUOTA = 100_000


def state_of(camp: Campaign) -> str:
    """open: claims and submissions; paused: no new claims, leases may still be submitted; closed: neither."""
    return "closed" if not camp.active else "paused" if camp.paused else "open"


def set_state(s: Session, ref: str | int, state: str) -> Campaign:
    if state not in STATES:
        raise UserError(f"キャンペーンの状態 {state!r} はありません。{', '.join(STATES)} のいずれかにしてください")
    camp = get_campaign(s, ref)
    camp.active, camp.paused = state != "closed", state == "paused"
    return camp


def set_quota(s: Session, ref: str | int, quota: int | None) -> Campaign:
    """The most tasks (leased or submitted, all kinds) one worker may take in the campaign; None lifts it."""
    if quota is not None and not 1 <= quota <= MAX_QUOTA:
        raise UserError(f"上限件数は1〜{MAX_QUOTA}にしてください（指定：{quota}）")
    camp = get_campaign(s, ref)
    camp.worker_quota = quota
    return camp


def ensure_round2_task(s: Session, camp: Campaign, situation: Situation) -> Task:
    """An approved situation becomes a round-2 prompt (idempotent)."""
    task = s.scalar(select(Task).where(Task.campaign_id == camp.id, Task.kind == Kind.DIALOGUE,
                                       Task.situation_id == situation.id))
    if task is None:
        task = Task(campaign_id=camp.id, kind=Kind.DIALOGUE, emotion=situation.emotion, situation_id=situation.id,
                    target=camp.round2_target, filled=0, enabled=True, payload={})
        s.add(task)
        s.flush()
    return task


def seed_round2(s: Session, camp: Campaign) -> int:
    """Turn approved situations already in the store (e.g. imported) of the campaign's emotions into prompts."""
    q = select(Situation).where(Situation.emotion.in_(camp.emotions), Situation.status == Status.APPROVED)
    have = set(s.scalars(select(Task.situation_id).where(Task.campaign_id == camp.id, Task.kind == Kind.DIALOGUE)))
    n = 0
    for sit in s.scalars(q.order_by(Situation.id)):
        if sit.id not in have:
            ensure_round2_task(s, camp, sit)
            n += 1
    return n


def pay_rate(camp: Campaign, kind: str) -> int:
    return {Kind.SITUATION: camp.pay_situation, Kind.DIALOGUE: camp.pay_dialogue, Kind.RATING: camp.pay_rating}[
        Kind(kind)]


# ---------------------------------------------------------------------------------------------- dashboards
@dataclass(slots=True)
class Bucket:
    task_id: int
    kind: str
    emotion: str | None
    situation_id: str | None
    group_no: int | None
    target: int
    filled: int
    counts: Counter[str] = field(default_factory=Counter)  # claim status -> n (leased = unexpired only)

    @property
    def approved(self) -> int:
        return self.counts[ClaimStatus.APPROVED]

    @property
    def pending(self) -> int:
        return self.counts[ClaimStatus.PENDING] + self.counts[ClaimStatus.FLAGGED]

    @property
    def leased(self) -> int:
        return self.counts[ClaimStatus.LEASED]

    @property
    def done(self) -> bool:
        return self.filled >= self.target


def buckets(s: Session, camp: Campaign, kind: str | None = None, now: float | None = None) -> list[Bucket]:
    now = time.time() if now is None else now
    tq = select(Task).where(Task.campaign_id == camp.id)
    if kind:
        tq = tq.where(Task.kind == kind)
    out = {t.id: Bucket(t.id, t.kind, t.emotion, t.situation_id, t.group_no, t.target, t.filled)
           for t in s.scalars(tq.order_by(Task.id))}
    cq = (select(Claim.task_id, Claim.status, func.count())
          .where(Claim.campaign_id == camp.id, (Claim.status != ClaimStatus.LEASED) | (Claim.expires_at > now))
          .group_by(Claim.task_id, Claim.status))
    for task_id, status, n in s.execute(cq):
        if task_id in out:
            out[task_id].counts[status] += n
    return list(out.values())


@dataclass(slots=True)
class EmotionRow:
    emotion: str
    ja: str
    target: int
    approved: int
    pending: int
    leased: int
    pairs: int = 0


def by_emotion(camp: Campaign, rows: list[Bucket], kind: str) -> list[EmotionRow]:
    """Round 1: target = situations per emotion; round 2: target = pairs × dialogues per pair."""
    agg = {e: EmotionRow(e, taxonomy.get(e).ja, 0, 0, 0, 0) for e in camp.emotions}
    for b in rows:
        if b.kind != kind or b.emotion not in agg:
            continue
        r = agg[b.emotion]
        r.target += b.target
        r.approved += b.approved
        r.pending += b.pending
        r.leased += b.leased
        r.pairs += 1
    return list(agg.values())


@dataclass(slots=True)
class WorkerRow:
    user_id: int
    username: str
    display_name: str
    counts: Counter[str]
    yen: int
    platform_id: str = ""

    @property
    def submitted(self) -> int:
        return sum(self.counts[st] for st in (ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.REJECTED,
                                               ClaimStatus.FLAGGED, ClaimStatus.REMOVED))

    @property
    def rejection_rate(self) -> float:
        return self.counts[ClaimStatus.REJECTED] / self.submitted if self.submitted else 0.0


def worker_stats(s: Session, camp: Campaign) -> list[WorkerRow]:
    users: dict[int, WorkerRow] = {}
    q = (select(User.id, User.username, User.display_name, User.platform_id, Claim.status, func.count())
         .join(Claim, Claim.worker_id == User.id).where(Claim.campaign_id == camp.id)
         .group_by(User.id, User.username, User.display_name, User.platform_id, Claim.status))
    for uid, name, disp, pid, status, n in s.execute(q):
        users.setdefault(uid, WorkerRow(uid, name, disp, Counter(), 0, pid or "")).counts[status] += n
    for uid, yen in s.execute(select(PayEntry.worker_id, func.sum(PayEntry.amount_yen))
                              .where(PayEntry.campaign_id == camp.id).group_by(PayEntry.worker_id)):
        if uid in users:
            users[uid].yen = int(yen or 0)
    return sorted(users.values(), key=lambda r: r.username)


def rejection_state(s: Session, camp: Campaign) -> tuple[int, int]:
    """(rejected, submitted) over the whole campaign: the platform caps rejections at a share of submissions."""
    rows = dict(s.execute(select(Claim.status, func.count()).where(Claim.campaign_id == camp.id)
                          .group_by(Claim.status)).all())
    submitted = sum(rows.get(st, 0) for st in (ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.REJECTED,
                                                 ClaimStatus.FLAGGED, ClaimStatus.REMOVED))
    return rows.get(ClaimStatus.REJECTED, 0), submitted


LEDGER_COLUMNS = ("username", "platform_id", "display_name", "situations", "dialogues", "ratings", "amount_yen")


def ledger(s: Session, camp: Campaign) -> list[dict[str, object]]:
    """Per worker: approved tasks by kind and the total owed (each at the rate in force when approved)."""
    per: dict[int, dict[str, object]] = {}
    q = (select(User.id, User.username, User.platform_id, User.display_name, PayEntry.kind, func.count(),
                func.sum(PayEntry.amount_yen))
         .join(PayEntry, PayEntry.worker_id == User.id).where(PayEntry.campaign_id == camp.id)
         .group_by(User.id, User.username, User.platform_id, User.display_name, PayEntry.kind))
    names = {Kind.SITUATION: "situations", Kind.DIALOGUE: "dialogues", Kind.RATING: "ratings"}
    for uid, name, pid, disp, kind, n, yen in s.execute(q):
        row = per.setdefault(uid, defaultdict(int, username=name, platform_id=pid or "",  # type: ignore[arg-type]
                                              display_name=disp))
        row[names[Kind(kind)]] += n
        row["amount_yen"] += int(yen or 0)
    return [{c: r[c] for c in LEDGER_COLUMNS} for r in sorted(per.values(), key=lambda r: str(r["username"]))]


def ledger_csv(rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LEDGER_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()
