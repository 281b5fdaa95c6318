"""Synthetic augmentation: runs and candidates (accepted, rejected with reason, or still open).

Revision ID: synth_0001
Revises: 0001_core
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "synth_0001"
down_revision = "0001_core"
branch_labels = ("synth",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "synth_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(32), nullable=False, index=True),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "synth_candidates",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("synth_runs.id"), nullable=False, index=True),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("emotion", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(128)),
        sa.Column("situation_id", sa.String(128)),
        sa.Column("condition", sa.String(64)),
        sa.Column("stage", sa.String(64)),
        sa.Column("want", sa.Integer, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("stages", sa.JSON, nullable=False),
        sa.Column("filters", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("core_id", sa.String(128)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_synth_cand_work", "synth_candidates", ["key", "emotion", "kind", "state"])
    op.create_index("ix_synth_cand_parent", "synth_candidates", ["parent_id"])


def downgrade() -> None:
    op.drop_table("synth_candidates")
    op.drop_table("synth_runs")
