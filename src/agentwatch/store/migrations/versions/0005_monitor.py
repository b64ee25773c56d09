"""The monitor and alerts: hourly rollups, failure templates, alerts, silences, notifications.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("work_ms", sa.Float, nullable=False, server_default="0"))
    op.create_table(
        "rollups_hourly",
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
    op.create_index("ix_rollups_hourly_dimension", "rollups_hourly", ["project_id", "dimension", "minute_ns"])
    op.create_index("ix_spans_failures", "spans", ["project_id", "end_ns"],
                    sqlite_where=sa.text("success IS 0"), postgresql_where=sa.text("success IS false"))
    op.create_table(
        "monitor_state",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("last_tick_ns", sa.BigInteger, nullable=False),
        sa.Column("state", JSONType, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
    )
    op.create_table(
        "failure_templates",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("first_seen_ns", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ns", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("weighted_count", sa.Float, nullable=False),
        sa.Column("baseline", sa.Boolean, nullable=False),
        sa.Column("created_at", Time, nullable=False),
    )
    op.create_index("ix_failure_templates_project", "failure_templates", ["project_id", "first_seen_ns"])
    op.create_table(
        "template_hits",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("template_id", IdType, nullable=False),
        sa.Column("event_ns", sa.BigInteger, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("user_id", sa.Text),
        sa.Column("service", sa.Text),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_template_hits_time", "template_hits", ["project_id", "event_ns"])
    op.create_index("ix_template_hits_template", "template_hits", ["project_id", "template_id", "event_ns"])
    op.create_table(
        "alerts",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("dedup_key", sa.Text, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("dimension", sa.Text, nullable=False),
        sa.Column("evaluator", sa.Text, nullable=False),
        sa.Column("evaluator_version", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("resolved_ns", sa.BigInteger),
        sa.Column("detected_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("figures", JSONType, nullable=False),
        sa.Column("session_ids", JSONType, nullable=False),
        sa.Column("trace_ids", JSONType, nullable=False),
        sa.Column("owner", sa.Text),
        sa.Column("acknowledged_at", Time),
        sa.Column("acknowledged_by", sa.Text),
        sa.Column("silenced_until", Time),
        sa.Column("notified_at", Time),
    )
    op.create_index("ix_alerts_state", "alerts", ["project_id", "state", "started_ns"])
    op.create_index("ix_alerts_key", "alerts", ["project_id", "dedup_key", "state"])
    op.create_table(
        "silences",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("matchers", JSONType, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("expires_at", Time, nullable=False),
    )
    op.create_index("ix_silences_project", "silences", ["project_id", "expires_at"])
    op.create_table(
        "notifications",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("alert_id", IdType, nullable=False),
        sa.Column("notifier", sa.Text, nullable=False),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", Time, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("sent_at", Time),
    )
    op.create_index("ix_notifications_due", "notifications", ["state", "next_attempt_at"])


def downgrade() -> None:
    for table in ("notifications", "silences", "alerts", "template_hits", "failure_templates", "monitor_state",
                  "rollups_hourly"):
        op.drop_table(table)
    op.drop_index("ix_spans_failures", table_name="spans")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("work_ms")
