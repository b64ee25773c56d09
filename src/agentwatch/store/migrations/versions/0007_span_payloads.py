"""Span payloads in a table of their own, which retention deletes whole.

Retention used to empty the attributes, events and links of a span in place. The
span's row shrank, but the space stayed inside pages full of rows still in use,
and new spans are appended elsewhere: the store grew by the size of every
payload ever received. In ``span_payloads`` the payloads of the spans of one
commit sit together; retention deletes them, whole pages become free and new
payloads reuse them. Existing payloads are moved; payloads already dropped are not.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PAYLOAD = ("attributes", "events", "links")


def upgrade() -> None:
    op.create_table(
        "span_payloads",
        sa.Column("project_id", IdType, primary_key=True),
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("attributes", JSONType, nullable=False),
        sa.Column("events", JSONType),
        sa.Column("links", JSONType),
    )
    empty = "'{}'::jsonb" if op.get_bind().dialect.name == "postgresql" else "'{}'"
    # Oldest first, so that the payloads retention will drop first share pages.
    op.execute(
        "INSERT INTO span_payloads (project_id, trace_id, span_id, attributes, events, links) "
        "SELECT project_id, trace_id, span_id, attributes, events, links FROM spans "
        f"WHERE NOT (attributes = {empty} AND events IS NULL AND links IS NULL) ORDER BY end_ns"
    )
    for column in _PAYLOAD:
        if op.get_bind().dialect.name == "sqlite":
            # SQLite drops a column in place (3.35+); no copy of the table is needed.
            op.execute(f"ALTER TABLE spans DROP COLUMN {column}")
        else:
            op.drop_column("spans", column)


def downgrade() -> None:
    op.add_column("spans", sa.Column("attributes", JSONType, nullable=False, server_default="{}"))
    op.add_column("spans", sa.Column("events", JSONType))
    op.add_column("spans", sa.Column("links", JSONType))
    op.execute(
        "UPDATE spans SET attributes = p.attributes, events = p.events, links = p.links FROM span_payloads p "
        "WHERE p.project_id = spans.project_id AND p.trace_id = spans.trace_id AND p.span_id = spans.span_id"
    )
    op.drop_table("span_payloads")
