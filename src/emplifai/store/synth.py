"""Tables of the synthetic-augmentation stage (``emplifai synth``).

Accepted items become ordinary core rows (``Situation``/``Dialogue`` with source="synthetic", status "pending").
These tables keep everything else: one row per run (its settings and model signature) and one row per
candidate, whatever became of it. A candidate carries its stage outputs as they arrive, which makes a run
resumable (a rerun picks up open candidates instead of calling the model again), and a rejected candidate keeps
its filter results and reason, so nothing the model wrote is silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from emplifai.store.models import Base, utcnow


class State(StrEnum):
    SCENARIO = "scenario"  # situation candidate: brainstormed, not yet rewritten
    READY = "ready"  # situation candidate: rewritten and passed its filters; waiting for its dialogues
    OPEN = "open"  # dialogue candidate: not yet generated, or generated but not yet filtered
    ACCEPTED = "accepted"  # stored as a core row (status pending) -> core_id
    REJECTED = "rejected"  # a filter said no -> reason
    FAILED = "failed"  # the model call failed after retries -> reason

    @classmethod
    def terminal(cls) -> tuple[str, ...]:
        return (cls.ACCEPTED, cls.REJECTED, cls.FAILED)


class SynthRun(Base):
    __tablename__ = "synth_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(32), index=True)  # resume key: model spec + seed + prompt version
    model: Mapped[str] = mapped_column(String(512))
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SynthCandidate(Base):
    __tablename__ = "synth_candidates"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("synth_runs.id"), index=True)  # the run that created it
    key: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    emotion: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)  # per (key, emotion, kind) counter; seeds few-shot choice
    state: Mapped[str] = mapped_column(String(16))
    # dialogue candidates: the situation candidate they belong to, or an existing core situation (pair top-up)
    parent_id: Mapped[str | None] = mapped_column(String(128))
    situation_id: Mapped[str | None] = mapped_column(String(128))
    condition: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str | None] = mapped_column(String(64))
    want: Mapped[int] = mapped_column(Integer, default=1)  # situation candidates: dialogues to write for it
    text: Mapped[str | None] = mapped_column(Text)  # scenario/situation text, or "患者：…\n支援者：…"
    stages: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per stage: raw output, prompt hash, ...
    filters: Mapped[list[Any]] = mapped_column(JSON, default=list)  # every filter result, passed or not
    reason: Mapped[str | None] = mapped_column(Text)
    core_id: Mapped[str | None] = mapped_column(String(128))  # stored Situation/Dialogue id once accepted
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_synth_cand_work", "key", "emotion", "kind", "state"),
        Index("ix_synth_cand_parent", "parent_id"),
    )
