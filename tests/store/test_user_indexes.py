"""A user's sessions and spans are found through an index, not by reading the project's rows (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from agentwatch.store.erase import user_forms
from agentwatch.store.store import SessionFilter, Store


@pytest.fixture
def pg(pg_databases) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    name = pg_databases.create()
    store = Store(pg_databases.url(name))
    store.migrate()
    try:
        yield store
    finally:
        store.close()
        pg_databases.drop(name)


def _plan(store: Store, sql: str, **params: object) -> str:
    with store.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))  # what the planner can use, whatever the table's size
        return "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql), params))


def test_the_user_filter_and_erasure_read_an_index(pg: Store) -> None:
    pid = pg.ensure_project("default")
    with pg.engine.begin() as conn:
        conn.execute(text("""INSERT INTO sessions (project_id, session_id, start_ns, end_ns, spans, turns, llm_calls,
            tool_calls, tool_errors, errors, tokens_in, tokens_out, agent_tokens_in, agent_tokens_out, usage_spans,
            cost_usd, work_ms, user_id, complete, flagged, sampled, created_at, updated_at)
            SELECT :p, 's' || g, g::bigint * 1000000000, g::bigint * 1000000000 + 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                   0, 0, 'user-' || (g % 500), true, false, false, now(), now()
            FROM generate_series(1, 5000) g"""), {"p": pid})
        conn.execute(text("""INSERT INTO spans (project_id, trace_id, span_id, session_id, session_explicit, name, kind,
            span_kind, start_ns, end_ns, status_code, success, user_id)
            SELECT :p, lpad(to_hex(g / 4), 32, '0'), lpad(to_hex(g), 16, '0'), 's' || (g / 4), true, 'x', 'llm', 1,
                   g::bigint, g::bigint + 1, 0, true, CASE WHEN g % 4 = 0 THEN 'user-' || ((g / 4) % 500) END
            FROM generate_series(4, 20003) g"""), {"p": pid})
        conn.execute(text("ANALYZE"))
    rows, _ = pg.list_sessions(pid, SessionFilter(user_id="user-7"), limit=50)
    assert len(rows) == 10 and all(r["user_id"] == "user-7" for r in rows)
    sessions = _plan(pg, "SELECT * FROM sessions WHERE project_id = :p AND user_id = :u "
                         "ORDER BY start_ns DESC, session_id DESC LIMIT 51", p=pid, u="user-7")
    assert "ix_sessions_user" in sessions, sessions
    spans = _plan(pg, "SELECT DISTINCT session_id FROM spans WHERE project_id = :p AND user_id = ANY(:u)",
                  p=pid, u=user_forms("someone@example.com"))
    assert "ix_spans_user" in spans, spans
