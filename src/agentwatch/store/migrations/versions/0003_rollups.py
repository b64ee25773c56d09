"""Per-minute rollups of sessions and scores in event time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("minute_ns", sa.BigInteger, primary_key=True),
        sa.Column("service", sa.Text, primary_key=True),
        sa.Column("agent_version", sa.Text, primary_key=True),
        sa.Column("intent", sa.Text, primary_key=True),
        sa.Column("dimension", sa.Text, primary_key=True),
        sa.Column("evaluator_version", sa.String(32), primary_key=True),
        sa.Column("count", sa.Float, nullable=False),
        sa.Column("weighted_count", sa.Float, nullable=False),
        sa.Column("weighted_sum", sa.Float, nullable=False),
        sa.Column("weighted_sum_sq", sa.Float, nullable=False),
        sa.Column("failures", sa.Float, nullable=False),
        sa.Column("weighted_failures", sa.Float, nullable=False),
        sa.Column("errors", sa.Float, nullable=False),
        sa.Column("latency_sketch", sa.LargeBinary),
        sa.Column("cost_sketch", sa.LargeBinary),
    )
    op.create_index("ix_rollups_dimension", "rollups", ["project_id", "dimension", "minute_ns"])


def downgrade() -> None:
    op.drop_table("rollups")
