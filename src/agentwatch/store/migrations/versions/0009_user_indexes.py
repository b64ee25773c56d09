"""Index sessions and spans by user: the API's user_id filter and erasure read them.

Without them both read every row of the project: at 100 thousand sessions and 1 million spans on
PostgreSQL, listing a user's sessions took 13 ms and erasing a user 168 ms, growing with the store.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_user", "sessions", ["project_id", "user_id", "start_ns"])
    named = sa.text("user_id IS NOT NULL")
    op.create_index("ix_spans_user", "spans", ["project_id", "user_id"], sqlite_where=named, postgresql_where=named)


def downgrade() -> None:
    op.drop_index("ix_spans_user", table_name="spans")
    op.drop_index("ix_sessions_user", table_name="sessions")
