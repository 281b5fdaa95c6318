"""Crowdsourcing web app: per-campaign worked examples for workers, and server-side drafts of unsent work.

Revision ID: collect_0004
Revises: collect_0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "collect_0004"
down_revision = "collect_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collect_examples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("collect_campaigns.id"), nullable=False),
        sa.Column("emotion", sa.String(32), nullable=False),
        sa.Column("situation", sa.Text, nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("supporter", sa.Text, nullable=False),
        sa.Column("origin", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("campaign_id", "emotion", name="uq_collect_example"),
    )
    op.create_table(
        "collect_drafts",
        sa.Column("claim_id", sa.Integer, sa.ForeignKey("collect_claims.id"), primary_key=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("collect_drafts")
    op.drop_table("collect_examples")
