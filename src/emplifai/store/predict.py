"""Tables of the prediction stage (taxonomy validation): one row per (run, dialogue), and Table 2 per run.

A run is identified by a hash of everything that determines its outputs (model spec + LLM signature, mode,
prompt version, prompt settings, split manifest), so running the same command again resumes the same run:
finished rows are kept, failed rows are retried. Schema changes go through the Alembic branch ``predict``
(migrations/versions/predict_0001.py, predict_0002.py).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from emplifai.store.models import Base, utcnow


class PredStatus(StrEnum):
    OK = "ok"  # a label was predicted
    UNPARSED = "unparsed"  # the model answered, but no label could be read from it (raw text + reason kept)
    FAILED = "failed"  # no answer (server down, timeout, error after retries); retried on the next run


class Prediction(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(512))  # the model spec as given
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    mode: Mapped[str] = mapped_column(String(16))  # "score" | "generate"
    prompt_version: Mapped[str] = mapped_column(String(32))
    manifest_id: Mapped[int | None] = mapped_column(ForeignKey("split_manifests.id"))
    split: Mapped[str] = mapped_column(String(16))
    dialogue_id: Mapped[str] = mapped_column(ForeignKey("dialogues.id"), index=True)
    gold: Mapped[str] = mapped_column(String(32))  # the gold emotion when predicted (English label)
    status: Mapped[str] = mapped_column(String(16), index=True)
    raw_output: Mapped[str | None] = mapped_column(Text)
    predicted: Mapped[str | None] = mapped_column(String(32))  # English label, NULL when unparsed/failed
    reason: Mapped[str | None] = mapped_column(Text)  # how the label was read, or why not
    top3: Mapped[list[str] | None] = mapped_column(JSON)
    distribution: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("run_id", "dialogue_id", name="uq_prediction_run_dialogue"),)


class PredictionMetrics(Base):
    """Table 2's figures for one prediction run on one split: the row of the table, the full metrics (per
    emotion, per group, confusion) and their signature. Written when Table 2 is computed; the report and the
    CLI read Table 2 from here, never back from the files written for people."""

    __tablename__ = "prediction_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(512))
    split: Mapped[str] = mapped_column(String(16))
    entry: Mapped[dict[str, Any]] = mapped_column(JSON)  # the Table-2 row
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)  # everything behind it
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)  # predictions' run signature + metric signature
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("run_id", "split", name="uq_prediction_metrics_run_split"),)
