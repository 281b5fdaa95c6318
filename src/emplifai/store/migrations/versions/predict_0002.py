"""Prediction stage: Table 2's stored, signed metrics, one row per (run, split).

Revision ID: predict_0002
Revises: predict_0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "predict_0002"
down_revision = "predict_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False, index=True),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("entry", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "split", name="uq_prediction_metrics_run_split"),
    )


def downgrade() -> None:
    op.drop_table("prediction_metrics")
