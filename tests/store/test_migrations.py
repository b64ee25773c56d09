"""Migrations apply on both engines and leave exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from agentwatch.store.engine import head_revision, make_engine, migrate
from agentwatch.store.models import metadata


def test_upgrade_to_head_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert migrate(engine) == head_revision()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, metadata)
        assert diffs == [], f"the migrations and models/ disagree: {diffs}"
        tables = set(inspect(engine).get_table_names())
        assert {"projects", "api_keys", "spans", "sessions", "span_events", "trace_sessions"} <= tables
    finally:
        engine.dispose()


def test_migrating_twice_is_a_no_op(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        first = migrate(engine)
        assert migrate(engine) == first
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()
