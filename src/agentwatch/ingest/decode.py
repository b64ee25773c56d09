"""OTLP request bodies (traces and logs) to ``RawSpan`` / ``RawLogRecord``.

Both wire encodings end in the same walk over the protobuf message: OTLP/JSON
is rewritten (hex ids to base64, the only place it deviates from the proto3
JSON mapping that ``json_format`` reads) and parsed into the same message
type. The gRPC servicer, which receives a parsed message, calls
``traces_from_message`` / ``logs_from_message`` directly.

A body that does not decode raises ``DecodeError``. A body that decodes but
contains spans with invalid ids or timestamps yields the valid spans and
counts the others, for OTLP's ``partial_success``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf import message as pb_message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentwatch._types import RawLogRecord, RawSpan, Resource
from agentwatch.errors import DecodeError
from agentwatch.normalize.attributes import any_value, attributes_to_dict

MAX_ERRORS = 5
_RESOURCE_CACHE_SIZE = 1024
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)


@dataclass(frozen=True, slots=True)
class DecodedTraces:
    """The valid spans of one export request, and what was rejected."""

    spans: list[RawSpan] = field(default_factory=list)
    rejected_spans: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DecodedLogs:
    """The log records of one export request that name a span, and what was rejected."""

    records: list[RawLogRecord] = field(default_factory=list)
    rejected_log_records: int = 0
    errors: list[str] = field(default_factory=list)


def decode_traces(body: bytes, content_type: str) -> DecodedTraces:
    """Decode an ``ExportTraceServiceRequest`` body; ``content_type`` is "protobuf" or "json"."""
    return traces_from_message(_parse(body, content_type, ExportTraceServiceRequest, _TRACE_LAYOUT))


def decode_logs(body: bytes, content_type: str) -> DecodedLogs:
    """Decode an ``ExportLogsServiceRequest`` body; ``content_type`` is "protobuf" or "json"."""
    return logs_from_message(_parse(body, content_type, ExportLogsServiceRequest, _LOGS_LAYOUT))


def _parse(body: bytes, content_type: str, message_type: Any, layout: tuple[tuple[str, str], ...]) -> Any:
    if content_type == "protobuf":
        try:
            return message_type.FromString(body)
        except pb_message.DecodeError as exc:
            raise DecodeError(f"body is not a valid {message_type.__name__} protobuf: {exc}") from exc
    if content_type == "json":
        return _json_message(body, message_type, layout)
    raise DecodeError(f"unsupported content type {content_type!r}: expected 'protobuf' or 'json'")


def traces_from_message(msg: ExportTraceServiceRequest) -> DecodedTraces:
    """Walk a parsed ``ExportTraceServiceRequest`` into raw spans, rejecting invalid ones."""
    spans: list[RawSpan] = []
    errors: list[str] = []
    rejected = 0
    append = spans.append
    for ri, resource_spans in enumerate(msg.resource_spans):
        resource = resource_of(resource_spans.resource)
        for si, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            scope_name = scope.name
            scope_version = scope.version
            for i, span in enumerate(scope_spans.spans):
                trace_id = span.trace_id
                span_id = span.span_id
                parent = span.parent_span_id
                start = span.start_time_unix_nano
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == _ZERO_TRACE_ID
                    or span_id == _ZERO_SPAN_ID
                    or (parent and len(parent) != 8)
                    or start <= 0
                ):
                    rejected += 1
                    _note(
                        errors,
                        f"span {i} of resourceSpans[{ri}].scopeSpans[{si}]: "
                        + _span_problem(trace_id, span_id, parent, start),
                    )
                    continue
                status = span.status
                append(
                    RawSpan(
                        trace_id=trace_id.hex(),
                        span_id=span_id.hex(),
                        parent_span_id=parent.hex() if parent and parent != _ZERO_SPAN_ID else None,
                        name=span.name,
                        span_kind=span.kind,
                        start_ns=start,
                        end_ns=span.end_time_unix_nano,
                        status_code=status.code,
                        status_message=status.message,
                        attributes=attributes_to_dict(span.attributes),
                        events=[
                            {
                                "name": event.name,
                                "time_ns": event.time_unix_nano,
                                "attributes": attributes_to_dict(event.attributes),
                            }
                            for event in span.events
                        ],
                        links=[
                            {
                                "trace_id": link.trace_id.hex(),
                                "span_id": link.span_id.hex(),
                                "attributes": attributes_to_dict(link.attributes),
                            }
                            for link in span.links
                        ],
                        resource=resource,
                        scope_name=scope_name,
                        scope_version=scope_version,
                    )
                )
    return DecodedTraces(spans=spans, rejected_spans=rejected, errors=errors)


def logs_from_message(msg: ExportLogsServiceRequest) -> DecodedLogs:
    """Walk a parsed ``ExportLogsServiceRequest``; keep the records that name a valid span."""
    records: list[RawLogRecord] = []
    errors: list[str] = []
    rejected = 0
    for ri, resource_logs in enumerate(msg.resource_logs):
        resource = resource_of(resource_logs.resource)
        for si, scope_logs in enumerate(resource_logs.scope_logs):
            scope_name = scope_logs.scope.name
            for i, record in enumerate(scope_logs.log_records):
                trace_id = record.trace_id
                span_id = record.span_id
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == _ZERO_TRACE_ID
                    or span_id == _ZERO_SPAN_ID
                ):
                    rejected += 1
                    _note(
                        errors,
                        f"log record {i} of resourceLogs[{ri}].scopeLogs[{si}]: "
                        + _record_problem(trace_id, span_id),
                    )
                    continue
                attributes = attributes_to_dict(record.attributes)
                event_name = record.event_name
                if not event_name:
                    legacy_name = attributes.get("event.name")
                    event_name = legacy_name if isinstance(legacy_name, str) else ""
                records.append(
                    RawLogRecord(
                        trace_id=trace_id.hex(),
                        span_id=span_id.hex(),
                        event_name=event_name,
                        time_ns=record.time_unix_nano or record.observed_time_unix_nano,
                        severity_number=record.severity_number,
                        attributes=attributes,
                        body=any_value(record.body) if record.HasField("body") else None,
                        resource=resource,
                        scope_name=scope_name,
                    )
                )
    return DecodedLogs(records=records, rejected_log_records=rejected, errors=errors)


_resource_cache: dict[bytes, Resource] = {}


def resource_of(resource_msg: Any) -> Resource:
    """The ``Resource`` of an OTLP resource message; identical resources are built once."""
    raw = resource_msg.SerializeToString(deterministic=True)
    cached = _resource_cache.get(raw)
    if cached is not None:
        return cached
    attributes = attributes_to_dict(resource_msg.attributes)
    resource = Resource(attributes=attributes, key=resource_key(attributes))
    if len(_resource_cache) >= _RESOURCE_CACHE_SIZE:
        _resource_cache.clear()
    _resource_cache[raw] = resource
    return resource


def resource_key(attributes: dict[str, Any]) -> str:
    """First 16 hex chars of the sha256 of the attributes' canonical JSON."""
    canonical = json.dumps(attributes, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _note(errors: list[str], message: str) -> None:
    if len(errors) < MAX_ERRORS and message not in errors:
        errors.append(message)


def _id_problem(label: str, value: bytes, size: int) -> str | None:
    if len(value) != size:
        return f"{label} must be {size} bytes, got {len(value)}"
    if value == bytes(size):
        return f"{label} must not be all zero"
    return None


def _span_problem(trace_id: bytes, span_id: bytes, parent: bytes, start: int) -> str:
    problems = [
        p
        for p in (
            _id_problem("trace_id", trace_id, 16),
            _id_problem("span_id", span_id, 8),
            f"parent_span_id must be empty or 8 bytes, got {len(parent)}"
            if parent and len(parent) != 8
            else None,
            "start_time_unix_nano must be > 0" if start <= 0 else None,
        )
        if p
    ]
    return "; ".join(problems)


def _record_problem(trace_id: bytes, span_id: bytes) -> str:
    problems = [
        p
        for p in (_id_problem("trace_id", trace_id, 16), _id_problem("span_id", span_id, 8))
        if p
    ]
    return "; ".join(problems) + " (only log records that name a span are accepted)"


# OTLP/JSON: where the lists are and which keys hold hex ids, outermost first.
_TRACE_LAYOUT = (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans", "spans"))
_LOGS_LAYOUT = (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records"))
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _json_message(body: bytes, message_type: Any, layout: tuple[tuple[str, str], ...]) -> Any:
    if not body.strip():
        return message_type()
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"JSON body does not parse: {exc}") from exc
    if not isinstance(document, dict):
        raise DecodeError(f"JSON body must be an object, got {type(document).__name__}")
    if _may_hold_surrogates(body) and _has_lone_surrogate(document):
        # protobuf cannot hold one: as a field name it even fails outside ParseDict's own errors.
        raise DecodeError("JSON body holds a lone UTF-16 surrogate (U+D800 to U+DFFF, unpaired): "
                          "not valid Unicode")
    _rewrite_ids(document, layout, 0, "")
    try:
        return json_format.ParseDict(document, message_type(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"JSON body is not a valid {message_type.DESCRIPTOR.name}: {exc}") from exc


#: ``\ud800``-style escapes, and surrogates encoded as UTF-8 (``json.loads`` decodes bytes with surrogatepass).
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _may_hold_surrogates(body: bytes) -> bool:
    # UTF-16 and UTF-32 bodies (json.loads detects them by NULs or a byte order mark) are always checked.
    return bool(_SURROGATE_HINT.search(body)) or body[:1] in (b"\xff", b"\xfe") or b"\x00" in body[:4]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(document: Any) -> bool:
    """Whether a key or string anywhere in the parsed document is not valid Unicode (iterative: no depth limit)."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if _SURROGATE.search(key):
                    return True
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and _SURROGATE.search(node):
            return True
    return False


def _rewrite_ids(node: dict[str, Any], layout: tuple[tuple[str, str], ...], depth: int, path: str) -> None:
    camel, snake = layout[depth]
    for key in (camel,) if camel == snake else (camel, snake):
        items = node.get(key)
        if items is None:
            continue
        where = f"{path}.{key}" if path else key
        if not isinstance(items, list):
            raise DecodeError(f"JSON body: {where} must be a list, got {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise DecodeError(f"JSON body: {where}[{i}] must be an object, got {type(item).__name__}")
            if depth + 1 < len(layout):
                _rewrite_ids(item, layout, depth + 1, f"{where}[{i}]")
            else:
                _rewrite_item_ids(item, f"{where}[{i}]")


def _rewrite_item_ids(item: dict[str, Any], where: str) -> None:
    _hex_to_base64(item)
    links = item.get("links")
    if links is None:
        return
    if not isinstance(links, list):
        raise DecodeError(f"JSON body: {where}.links must be a list, got {type(links).__name__}")
    for j, link in enumerate(links):
        if not isinstance(link, dict):
            raise DecodeError(f"JSON body: {where}.links[{j}] must be an object, got {type(link).__name__}")
        _hex_to_base64(link)


def _hex_to_base64(item: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = item.get(key)
        if value is None:
            continue
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            raw = b""
        item[key] = base64.b64encode(raw).decode("ascii")
