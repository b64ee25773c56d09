"""Human labels of evaluator scores.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("evaluator", sa.Text, nullable=False),
        sa.Column("evaluator_version", sa.String(32)),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("expected_score", sa.Float),
        sa.Column("note", sa.Text),
        sa.Column("author", sa.Text),
        sa.Column("event_time_ns", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_labels_evaluator", "labels", ["project_id", "evaluator", "event_time_ns"])
    op.create_index("ix_labels_session", "labels", ["project_id", "session_id"])


def downgrade() -> None:
    op.drop_table("labels")
