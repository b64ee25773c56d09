"""OTLP trace requests from Python values: attributes, ids, spans, resources and export requests.

The synthetic traffic (``agentwatch.traffic``) and the factories of the tests
and benchmarks (``agentwatch.testing``) build what they send with these::

    from agentwatch.otlp import make_span, traces_request

    span = make_span("ab12", "01", name="chat gpt-4o-mini", attributes={"gen_ai.operation.name": "chat"})
    body = traces_request([span]).SerializeToString()   # POST to /v1/traces

:class:`TraceBuilder` collects the spans of one trace under random ids;
:func:`export_request` puts spans under one resource and instrumentation
scope, :func:`sdk_resource` is the resource the OpenTelemetry Python SDK
reports.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

#: The instrumentation scope the OpenTelemetry GenAI instrumentation reports (util-genai, as in the
#: captures): the scope of :func:`export_request` unless told.
SCOPE = ("opentelemetry.util.genai.handler", "1.1b0")
#: The OpenTelemetry Python SDK version :func:`sdk_resource` reports.
SDK_VERSION = "1.45.2"


def kv(key: str, value: Any) -> KeyValue:
    """An OTLP attribute from a Python value."""
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
        return out
    return AnyValue(string_value=str(value))


def new_trace_id(rng: random.Random) -> bytes:
    return rng.getrandbits(128).to_bytes(16, "big") or b"\x01" * 16


def new_span_id(rng: random.Random) -> bytes:
    return (rng.getrandbits(64) | 1).to_bytes(8, "big")


def make_span(
    trace_id: str,
    span_id: str,
    *,
    parent: str | None = None,
    name: str = "span",
    attributes: dict[str, Any] | None = None,
    start_ns: int = 1_767_225_600_000_000_000,
    duration_ms: int = 10,
    error: str | None = None,
) -> Span:
    """One protobuf span; ids are hex strings (padded to size)."""
    span = Span(trace_id=bytes.fromhex(trace_id.rjust(32, "0")), span_id=bytes.fromhex(span_id.rjust(16, "0")),
                parent_span_id=bytes.fromhex(parent.rjust(16, "0")) if parent else b"", name=name,
                start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + duration_ms * 1_000_000)
    span.attributes.extend(kv(k, v) for k, v in (attributes or {}).items())
    if error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return span


class TraceBuilder:
    """The spans of one trace, in the order a batch exporter sends them (root last)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.trace_id = new_trace_id(rng)
        self.spans: list[Span] = []

    def new_span_id(self) -> bytes:
        return new_span_id(self.rng)

    def add(self, span_id: bytes, parent: bytes | None, name: str, kind: Span.SpanKind.ValueType, start_ns: int,
            end_ns: int, attributes: dict[str, Any], *, error: str | None = None) -> Span:
        span = Span(trace_id=self.trace_id, span_id=span_id, parent_span_id=parent or b"", name=name, kind=kind,
                    start_time_unix_nano=start_ns, end_time_unix_nano=end_ns)
        span.attributes.extend(kv(k, v) for k, v in attributes.items())
        if error is not None:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
        self.spans.append(span)
        return span


def traces_request(spans: list[Span], *, service: str = "support-agent",
                   resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    """An export request holding ``spans`` under one resource and scope."""
    return export_request({"service.name": service, **(resource or {})}, spans, ("agentwatch.testing", ""))


def export_request(resource: dict[str, Any], spans: Sequence[Span],
                   scope: tuple[str, str] = SCOPE) -> ExportTraceServiceRequest:
    """One request: ``spans`` under one resource and instrumentation scope."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(kv(k, v) for k, v in resource.items())
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = scope
    scope_spans.spans.extend(spans)
    return request


def sdk_resource(service_name: str, service_version: str, instance_id: str,
                 environment: str | None = None) -> dict[str, Any]:
    """The resource attributes the OpenTelemetry Python SDK reports."""
    resource: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": SDK_VERSION,
        "service.instance.id": instance_id,
        "service.name": service_name,
        "service.version": service_version,
    }
    if environment:
        resource["deployment.environment.name"] = environment
    return resource
