"""The feedback loop: datasets (named, versioned, immutable), calibration runs, review lookups.

A dataset version lists its cases through ``dataset_members``; a case row is
written once and never changed (triggers refuse an UPDATE on every dataset
table), so every version stays reproducible. ``evaluators.calibration`` holds
the latest calibration run's summary of each version.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
Time = sa.DateTime(timezone=True)

#: Tables whose rows are written once and never updated.
IMMUTABLE = ("dataset_versions", "dataset_cases", "dataset_members")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("floors", JSONType, nullable=False),
        sa.Column("created_at", Time, nullable=False),
    )
    op.create_index("ux_datasets_name", "datasets", ["project_id", "name"], unique=True)
    op.create_table(
        "dataset_versions",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", IdType, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("case_count", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("pins", JSONType, nullable=False),
        sa.Column("author", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("created_at", Time, nullable=False),
    )
    op.create_index("ux_dataset_versions", "dataset_versions", ["dataset_id", "version"], unique=True)
    op.create_table(
        "dataset_cases",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", IdType, nullable=False),
        sa.Column("case_id", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("content", JSONType, nullable=False),
        sa.Column("source_session_id", sa.Text),
        sa.Column("source_user_id", sa.Text),
        sa.Column("created_at", Time, nullable=False),
    )
    op.create_index("ux_dataset_cases_digest", "dataset_cases", ["dataset_id", "digest"], unique=True)
    op.create_index("ix_dataset_cases_source", "dataset_cases", ["source_session_id"])
    op.create_table(
        "dataset_members",
        sa.Column("version_id", IdType, primary_key=True),
        sa.Column("case_row_id", IdType, primary_key=True),
    )
    op.create_table(
        "calibration_runs",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("project_id", IdType, nullable=False),
        sa.Column("evaluator", sa.Text, nullable=False),
        sa.Column("evaluator_version", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("dataset", sa.Text),
        sa.Column("dataset_version", sa.Integer),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("disagreements", JSONType, nullable=False),
        sa.Column("created_at", Time, nullable=False),
    )
    op.create_index("ix_calibration_runs_evaluator", "calibration_runs",
                    ["project_id", "evaluator", "evaluator_version", "id"])
    op.add_column("evaluators", sa.Column("calibration", JSONType))
    # The review queue's oldest-unreviewed lookup reads flagged sessions in the order they were flagged.
    op.create_index("ix_sessions_flagged", "sessions", ["project_id", "evaluated_at"],
                    sqlite_where=sa.text("flagged"), postgresql_where=sa.text("flagged"))
    _immutable_triggers()


def _immutable_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in IMMUTABLE:
            op.execute(f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable: add a new dataset version'); END")
    elif dialect == "postgresql":
        op.execute("CREATE FUNCTION agentwatch_immutable() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION '% rows are immutable: add a new dataset version', TG_TABLE_NAME; END $$ "
                   "LANGUAGE plpgsql")
        for table in IMMUTABLE:
            op.execute(f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION agentwatch_immutable()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in IMMUTABLE:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable" + (f" ON {table}" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agentwatch_immutable()")
    op.drop_index("ix_sessions_flagged", table_name="sessions")
    op.drop_column("evaluators", "calibration")
    for table in ("calibration_runs", "dataset_members", "dataset_cases", "dataset_versions", "datasets"):
        op.drop_table(table)
