"""The schema: one set of SQLAlchemy Core tables for SQLite and PostgreSQL.

Event times (span and session start/end) are integer Unix nanoseconds, which
are UTC by definition; wall-clock times are timezone-aware UTC timestamps.
The original attributes of every span are kept whole (``attributes``); the
other span columns are what queries filter and aggregate on. The full
normalized span is rebuilt from them on read.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData()

#: JSONB on PostgreSQL, JSON text on SQLite.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")
#: Autoincrement keys: INTEGER PRIMARY KEY is SQLite's rowid, BIGINT elsewhere.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored and returned in UTC, whatever the engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


projects = Table(
    "projects",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, ForeignKey("projects.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

resources = Table(
    "resources",
    metadata,
    Column("key", String(16), primary_key=True),
    Column("attributes", JSONType, nullable=False),
)

spans = Table(
    "spans",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16)),
    Column("session_id", Text, nullable=False),
    #: True when the span itself carried the session id (not inherited).
    Column("session_explicit", Boolean, nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("span_kind", SmallInteger, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("status_code", SmallInteger, nullable=False),
    Column("status_message", Text),
    Column("success", Boolean, nullable=False),
    Column("error_type", Text),
    Column("service", Text),
    Column("agent_name", Text),
    Column("agent_version", Text),
    Column("intent", Text),
    Column("user_id", Text),
    Column("provider", Text),
    Column("model", Text),
    Column("tool_name", Text),
    Column("tokens_in", BigInteger),
    Column("tokens_out", BigInteger),
    Column("cost_usd", Float),
    Column("scope_name", Text),
    Column("scope_version", Text),
    Column("resource_key", String(16)),
    Column("attributes", JSONType, nullable=False),
    Column("events", JSONType),
    Column("links", JSONType),
)
Index("ix_spans_session", spans.c.project_id, spans.c.session_id)

#: Which session each trace's spans without a session id of their own belong to.
trace_sessions = Table(
    "trace_sessions",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("session_id", Text, nullable=False),
    #: False while no span of the trace has named a session (the trace id stands in).
    Column("explicit", Boolean, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("project_id", IdType, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("service", Text),
    Column("agent_name", Text),
    Column("agent_version", Text),
    Column("intent", Text),
    Column("user_id", Text),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("spans", Integer, nullable=False),
    Column("turns", Integer, nullable=False),
    Column("llm_calls", Integer, nullable=False),
    Column("tool_calls", Integer, nullable=False),
    Column("tool_errors", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("tokens_in", BigInteger, nullable=False),
    Column("tokens_out", BigInteger, nullable=False),
    #: Tokens of agent/chain spans, used only when the session has no llm span.
    Column("agent_tokens_in", BigInteger, nullable=False),
    Column("agent_tokens_out", BigInteger, nullable=False),
    Column("usage_spans", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("completed_at", UtcDateTime()),
    Column("flagged", Boolean, nullable=False),
    Column("sampled", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index("ix_sessions_start", sessions.c.project_id, sessions.c.start_ns)
Index("ix_sessions_open", sessions.c.project_id, sessions.c.complete, sessions.c.end_ns)

#: OTLP log records that name a span (evaluations, inference details, legacy
#: message events). Kept apart so they attach whether they come before or after
#: their span.
span_events = Table(
    "span_events",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("project_id", IdType, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("event_name", Text, nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("severity_number", SmallInteger, nullable=False),
    Column("attributes", JSONType, nullable=False),
    Column("body", JSONType),
    Column("scope_name", Text),
    Column("resource_key", String(16)),
)
Index("ix_span_events_span", span_events.c.project_id, span_events.c.trace_id, span_events.c.span_id)

#: The event-time clock of each project.
watermarks = Table(
    "watermarks",
    metadata,
    Column("project_id", IdType, primary_key=True),
    #: Largest event time (span end) seen.
    Column("max_event_ns", BigInteger, nullable=False),
    #: The watermark: sessions that ended idle_timeout before it are complete.
    Column("watermark_ns", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
