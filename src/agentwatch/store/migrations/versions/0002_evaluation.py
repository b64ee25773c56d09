"""Evaluators, scores, the evaluation queue, and evaluation/retention marks on sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("evaluated_at", Ts))
        batch.add_column(sa.Column("payload_dropped_at", Ts))
    op.create_table(
        "evaluators",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("first_used_at", Ts),
    )
    op.create_table(
        "scores",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("evaluator", sa.Text, nullable=False),
        sa.Column("evaluator_version", sa.String(32), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("passed", sa.Boolean),
        sa.Column("threshold", sa.Float),
        sa.Column("direction", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("raw", sa.Text),
        sa.Column("judge_model", sa.Text),
        sa.Column("prompt_hash", sa.String(64)),
        sa.Column("dataset_version", sa.Text),
        sa.Column("inclusion_probability", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float),
        sa.Column("cost_usd", sa.Float),
        sa.Column("tokens_in", sa.BigInteger),
        sa.Column("tokens_out", sa.BigInteger),
        sa.Column("event_time_ns", sa.BigInteger, nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
    )
    op.create_index("ux_scores", "scores", ["project_id", "session_id", "span_id", "evaluator", "evaluator_version"],
                    unique=True)
    op.create_index("ix_scores_time", "scores", ["project_id", "event_time_ns"])
    op.create_index("ix_scores_evaluator", "scores", ["project_id", "evaluator", "evaluator_version",
                                                      "event_time_ns"])
    op.create_table(
        "eval_jobs",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("evaluators", JSONType),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("lease_until", Ts),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
    )
    op.create_index("ix_eval_jobs_state", "eval_jobs", ["state", "id"])
    op.create_index("ux_eval_jobs_session", "eval_jobs", ["project_id", "session_id"], unique=True,
                    sqlite_where=sa.text("reason = 'complete'"), postgresql_where=sa.text("reason = 'complete'"))


def downgrade() -> None:
    op.drop_table("eval_jobs")
    op.drop_table("scores")
    op.drop_table("evaluators")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("payload_dropped_at")
        batch.drop_column("evaluated_at")
