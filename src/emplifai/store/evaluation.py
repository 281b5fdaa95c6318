"""Tables of the evaluation stage: sampled items, generated dialogues, judge scores and human ratings.

Every row that carries a score also carries what produced it (model/judge spec, LLM signature, prompt version).
Schema changes go through the Alembic branch ``evaluation`` (migrations/versions/evaluation_0001.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from emplifai.store.models import Base, utcnow

HUMAN_SOURCE = "human"  # generation source for the corpus's own crowd-written dialogue
RATING_ORIGINS = ("sheet", "web")


class EvalSample(Base):
    __tablename__ = "eval_samples"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seed: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)  # library versions, population size, hash
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    items: Mapped[list[EvalSampleItem]] = relationship(
        back_populates="sample", order_by="EvalSampleItem.position", cascade="all, delete-orphan"
    )


class EvalSampleItem(Base):
    __tablename__ = "eval_sample_items"

    sample_name: Mapped[str] = mapped_column(ForeignKey("eval_samples.name"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    situation_id: Mapped[str] = mapped_column(ForeignKey("situations.id"), index=True)
    emotion: Mapped[str] = mapped_column(String(32))

    sample: Mapped[EvalSample] = relationship(back_populates="items")

    __table_args__ = (UniqueConstraint("sample_name", "situation_id", name="uq_eval_item_situation"),)


class Generation(Base):
    """One dialogue for one sampled item from one source (a model spec, or "human")."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sample_name: Mapped[str] = mapped_column(ForeignKey("eval_samples.name"), index=True)
    situation_id: Mapped[str] = mapped_column(ForeignKey("situations.id"))
    source: Mapped[str] = mapped_column(String(512))
    raw: Mapped[str] = mapped_column(Text)
    patient: Mapped[str | None] = mapped_column(Text)
    supporter: Mapped[str | None] = mapped_column(Text)
    malformed: Mapped[str | None] = mapped_column(Text)  # reason, NULL when the format was followed
    japanese_share: Mapped[float] = mapped_column(Float)
    non_japanese: Mapped[bool] = mapped_column(Boolean, default=False)
    signature: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prompt_version: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("sample_name", "situation_id", "source", name="uq_generation"),)


class JudgeScore(Base):
    """One judgement. score is NULL exactly when failure is set (raw output kept); never a default value.

    ``rule`` marks scores given by rule rather than by the judge (e.g. "malformed": the paper's lowest score).
    ``layout`` is "standard" for the Table-4 prompt and another name for the bias probe's alternative layout.
    """

    __tablename__ = "judge_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"), index=True)
    judge: Mapped[str] = mapped_column(String(512))
    metric: Mapped[str] = mapped_column(String(64))
    layout: Mapped[str] = mapped_column(String(32), default="standard")
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    score: Mapped[int | None] = mapped_column(Integer)
    weighted: Mapped[float | None] = mapped_column(Float)
    feedback: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    failure: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    signature: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prompt_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("generation_id", "judge", "metric", "layout", "repeat", name="uq_judge_score"),
    )


class Rating(Base):
    """One human rater's score of one generation on one metric (from a sheet or the web app)."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"), index=True)
    rater: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(64))
    score: Mapped[int] = mapped_column(Integer)
    group_no: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16))
    file: Mapped[str | None] = mapped_column(String(1024))
    line: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("generation_id", "rater", "metric", name="uq_rating"),)
