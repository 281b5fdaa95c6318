"""Tables of the crowdsourcing web app: accounts, campaigns, quota tasks, claims (leases + submissions), pay.

A *task* is one quota bucket: an emotion in round 1 ("write a situation"), an emotion–situation pair in round 2
("write a dialogue"), or a group of generations to rate. ``filled`` counts the claims that hold a slot (live
leases, pending, flagged and approved submissions); every transition that takes or frees a slot changes it in
the same transaction, and a claim only takes a slot through ``UPDATE … SET filled = filled + 1 WHERE filled <
target``, so a bucket can never overshoot even under concurrent writers.

Schema changes go through the Alembic branch ``collect`` (migrations/versions/collect_0001.py … collect_0004.py).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from emplifai.store.models import Base, utcnow


class Role(StrEnum):
    WORKER = "worker"
    REVIEWER = "reviewer"  # research assistant: primary screening, flag, modify
    LEAD = "lead"  # decides on flagged entries
    ADMIN = "admin"


class ClaimStatus(StrEnum):
    LEASED = "leased"
    EXPIRED = "expired"
    RELEASED = "released"
    PENDING = "pending"  # submitted, waiting for review
    APPROVED = "approved"
    REJECTED = "rejected"
    FLAGGED = "flagged"  # accepted for pay; the lead decides keep/remove
    REMOVED = "removed"


# Statuses that hold a quota slot (leases only while unexpired; the sweep turns stale ones into EXPIRED).
HOLDS_SLOT = (ClaimStatus.LEASED, ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.FLAGGED)
SUBMITTED = (ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.REJECTED, ClaimStatus.FLAGGED,
             ClaimStatus.REMOVED)


class User(Base):
    __tablename__ = "collect_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # The worker's ID on the crowdsourcing platform (e.g. the CrowdWorks user name): how pay is reconciled there.
    platform_id: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on password change or deactivation: sessions signed with an older value stop working.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_collect_users_platform_id", "platform_id", unique=True),)


class Invite(Base):
    """A one-time sign-in link: only the SHA-256 of its random token is stored; used once, then dead."""

    __tablename__ = "collect_invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("collect_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64))


class Campaign(Base):
    __tablename__ = "collect_campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    emotions: Mapped[list[str]] = mapped_column(JSON)  # English labels, Table-1 order
    round1_target: Mapped[int] = mapped_column(Integer, default=10)  # situations per emotion
    round2_target: Mapped[int] = mapped_column(Integer, default=15)  # dialogues per emotion–situation pair
    rating_raters: Mapped[int] = mapped_column(Integer, default=3)  # raters per rating group
    pay_situation: Mapped[int] = mapped_column(Integer, default=10)  # yen
    pay_dialogue: Mapped[int] = mapped_column(Integer, default=50)
    pay_rating: Mapped[int] = mapped_column(Integer, default=500)
    rejection_cap: Mapped[float] = mapped_column(Float, default=0.30)
    lease_seconds: Mapped[int] = mapped_column(Integer, default=1800)
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False: closed (no claims, no submissions)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)  # no new claims; leases may still be submitted
    worker_quota: Mapped[int | None] = mapped_column(Integer)  # most tasks one worker may take (None: no limit)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Task(Base):
    __tablename__ = "collect_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("collect_campaigns.id"))
    kind: Mapped[str] = mapped_column(String(16))
    emotion: Mapped[str | None] = mapped_column(String(32))
    situation_id: Mapped[str | None] = mapped_column(ForeignKey("situations.id"))
    group_no: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # rating groups: the items to rate
    target: Mapped[int] = mapped_column(Integer)
    filled: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("campaign_id", "kind", "emotion", "situation_id", "group_no", name="uq_collect_task"),
        Index("ix_collect_task_pick", "campaign_id", "kind"),
        # Defence in depth: even a bug in the claim code cannot push a bucket past its target.
        CheckConstraint("filled >= 0 AND filled <= target", name="ck_collect_task_filled"),
    )


class Claim(Base):
    """A lease on one slot of a task, and later the submission made under it."""

    __tablename__ = "collect_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("collect_campaigns.id"))
    task_id: Mapped[int] = mapped_column(ForeignKey("collect_tasks.id"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("collect_users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # 1 while the claim holds or used the worker's one turn at this task, NULL once expired/released: the
    # unique (task, worker, live) key then forbids giving a worker the same task twice (NULLs never collide).
    live: Mapped[int | None] = mapped_column(Integer, default=1)
    leased_at: Mapped[float] = mapped_column(Float)  # epoch seconds: portable comparisons on both databases
    expires_at: Mapped[float] = mapped_column(Float)
    submitted_at: Mapped[float | None] = mapped_column(Float)
    entity_id: Mapped[str | None] = mapped_column(String(128))  # the Situation/Dialogue created by the submission
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # ratings: {generation_id: {metric: score}}
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("collect_users.id"))
    reviewed_at: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    # Shown to the worker after submitting, pasted back on the platform, matched in the reconciliation export.
    completion_code: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        UniqueConstraint("task_id", "worker_id", "live", name="uq_collect_claim_live"),
        Index("ix_collect_claims_completion_code", "completion_code", unique=True),
        Index("ix_collect_claim_status", "campaign_id", "status"),
        Index("ix_collect_claim_lease", "status", "expires_at"),
    )


class PayEntry(Base):
    """One approved task's pay, at the rate in force when it was approved (one entry per claim)."""

    __tablename__ = "collect_pay"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("collect_campaigns.id"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("collect_users.id"), index=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("collect_claims.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount_yen: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Example(Base):
    """A campaign's worked example for one emotion, shown to workers (round 1: the situation; round 2: the
    two turns). Emotions without a row use the defaults drawn from the bundled corpus."""

    __tablename__ = "collect_examples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("collect_campaigns.id"))
    emotion: Mapped[str] = mapped_column(String(32))
    situation: Mapped[str] = mapped_column(Text)
    patient: Mapped[str] = mapped_column(Text)
    supporter: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(256), default="")  # the file (and line) it was read from
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("campaign_id", "emotion", name="uq_collect_example"),)


class Draft(Base):
    """What a worker has typed or chosen under a lease but not submitted yet (one row per claim)."""

    __tablename__ = "collect_drafts"

    claim_id: Mapped[int] = mapped_column(ForeignKey("collect_claims.id"), primary_key=True)
    fields: Mapped[dict[str, str]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)
class LoginFailure(Base):
    """One failed sign-in, counted against the user name and against the client (both stored as SHA-256
    digests: no raw names or addresses are kept). In the database, not in memory, so that several server
    processes share one sliding window (migrations/versions/collect_0002.py)."""

    __tablename__ = "collect_login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(8))  # "user" or "client"
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)  # epoch seconds

    __table_args__ = (
        Index("ix_collect_login_failure_key", "scope", "key", "at"),
        Index("ix_collect_login_failure_at", "at"),
    )
