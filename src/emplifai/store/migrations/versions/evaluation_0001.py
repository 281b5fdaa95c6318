"""Evaluation stage: sampled items, generations, judge scores, human ratings.

Revision ID: evaluation_0001
Revises: 0001_core
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "evaluation_0001"
down_revision = "0001_core"
branch_labels = ("evaluation",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "eval_samples",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "eval_sample_items",
        sa.Column("sample_name", sa.String(64), sa.ForeignKey("eval_samples.name"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("situation_id", sa.String(128), sa.ForeignKey("situations.id"), nullable=False, index=True),
        sa.Column("emotion", sa.String(32), nullable=False),
        sa.UniqueConstraint("sample_name", "situation_id", name="uq_eval_item_situation"),
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sample_name", sa.String(64), sa.ForeignKey("eval_samples.name"), nullable=False, index=True),
        sa.Column("situation_id", sa.String(128), sa.ForeignKey("situations.id"), nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("patient", sa.Text),
        sa.Column("supporter", sa.Text),
        sa.Column("malformed", sa.Text),
        sa.Column("japanese_share", sa.Float, nullable=False),
        sa.Column("non_japanese", sa.Boolean, nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("seed", sa.Integer),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("sample_name", "situation_id", "source", name="uq_generation"),
    )
    op.create_table(
        "judge_scores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("generation_id", sa.Integer, sa.ForeignKey("generations.id"), nullable=False, index=True),
        sa.Column("judge", sa.String(512), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("layout", sa.String(32), nullable=False),
        sa.Column("repeat", sa.Integer, nullable=False),
        sa.Column("score", sa.Integer),
        sa.Column("weighted", sa.Float),
        sa.Column("feedback", sa.Text),
        sa.Column("raw", sa.Text),
        sa.Column("failure", sa.Text),
        sa.Column("rule", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("generation_id", "judge", "metric", "layout", "repeat", name="uq_judge_score"),
    )
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("generation_id", sa.Integer, sa.ForeignKey("generations.id"), nullable=False, index=True),
        sa.Column("rater", sa.String(128), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("group_no", sa.Integer, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("file", sa.String(1024)),
        sa.Column("line", sa.Integer),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("generation_id", "rater", "metric", name="uq_rating"),
    )


def downgrade() -> None:
    for table in ("ratings", "judge_scores", "generations", "eval_sample_items", "eval_samples"):
        op.drop_table(table)
