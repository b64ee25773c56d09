"""Sessions as plain JSON, and back: what a dataset case keeps and what the gate reads.

A case keeps the session's normalized spans whole (``spans``), so an
evaluator re-run on it sees exactly what it saw in production, plus a
readable extract for people and for tools that do not speak spans: the
first user message (``input``), the turns with their tool calls and
retrieved documents, the transcript and the final answer.

The gate reads a candidate agent's outputs in any of these forms, each
turned into a :class:`~agentwatch.evaluate.session.SessionView` through the
same normalizer that ingest uses:

- a case-shaped object with ``spans`` (what this module writes);
- ``{"case_id", "messages": [OpenAI chat messages with tool calls]}``, one
  trace per user turn, as ``agentwatch import`` sends recorded conversations;
- OTLP: an ``ExportTraceServiceRequest`` as protobuf or OTLP/JSON (the
  OpenTelemetry Collector's file exporter writes one JSON request a line).
  A session's case is the ``agentwatch.case_id`` attribute of any of its
  spans, else its session id.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentwatch._types import NormalizedSpan
from agentwatch.evaluate.session import SessionView
from agentwatch.ingest.decode import decode_traces, traces_from_message
from agentwatch.normalize import NormalizeOptions, normalize
from agentwatch.normalize.attributes import as_str

#: The span attribute that ties a candidate's session to a dataset case.
CASE_ATTRIBUTE = "agentwatch.case_id"
_SPAN_FIELDS = {f.name for f in dataclasses.fields(NormalizedSpan)}
#: Summary fields a case keeps (evaluator filters and SessionView read them).
SUMMARY_FIELDS = ("session_id", "service", "agent_name", "agent_version", "intent", "start_ns", "end_ns")


class SnapshotError(ValueError):
    """A session snapshot or candidate that cannot be read; the message names what is wrong."""


def span_dict(span: NormalizedSpan) -> dict[str, Any]:
    return dataclasses.asdict(span)


def span_from_dict(data: Mapping[str, Any], where: str = "span") -> NormalizedSpan:
    if not isinstance(data, Mapping):
        raise SnapshotError(f"{where}: expected a span object")
    missing = [k for k in ("trace_id", "span_id", "start_ns", "end_ns", "name") if k not in data]
    if missing:
        raise SnapshotError(f"{where}: missing {', '.join(missing)}")
    return NormalizedSpan(**{k: v for k, v in data.items() if k in _SPAN_FIELDS})


def extract(view: SessionView) -> dict[str, Any]:
    """The readable part of a case: input, turns with tool calls and documents, transcript, answer."""
    turns = []
    for turn in view.turns:
        turns.append({
            "user": turn.user_text,
            "answer": turn.answer,
            "tool_calls": [{"name": c.name, "arguments": c.arguments, "result": c.result, "success": c.success,
                            "error": c.error_message or c.error_type} for c in turn.tool_calls],
            "documents": turn.documents,
        })
    return {
        "input": turns[0]["user"] if turns else "",
        "turns": turns,
        "transcript": view.transcript(),
        "answer": view.answer,
    }


def snapshot(view: SessionView) -> dict[str, Any]:
    """A session as a case's content: summary, readable extract and whole spans."""
    summary = {k: view.summary.get(k) for k in SUMMARY_FIELDS}
    return {"summary": summary, **extract(view), "spans": [span_dict(s) for s in view.spans]}


def view_of(content: Mapping[str, Any], session_id: str | None = None) -> SessionView:
    """A SessionView of a case's (or a candidate's) ``spans`` and ``summary``."""
    raw_spans = content.get("spans")
    if not isinstance(raw_spans, list) or not raw_spans:
        raise SnapshotError("spans: expected a non-empty list of normalized spans")
    spans = [span_from_dict(s, f"spans[{i}]") for i, s in enumerate(raw_spans)]
    summary = dict(content.get("summary") or {})
    summary.setdefault("session_id", session_id or spans[0].session_id or spans[0].trace_id)
    if session_id:
        summary["session_id"] = session_id
    summary.setdefault("start_ns", min(s.start_ns for s in spans))
    summary.setdefault("end_ns", max(s.end_ns for s in spans))
    for key in ("service", "agent_name", "agent_version", "intent"):
        if summary.get(key) is None:
            summary[key] = next((getattr(s, key) for s in spans if getattr(s, key)), None)
    return SessionView.from_spans(summary, spans)


def views_from_request(request: ExportTraceServiceRequest, options: NormalizeOptions | None = None,
                       ) -> dict[str, SessionView]:
    """Sessions of an OTLP request, keyed by case id (``agentwatch.case_id``, else the session id)."""
    return views_from_spans(spans_of_request(request, options))


def spans_of_request(request: ExportTraceServiceRequest, options: NormalizeOptions | None = None,
                     ) -> list[NormalizedSpan]:
    decoded = traces_from_message(request)
    if decoded.errors:
        raise SnapshotError(f"the OTLP request has invalid spans: {'; '.join(decoded.errors)}")
    opts = options or NormalizeOptions()
    return [normalize(raw, opts) for raw in decoded.spans]


def spans_of_body(body: bytes, content_type: str, options: NormalizeOptions | None = None) -> list[NormalizedSpan]:
    """Normalized spans of an OTLP body (``protobuf`` or ``json``)."""
    decoded = decode_traces(body, content_type)
    if decoded.errors:
        raise SnapshotError(f"the OTLP body has invalid spans: {'; '.join(decoded.errors)}")
    opts = options or NormalizeOptions()
    return [normalize(raw, opts) for raw in decoded.spans]


def views_from_spans(spans: Iterable[NormalizedSpan]) -> dict[str, SessionView]:
    """Group spans into sessions as ingest does (a trace's spans share the id one of them names)."""
    by_trace: dict[str, list[NormalizedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    sessions: dict[str, list[NormalizedSpan]] = {}
    cases: dict[str, str] = {}
    for trace_id, members in by_trace.items():
        session = next((s.session_id for s in members if s.session_id), None) or trace_id
        case = next((as_str(s.raw_attributes.get(CASE_ATTRIBUTE)) for s in members
                     if s.raw_attributes.get(CASE_ATTRIBUTE) is not None), None)
        for span in members:
            span.session_id = session
        sessions.setdefault(session, []).extend(members)
        if case:
            cases[session] = case
    out: dict[str, SessionView] = {}
    for session, members in sessions.items():
        case_id = cases.get(session, session)
        out[case_id] = view_of({"spans": [span_dict(s) for s in members]}, session)
    return out


def view_from_messages(case_id: str, messages: list[Any], options: NormalizeOptions | None = None,
                       start_ns: int = 1_767_225_600 * 10**9) -> SessionView:
    """A session of OpenAI chat messages, sent through the importer's OTLP shape and the normalizer."""
    from agentwatch.traffic.importer import ImportFormatError, conversation_request

    try:
        request = conversation_request(case_id, messages, start_ns)
    except ImportFormatError as exc:
        raise SnapshotError(str(exc)) from exc
    views = views_from_request(request, options)
    if not views:
        raise SnapshotError(f"case {case_id!r}: the messages hold no answered turn")
    view = next(iter(views.values()))
    return view


def read_candidates(text: str, source: str, options: NormalizeOptions | None = None) -> dict[str, SessionView]:
    """A candidate file's sessions by case id: JSON lines of cases, of messages, or of OTLP/JSON requests."""
    out: dict[str, SessionView] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise SnapshotError(f"{where}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise SnapshotError(f"{where}: expected a JSON object")
        if "resourceSpans" in item or "resource_spans" in item:
            try:
                found = views_from_spans(spans_of_body(line.encode(), "json", options))
            except Exception as exc:  # noqa: BLE001 - any decode failure names the line
                raise SnapshotError(f"{where}: {exc}") from None
            for found_id, found_view in found.items():
                _add(out, found_id, found_view, where)
            continue
        if "pins" in item and "dataset" in item and "case_id" not in item:
            continue  # a dataset export's header: its cases are candidates too (the recorded sessions)
        case_id = item.get("case_id")
        if not isinstance(case_id, str) or not case_id:
            raise SnapshotError(f"{where}: case_id: required, the dataset case this output answers")
        try:
            if "spans" in item:
                view = view_of(item, str(item.get("session_id") or case_id))
            elif "messages" in item:
                if not isinstance(item["messages"], list):
                    raise SnapshotError("messages: expected a list of OpenAI chat messages")
                view = view_from_messages(case_id, item["messages"], options)
            else:
                raise SnapshotError("expected spans, messages, or an OTLP/JSON request (resourceSpans)")
        except SnapshotError as exc:
            raise SnapshotError(f"{where}: {exc}") from None
        _add(out, case_id, view, where)
    return out


def _add(out: dict[str, SessionView], case_id: str, view: SessionView, where: str) -> None:
    if case_id in out:
        raise SnapshotError(f"{where}: case {case_id!r} has a candidate output already")
    out[case_id] = view
