"""Span payloads live apart from span rows: retention deletes them whole and their space is reused."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import func, select, update

from agentwatch.ingest.decode import traces_from_message
from agentwatch.ingest.receiver import prepare_spans
from agentwatch.normalize import NormalizeOptions
from agentwatch.sessions.lifecycle import SessionLifecycle
from agentwatch.store import models as m
from agentwatch.store import retention
from agentwatch.store.store import Store
from agentwatch.store.writer import WriteBatch, Writer
from agentwatch.testing import agent_session_request

T0 = 1_767_225_600_000_000_000
DAY = 86400 * 10**9


def write_sessions(writer: Writer, project_id: int, rng: random.Random, n: int, start_ns: int) -> list[str]:
    futures, ids = [], []
    for i in range(n):
        request, spec = agent_session_request(rng, start_ns=start_ns + i * 10**9, message_bytes=2000)
        prepared = prepare_spans(traces_from_message(request), NormalizeOptions())
        futures.append(writer.submit(WriteBatch(project_id, spans=prepared.rows, resources=prepared.resources)))
        ids.append(spec.session_id)
    for future in futures:
        future.result(timeout=60)
    return ids


def pages(store: Store) -> tuple[int, int]:
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return (int(conn.exec_driver_sql("PRAGMA page_count").scalar_one()),
                int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()))


def payload_count(store: Store, session_ids: list[str]) -> int:
    s, p = m.spans.c, m.span_payloads.c
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(m.spans.join(
            m.span_payloads, (p.project_id == s.project_id) & (p.trace_id == s.trace_id) & (p.span_id == s.span_id)))
            .where(s.session_id.in_(session_ids))).scalar_one())


def test_dropped_payloads_free_pages_that_new_spans_reuse(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'payloads.db'}")
    store.migrate()
    project_id = store.ensure_project("default")
    sessions = SessionLifecycle(store.engine, idle_timeout_s=300, allowed_lateness_s=60)
    writer = Writer(store.engine, sessions)
    writer.start()
    rng = random.Random(5)
    try:
        empty, _ = pages(store)
        first = write_sessions(writer, project_id, rng, 80, T0)
        writer.call(lambda: sessions.flush(project_id)).result()
        full, _ = pages(store)
        assert payload_count(store, first) == 80 * 20

        with store.engine.begin() as conn:  # evaluated, neither sampled nor flagged: payloads due after 1h
            conn.execute(update(m.sessions).values(evaluated_at=m.utcnow(), sampled=False, flagged=False))
        dropped = 0
        while True:
            with store.engine.begin() as conn:
                n = retention.apply(conn, project_id, T0 + DAY, 300 * 10**9, retention.RetentionPolicy())
            dropped += n
            if n < retention.BATCH:
                break
        assert dropped == 80
        assert payload_count(store, first) == 0
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(m.spans)).scalar_one() == 80 * 20, \
                "span rows stay"
        _, free = pages(store)
        assert free > (full - empty) // 2, "the payloads' pages are free"

        second = write_sessions(writer, project_id, rng, 80, T0 + DAY)
        grown, _ = pages(store)
        assert payload_count(store, second) == 80 * 20
        assert grown - full < (full - empty) // 2, (
            f"the file grew by {grown - full} pages for as many spans as first took {full - empty}")
    finally:
        writer.stop()
        store.close()
