"""Send generated sessions through the OpenTelemetry SDK's own OTLP/HTTP exporter.

:func:`send` posts a session's prepared ``ExportTraceServiceRequest`` as it
is; this module instead rebuilds every span as the SDK's ``ReadableSpan``
(same ids, times, attributes, events, status, resource and instrumentation
scope) and hands them to ``OTLPSpanExporter``, the exporter a real agent
instrumented with the SDK uses. The demo's live traffic goes this way, so the
server receives what the SDK encodes, not only what the generator encodes; a
test checks both paths normalize into the same sessions::

    from agentwatch.traffic import Generator
    from agentwatch.traffic.otel import SdkSender

    sender = SdkSender("http://127.0.0.1:4318")
    for session in Generator(seed=1, start_ns=now_ns).sessions(count=10):
        sender.send(session)
    sender.shutdown()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from agentwatch.traffic.sender import SendError, SessionLike

__all__ = ["SdkSender", "readable_spans"]

_KINDS = {
    ProtoSpan.SPAN_KIND_INTERNAL: SpanKind.INTERNAL, ProtoSpan.SPAN_KIND_SERVER: SpanKind.SERVER,
    ProtoSpan.SPAN_KIND_CLIENT: SpanKind.CLIENT, ProtoSpan.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    ProtoSpan.SPAN_KIND_CONSUMER: SpanKind.CONSUMER, ProtoSpan.SPAN_KIND_UNSPECIFIED: SpanKind.INTERNAL,
}
_STATUS = {
    ProtoStatus.STATUS_CODE_UNSET: StatusCode.UNSET, ProtoStatus.STATUS_CODE_OK: StatusCode.OK,
    ProtoStatus.STATUS_CODE_ERROR: StatusCode.ERROR,
}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if which is None:
        return None
    if which == "kvlist_value":
        raise ValueError("the SDK takes no map-valued attributes")
    return getattr(value, which)


def _attributes(items: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def readable_spans(session: SessionLike) -> list[ReadableSpan]:
    """The session's spans as the SDK's ``ReadableSpan``, ready for any SDK exporter."""
    spans: list[ReadableSpan] = []
    for resource_spans in session.request.resource_spans:
        resource = Resource(_attributes(resource_spans.resource.attributes), resource_spans.schema_url)
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None,
                                         scope_spans.schema_url or None)
            for span in scope_spans.spans:
                trace_id = int.from_bytes(span.trace_id, "big")
                context = SpanContext(trace_id, int.from_bytes(span.span_id, "big"), is_remote=False,
                                      trace_flags=TraceFlags(TraceFlags.SAMPLED))
                parent = (SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"), is_remote=False,
                                      trace_flags=TraceFlags(TraceFlags.SAMPLED))
                          if span.parent_span_id else None)
                status_code = _STATUS[span.status.code]
                spans.append(ReadableSpan(
                    name=span.name, context=context, parent=parent, resource=resource,
                    attributes=_attributes(span.attributes),
                    events=[Event(e.name, _attributes(e.attributes), e.time_unix_nano) for e in span.events],
                    kind=_KINDS[span.kind],
                    status=Status(status_code, span.status.message or None if status_code is StatusCode.ERROR
                                  else None),
                    start_time=span.start_time_unix_nano, end_time=span.end_time_unix_nano,
                    instrumentation_scope=scope))
    return spans


class SdkSender:
    """One ``OTLPSpanExporter`` to ``{url}/v1/traces``; ``send`` exports one session's spans."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        self.exporter = OTLPSpanExporter(endpoint=url.rstrip("/") + "/v1/traces", headers=headers, timeout=timeout)
        self.sessions = 0

    def send(self, session: SessionLike) -> None:
        """Export the session; :class:`SendError` when the exporter gave up (it retries what OTLP allows)."""
        if self.exporter.export(readable_spans(session)) is not SpanExportResult.SUCCESS:
            raise SendError("the OpenTelemetry exporter could not deliver a session (see its log)")
        self.sessions += 1

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]
