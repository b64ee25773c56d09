"""Projects, API keys, resources, spans, sessions, span events and watermarks.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", Ts, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("revoked_at", Ts, nullable=True),
    )
    op.create_table(
        "resources",
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column("attributes", JSONType, nullable=False),
    )
    op.create_table(
        "spans",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("parent_span_id", sa.String(16)),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("session_explicit", sa.Boolean, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("span_kind", sa.SmallInteger, nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("status_code", sa.SmallInteger, nullable=False),
        sa.Column("status_message", sa.Text),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("error_type", sa.Text),
        sa.Column("service", sa.Text),
        sa.Column("agent_name", sa.Text),
        sa.Column("agent_version", sa.Text),
        sa.Column("intent", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("provider", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("tool_name", sa.Text),
        sa.Column("tokens_in", sa.BigInteger),
        sa.Column("tokens_out", sa.BigInteger),
        sa.Column("cost_usd", sa.Float),
        sa.Column("scope_name", sa.Text),
        sa.Column("scope_version", sa.Text),
        sa.Column("resource_key", sa.String(16)),
        sa.Column("attributes", JSONType, nullable=False),
        sa.Column("events", JSONType),
        sa.Column("links", JSONType),
    )
    op.create_index("ix_spans_session", "spans", ["project_id", "session_id"])
    op.create_table(
        "trace_sessions",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("explicit", sa.Boolean, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("service", sa.Text),
        sa.Column("agent_name", sa.Text),
        sa.Column("agent_version", sa.Text),
        sa.Column("intent", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("spans", sa.Integer, nullable=False),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("llm_calls", sa.Integer, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False),
        sa.Column("tool_errors", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("tokens_in", sa.BigInteger, nullable=False),
        sa.Column("tokens_out", sa.BigInteger, nullable=False),
        sa.Column("agent_tokens_in", sa.BigInteger, nullable=False),
        sa.Column("agent_tokens_out", sa.BigInteger, nullable=False),
        sa.Column("usage_spans", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("completed_at", Ts),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("sampled", sa.Boolean, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
    )
    op.create_index("ix_sessions_start", "sessions", ["project_id", "start_ns"])
    op.create_index("ix_sessions_open", "sessions", ["project_id", "complete", "end_ns"])
    op.create_table(
        "span_events",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("event_name", sa.Text, nullable=False),
        sa.Column("time_ns", sa.BigInteger, nullable=False),
        sa.Column("severity_number", sa.SmallInteger, nullable=False),
        sa.Column("attributes", JSONType, nullable=False),
        sa.Column("body", JSONType),
        sa.Column("scope_name", sa.Text),
        sa.Column("resource_key", sa.String(16)),
    )
    op.create_index("ix_span_events_span", "span_events", ["project_id", "trace_id", "span_id"])
    op.create_table(
        "watermarks",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("max_event_ns", sa.BigInteger, nullable=False),
        sa.Column("watermark_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
    )


def downgrade() -> None:
    for table in ("watermarks", "span_events", "sessions", "trace_sessions", "spans", "resources", "api_keys",
                  "projects"):
        op.drop_table(table)
