"""Span rows, their payloads, log records and resources as the ingest path writes them.

The hot path: the driver's ``executemany`` on positional tuples in the order of
:mod:`agentwatch.store.statements` (on PostgreSQL ``COPY`` when every row is new).
A span's columns go to ``spans`` and its payload (attributes, events, links) to
``span_payloads``, in the caller's transaction. Which session a span belongs to
is decided before it reaches here (:mod:`agentwatch.sessions.assign`).
"""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import Connection, select

from agentwatch._types import RawLogRecord, Resource
from agentwatch.store import models as m
from agentwatch.store.engine import insert_on_conflict
from agentwatch.store.statements import Statements

CHUNK = 500


class SpanRows:
    """Writes spans, payloads, logs and resources of one engine's dialect; remembers the resources it stored."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._sql = Statements(dialect)
        self._known_resources: set[str] = set()

    def forget(self) -> None:
        """Drop what a rolled-back transaction may have taught the cache."""
        self._known_resources.clear()

    def write_resources(self, conn: Connection, resources: list[Resource]) -> None:
        new = {r.key: r for r in resources if r.key not in self._known_resources}
        if not new:
            return
        stmt = insert_on_conflict(self.dialect, m.resources).on_conflict_do_nothing(index_elements=["key"])
        conn.execute(stmt, [{"key": k, "attributes": r.attributes} for k, r in new.items()])
        self._known_resources.update(new)

    def write_logs(self, conn: Connection, project_id: int, logs: list[RawLogRecord]) -> None:
        conn.execute(
            m.span_events.insert(),
            [
                {
                    "project_id": project_id,
                    "trace_id": rec.trace_id,
                    "span_id": rec.span_id,
                    "event_name": rec.event_name or "",
                    "time_ns": rec.time_ns,
                    "severity_number": rec.severity_number,
                    "attributes": rec.attributes,
                    "body": rec.body,
                    "scope_name": rec.scope_name,
                    "resource_key": rec.resource.key,
                }
                for rec in logs
            ],
        )

    def existing(
        self, conn: Connection, project_id: int, trace_ids: list[str], unique: dict[tuple[str, str], Any]
    ) -> dict[tuple[str, str], str]:
        """The spans among ``unique`` already stored (of ``trace_ids``), with the session they are filed under."""
        s = m.spans.c
        existing: dict[tuple[str, str], str] = {}
        for chunk in chunks(trace_ids):
            result = conn.execute(
                select(s.trace_id, s.span_id, s.session_id).where(s.project_id == project_id, s.trace_id.in_(chunk))
            )
            for trace_id, span_id, session_id in result:
                if (trace_id, span_id) in unique:
                    existing[(trace_id, span_id)] = session_id
        return existing

    def write_spans(self, conn: Connection, project_id: int, rows: Iterable[dict[str, Any]], *,
                    replacing: bool) -> None:
        """Insert span rows that carry their ``session_id``; ``replacing``: some are stored already (upsert)."""
        rows = list(rows)
        span_rows = [
            (project_id, r["trace_id"], r["span_id"], r["parent_span_id"], r["session_id"], r["session_explicit"],
             r["name"], r["kind"], r["span_kind"], r["start_ns"], r["end_ns"], r["status_code"], r["status_message"],
             r["success"], r["error_type"], r["service"], r["agent_name"], r["agent_version"], r["intent"],
             r["user_id"], r["provider"], r["model"], r["tool_name"], r["tokens_in"], r["tokens_out"],
             r["cost_usd"], r["scope_name"], r["scope_version"], r["resource_key"])
            for r in rows
        ]
        payload_rows = [(project_id, r["trace_id"], r["span_id"], r["attributes"], r["events"], r["links"])
                        for r in rows]
        sql = self._sql
        if replacing:
            conn.exec_driver_sql(sql.spans_upsert, span_rows)
            conn.exec_driver_sql(sql.payloads_upsert, payload_rows)
        elif self.dialect == "postgresql":
            # Every row is new (no span of these traces was stored): COPY, PostgreSQL's bulk path.
            _copy(conn, sql.spans_copy, span_rows)
            _copy(conn, sql.payloads_copy, payload_rows)
        else:
            conn.exec_driver_sql(sql.spans_insert, span_rows)
            conn.exec_driver_sql(sql.payloads_insert, payload_rows)


def _copy(conn: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """``COPY ... FROM STDIN`` of ``rows`` in the connection's transaction (psycopg 3)."""
    driver: Any = conn.connection.dbapi_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def chunks(items: list[str], size: int = CHUNK) -> Iterable[list[str]]:
    """``items`` in lists of at most ``size``: what an ``IN (...)`` takes at once."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
