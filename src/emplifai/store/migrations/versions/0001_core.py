"""Dataset core: situations, dialogues, review history, split manifests.

Revision ID: 0001_core
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "situations",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("emotion", sa.String(32), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("condition", sa.String(64)),
        sa.Column("stage", sa.String(64)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("author", sa.String(128)),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("batch", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "dialogues",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("situation_id", sa.String(128), sa.ForeignKey("situations.id"), nullable=False, index=True),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("supporter", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("author", sa.String(128)),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("batch", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("field", sa.String(32)),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_review_entity", "review_events", ["entity", "entity_id"])
    op.create_table(
        "split_manifests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, index=True),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("fractions", sa.JSON, nullable=False),
        sa.Column("sizes", sa.JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "split_members",
        sa.Column("manifest_id", sa.Integer, sa.ForeignKey("split_manifests.id"), primary_key=True),
        sa.Column("situation_id", sa.String(128), sa.ForeignKey("situations.id"), primary_key=True),
        sa.Column("split", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    for table in ("split_members", "split_manifests", "review_events", "dialogues", "situations"):
        op.drop_table(table)
