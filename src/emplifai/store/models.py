"""SQLAlchemy models of the dataset core. Schema changes go through Alembic migrations (migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from emplifai.records import Source, Status


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}  # noqa: RUF012


class Situation(Base):
    __tablename__ = "situations"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    emotion: Mapped[str] = mapped_column(String(32), index=True)
    text: Mapped[str] = mapped_column(Text)
    condition: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default=Source.CROWD)
    status: Mapped[str] = mapped_column(String(16), default=Status.APPROVED, index=True)
    author: Mapped[str | None] = mapped_column(String(128))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The import run that created the row: tells a repeated id inside one file from a re-import.
    batch: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dialogues: Mapped[list[Dialogue]] = relationship(back_populates="situation")


class Dialogue(Base):
    __tablename__ = "dialogues"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    situation_id: Mapped[str] = mapped_column(ForeignKey("situations.id"), index=True)
    patient: Mapped[str] = mapped_column(Text)
    supporter: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default=Source.CROWD)
    status: Mapped[str] = mapped_column(String(16), default=Status.APPROVED, index=True)
    author: Mapped[str | None] = mapped_column(String(128))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    batch: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    situation: Mapped[Situation] = relationship(back_populates="dialogues")


class ReviewEvent(Base):
    """Append-only history: an edit stores the text before and after, so nothing is ever erased."""

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(16))  # "situation" | "dialogue"
    entity_id: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    field: Mapped[str | None] = mapped_column(String(32))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_review_entity", "entity", "entity_id"),)


class SplitManifest(Base):
    __tablename__ = "split_manifests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    fractions: Mapped[dict[str, Any]] = mapped_column()
    sizes: Mapped[dict[str, Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SplitMember(Base):
    __tablename__ = "split_members"

    manifest_id: Mapped[int] = mapped_column(ForeignKey("split_manifests.id"), primary_key=True)
    situation_id: Mapped[str] = mapped_column(ForeignKey("situations.id"), primary_key=True)
    split: Mapped[str] = mapped_column(String(16))

    __table_args__ = (UniqueConstraint("manifest_id", "situation_id"),)
