"""Crowdsourcing web app: failed sign-ins, for login throttling shared by every server process.

Revision ID: collect_0002
Revises: collect_0001
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "collect_0002"
down_revision = "collect_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collect_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_collect_login_failure_key", "collect_login_failures", ["scope", "key", "at"])
    op.create_index("ix_collect_login_failure_at", "collect_login_failures", ["at"])


def downgrade() -> None:
    op.drop_table("collect_login_failures")
