"""Stored span rows back to whole normalized spans.

The ingest path stores the original attributes and only the columns that
queries need; the API and the evaluators rebuild the full
:class:`~agentwatch._types.NormalizedSpan` here, log records attached.
"""

from __future__ import annotations

from typing import Any

from agentwatch._types import NormalizedSpan, RawLogRecord, RawSpan, Resource
from agentwatch.normalize import NormalizeOptions, attach_log_records, normalize


def _raw_span(row: dict[str, Any]) -> RawSpan:
    resource = Resource(attributes=row["resource"] or {}, key=row["resource_key"] or "")
    return RawSpan(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        name=row["name"],
        span_kind=row["span_kind"],
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        status_code=row["status_code"],
        status_message=row["status_message"] or "",
        attributes=row["attributes"] or {},
        events=row["events"] or [],
        links=row["links"] or [],
        resource=resource,
        scope_name=row["scope_name"] or "",
        scope_version=row["scope_version"] or "",
    )


def _log_record(ev: dict[str, Any], resource: Resource) -> RawLogRecord:
    return RawLogRecord(
        trace_id=ev["trace_id"],
        span_id=ev["span_id"],
        event_name=ev["event_name"],
        time_ns=ev["time_ns"],
        severity_number=ev["severity_number"],
        attributes=ev["attributes"] or {},
        body=ev["body"],
        resource=resource,
        scope_name=ev["scope_name"] or "",
    )


def normalized_span(row: dict[str, Any], options: NormalizeOptions) -> NormalizedSpan:
    """The whole normalized span of a stored row (from :meth:`Store.spans_of_session`)."""
    raw = _raw_span(row)
    span = normalize(raw, options, content=True)
    if row["log_records"]:
        attach_log_records(span, [_log_record(ev, raw.resource) for ev in row["log_records"]])
    span.session_id = row["session_id"]
    return span
