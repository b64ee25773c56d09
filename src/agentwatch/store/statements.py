"""Hand-written SQL for the ingest hot path, one text per dialect.

The writer inserts spans and their payloads with the driver's ``executemany``
on positional tuples (on PostgreSQL with ``COPY`` when the rows are new):
SQLAlchemy's per-row parameter processing costs more than SQLite's own
insert. The column order here is the order of the writer's tuples.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

SPAN_COLUMNS = (
    "project_id", "trace_id", "span_id", "parent_span_id", "session_id", "session_explicit", "name", "kind",
    "span_kind", "start_ns", "end_ns", "status_code", "status_message", "success", "error_type", "service",
    "agent_name", "agent_version", "intent", "user_id", "provider", "model", "tool_name", "tokens_in",
    "tokens_out", "cost_usd", "scope_name", "scope_version", "resource_key",
)
PAYLOAD_COLUMNS = ("project_id", "trace_id", "span_id", "attributes", "events", "links")
_JSON_COLUMNS = frozenset({"attributes", "events", "links"})
_KEY = ("project_id", "trace_id", "span_id")


def _insert(table: str, columns: tuple[str, ...], pg: bool) -> tuple[str, str]:
    """(insert, upsert) texts of ``table`` with positional parameters."""
    marks = ", ".join(("%s::jsonb" if c in _JSON_COLUMNS else "%s") if pg else "?" for c in columns)
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in _KEY)
    return insert, f"{insert} ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {updates}"

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def clean_json(value: Any) -> Any:
    """``value`` made storable as JSON on every engine.

    NUL becomes U+FFFD (PostgreSQL text and jsonb cannot hold it); NaN and
    the infinities become the strings proto3 JSON uses for them ("NaN",
    "Infinity", "-Infinity"), since JSON has no such numbers.
    """
    kind = type(value)
    if kind is str:
        return value.replace("\x00", "\ufffd")
    if kind is float:
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if kind is dict:
        return {str(k).replace("\x00", "\ufffd"): clean_json(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [clean_json(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON text storable on every engine (see :func:`clean_json`).

    The common case costs one encode and one substring test; only a value
    holding NUL or a non-finite number is walked and cleaned.
    """
    try:
        text = _encoder.encode(value)
    except ValueError:
        return _encoder.encode(clean_json(value))
    if "\\u0000" in text:
        return _encoder.encode(clean_json(value))
    return text


class Statements:
    """The texts for one dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        pg = dialect == "postgresql"
        self.spans_insert, self.spans_upsert = _insert("spans", SPAN_COLUMNS, pg)
        self.payloads_insert, self.payloads_upsert = _insert("span_payloads", PAYLOAD_COLUMNS, pg)
        #: PostgreSQL's bulk path for rows known to be new (jsonb reads JSON text in COPY's text format).
        self.spans_copy = f"COPY spans ({', '.join(SPAN_COLUMNS)}) FROM STDIN"
        self.payloads_copy = f"COPY span_payloads ({', '.join(PAYLOAD_COLUMNS)}) FROM STDIN"
        self._mark = "%s" if pg else "?"

    @lru_cache(maxsize=64)  # noqa: B019 - a handful of chunk sizes per writer
    def trace_sessions_insert(self, rows: int) -> str:
        """Insert ``rows`` trace filings, answering the trace ids that were new."""
        m = self._mark
        values = ", ".join([f"({m}, {m}, {m}, {m})"] * rows)
        return (f"INSERT INTO trace_sessions (project_id, trace_id, session_id, explicit) VALUES {values} "
                "ON CONFLICT (project_id, trace_id) DO NOTHING RETURNING trace_id")
