"""Crowdsourcing web app: accounts, campaigns, quota tasks, claims with leases, pay ledger.

Revision ID: collect_0001
Revises: 0001_core
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "collect_0001"
down_revision = "0001_core"
branch_labels = ("collect",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "collect_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("session_version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "collect_campaigns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("emotions", sa.JSON, nullable=False),
        sa.Column("round1_target", sa.Integer, nullable=False),
        sa.Column("round2_target", sa.Integer, nullable=False),
        sa.Column("rating_raters", sa.Integer, nullable=False),
        sa.Column("pay_situation", sa.Integer, nullable=False),
        sa.Column("pay_dialogue", sa.Integer, nullable=False),
        sa.Column("pay_rating", sa.Integer, nullable=False),
        sa.Column("rejection_cap", sa.Float, nullable=False),
        sa.Column("lease_seconds", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "collect_tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("collect_campaigns.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("emotion", sa.String(32)),
        sa.Column("situation_id", sa.String(128), sa.ForeignKey("situations.id")),
        sa.Column("group_no", sa.Integer),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("filled", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("campaign_id", "kind", "emotion", "situation_id", "group_no", name="uq_collect_task"),
        sa.CheckConstraint("filled >= 0 AND filled <= target", name="ck_collect_task_filled"),
    )
    op.create_index("ix_collect_task_pick", "collect_tasks", ["campaign_id", "kind"])
    op.create_table(
        "collect_claims",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("collect_campaigns.id"), nullable=False),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("collect_tasks.id"), nullable=False, index=True),
        sa.Column("worker_id", sa.Integer, sa.ForeignKey("collect_users.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("live", sa.Integer),
        sa.Column("leased_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("submitted_at", sa.Float),
        sa.Column("entity_id", sa.String(128)),
        sa.Column("answer", sa.JSON),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("collect_users.id")),
        sa.Column("reviewed_at", sa.Float),
        sa.Column("reason", sa.Text),
        sa.UniqueConstraint("task_id", "worker_id", "live", name="uq_collect_claim_live"),
    )
    op.create_index("ix_collect_claim_status", "collect_claims", ["campaign_id", "status"])
    op.create_index("ix_collect_claim_lease", "collect_claims", ["status", "expires_at"])
    op.create_table(
        "collect_pay",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("collect_campaigns.id"), nullable=False, index=True),
        sa.Column("worker_id", sa.Integer, sa.ForeignKey("collect_users.id"), nullable=False, index=True),
        sa.Column("claim_id", sa.Integer, sa.ForeignKey("collect_claims.id"), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_yen", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("collect_pay", "collect_claims", "collect_tasks", "collect_campaigns", "collect_users"):
        op.drop_table(table)
