"""Collect: platform IDs and one-time invites (onboarding), completion codes, campaign pause and worker quota.

Revision ID: collect_0003
Revises: collect_0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "collect_0003"
down_revision = "collect_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add_column without constraints works on SQLite; uniqueness comes from indexes (NULLs never collide).
    op.add_column("collect_users", sa.Column("platform_id", sa.String(64)))
    op.create_index("ix_collect_users_platform_id", "collect_users", ["platform_id"], unique=True)
    op.add_column("collect_campaigns", sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("collect_campaigns", sa.Column("worker_quota", sa.Integer))
    op.add_column("collect_claims", sa.Column("completion_code", sa.String(32)))
    op.create_index("ix_collect_claims_completion_code", "collect_claims", ["completion_code"], unique=True)
    op.create_table(
        "collect_invites",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("collect_users.id"), nullable=False, index=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float),
        sa.Column("created_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("collect_invites")
    op.drop_index("ix_collect_claims_completion_code", "collect_claims")
    op.drop_column("collect_claims", "completion_code")
    op.drop_column("collect_campaigns", "worker_quota")
    op.drop_column("collect_campaigns", "paused")
    op.drop_index("ix_collect_users_platform_id", "collect_users")
    op.drop_column("collect_users", "platform_id")
