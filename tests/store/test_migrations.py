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


def test_payloads_move_to_their_own_table(db_url: str) -> None:
    """0007 moves each span's attributes, events and links to span_payloads, leaving dropped ones behind."""
    from alembic import command
    from sqlalchemy import text

    from agentwatch.store.engine import _alembic_config

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0006")
            jsonb = "::jsonb" if engine.dialect.name == "postgresql" else ""
            json_type = "jsonb" if engine.dialect.name == "postgresql" else "text"
            columns = ("project_id, trace_id, span_id, session_id, session_explicit, name, kind, span_kind, "
                       "start_ns, end_ns, status_code, success, attributes, events, links")
            conn.execute(text(
                f"INSERT INTO spans ({columns}) VALUES "
                f"(1, 't1', 's1', 'a', true, 'chat', 'llm', 0, 1, 2, 0, true, CAST(:kept AS {json_type}), CAST(:events AS {json_type}), NULL), "
                f"(1, 't1', 's2', 'a', true, 'tool', 'tool', 0, 1, 2, 0, true, '{{}}'{jsonb}, NULL, NULL)"),
                {"kept": '{"gen_ai.operation.name": "chat"}', "events": '[{"name": "e", "time_ns": 1}]'})
        assert migrate(engine) == head_revision()
        with engine.connect() as conn:
            moved = conn.execute(text("SELECT trace_id, span_id, attributes, events, links FROM span_payloads")).all()
            columns_left = {c["name"] for c in inspect(conn).get_columns("spans")}
            spans = conn.execute(text("SELECT count(*) FROM spans")).scalar_one()
        assert len(moved) == 1
        trace_id, span_id, attributes, events, links = moved[0]
        as_json = [v if not isinstance(v, str) else __import__("json").loads(v) for v in (attributes, events)]
        assert (trace_id, span_id, links) == ("t1", "s1", None)
        assert as_json == [{"gen_ai.operation.name": "chat"}, [{"name": "e", "time_ns": 1}]]
        assert spans == 2
        assert not {"attributes", "events", "links"} & columns_left
    finally:
        engine.dispose()
