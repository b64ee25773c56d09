"""A transaction PostgreSQL rolls back as a deadlock is tried again: the writer's batch still commits.

The deadlock is a real one: another transaction holds the session's row while
the writer, half-way through a batch, holds the row of the batch's new trace;
the other transaction then asks for that trace's row. PostgreSQL aborts the
writer (its deadlock timeout is the shorter), the other transaction rolls
back, and the writer's second attempt stores the batch.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from agentwatch.ingest.decode import traces_from_message
from agentwatch.ingest.receiver import prepare_spans
from agentwatch.normalize import NormalizeOptions
from agentwatch.sessions.lifecycle import SessionLifecycle
from agentwatch.store import models as m
from agentwatch.store.engine import retryable
from agentwatch.store.store import Store
from agentwatch.store.writer import WriteBatch, Writer
from agentwatch.testing import agent_session_request

T0 = 1_767_225_600_000_000_000


@pytest.fixture
def pg_store(pg_databases: Any) -> Iterator[Store]:
    name = pg_databases.create()
    store = Store(pg_databases.url(name))
    store.migrate()
    try:
        yield store
    finally:
        store.engine.dispose()
        pg_databases.drop(name)


def batch(project_id: int, rng: random.Random, session_id: str, start_ns: int) -> tuple[WriteBatch, str]:
    request, _ = agent_session_request(rng, session_id=session_id, start_ns=start_ns, tool_calls=1)
    prepared = prepare_spans(traces_from_message(request), NormalizeOptions())
    trace_id = prepared.rows[0]["trace_id"]
    return WriteBatch(project_id, spans=prepared.rows, resources=prepared.resources), trace_id


def test_a_deadlocked_write_is_tried_again_and_commits(pg_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    project_id = pg_store.ensure_project("default")
    writer = Writer(pg_store.engine, SessionLifecycle(pg_store.engine, idle_timeout_s=300, allowed_lateness_s=60))
    writer.start()
    rng = random.Random(3)
    try:
        first, _ = batch(project_id, rng, "sess-deadlock", T0)
        assert writer.submit(first).result(timeout=30) == len(first.spans)
        second, trace_id = batch(project_id, rng, "sess-deadlock", T0 + 10**9)
        caplog.set_level(logging.WARNING, logger="agentwatch.store.writer")

        with pg_store.engine.connect() as other:
            other.execute(text("SET LOCAL deadlock_timeout = '20s'"))  # the writer's 1 s runs out first: it is the victim
            locked = other.execute(text("UPDATE sessions SET flagged = flagged WHERE session_id = 'sess-deadlock'")).rowcount
            assert locked == 1
            future = writer.submit(second)
            waited = _until_waiting(pg_store)
            assert waited, "the writer never waited for the session row"
            # Waits for the writer's row of the new trace; when PostgreSQL aborts the writer, that row is
            # gone and this one goes in (the writer's second attempt then waits for this transaction).
            inserted = other.execute(text("INSERT INTO trace_sessions (project_id, trace_id, session_id, explicit) "
                                          "VALUES (:p, :t, 'sess-deadlock', true) ON CONFLICT DO NOTHING"),
                                     {"p": project_id, "t": trace_id}).rowcount
            assert inserted == 1, "the writer's transaction was not rolled back"
            other.rollback()

        assert future.result(timeout=30) == len(second.spans)
        with pg_store.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(m.spans)
                                  .where(m.spans.c.session_id == "sess-deadlock")).scalar_one()
        assert stored == len(first.spans) + len(second.spans)
        assert any("rolled back (40P01)" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        writer.stop()


def _until_waiting(store: Store, timeout_s: float = 10.0) -> bool:
    """True once some backend of this database waits for a lock."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:  # a new transaction each time: pg_stat_activity is a snapshot
            waiting = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND wait_event_type = 'Lock'")).scalar_one()
        if waiting:
            return True
        time.sleep(0.05)
    return False


def test_only_deadlocks_and_serialization_failures_are_retryable(pg_store: Store) -> None:
    """``retryable`` on the errors PostgreSQL really raises: a deadlock is, a duplicate key is not."""
    with pg_store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE pair (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO pair VALUES (1), (2)"))
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def take(first: int, second: int) -> None:
        try:
            with pg_store.engine.begin() as conn:
                conn.execute(text("UPDATE pair SET id = id WHERE id = :i"), {"i": first})
                barrier.wait(timeout=10)
                conn.execute(text("UPDATE pair SET id = id WHERE id = :i"), {"i": second})
        except OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(1, 2)), threading.Thread(target=take, args=(2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 1 and retryable(errors[0]), errors
    with pytest.raises(IntegrityError) as duplicate, pg_store.engine.begin() as conn:
        conn.execute(text("INSERT INTO pair VALUES (1)"))
    assert not retryable(duplicate.value)
