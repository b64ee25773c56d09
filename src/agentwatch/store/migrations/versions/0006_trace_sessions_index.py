"""Index trace_sessions by session: alerts name their sessions' traces at every check.

Without it, finding a session's trace read every trace of the project (bench/monitor.py: the check
time grew 88x from 1 thousand to 1 million stored sessions).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trace_sessions_session", "trace_sessions", ["project_id", "session_id", "trace_id"])


def downgrade() -> None:
    op.drop_index("ix_trace_sessions_session", table_name="trace_sessions")
