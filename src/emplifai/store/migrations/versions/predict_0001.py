"""Prediction stage: one row per (run, dialogue) of taxonomy validation.

Revision ID: predict_0001
Revises: 0001_core
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "predict_0001"
down_revision = "0001_core"
branch_labels = ("predict",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False, index=True),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("manifest_id", sa.Integer, sa.ForeignKey("split_manifests.id")),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("dialogue_id", sa.String(128), sa.ForeignKey("dialogues.id"), nullable=False, index=True),
        sa.Column("gold", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("raw_output", sa.Text),
        sa.Column("predicted", sa.String(32)),
        sa.Column("reason", sa.Text),
        sa.Column("top3", sa.JSON),
        sa.Column("distribution", sa.JSON),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("run_id", "dialogue_id", name="uq_prediction_run_dialogue"),
    )


def downgrade() -> None:
    op.drop_table("predictions")
