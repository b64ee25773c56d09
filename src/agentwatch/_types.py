"""Frozen records shared by every stage.

``RawSpan`` and ``RawLogRecord`` are what the OTLP decoder hands on: the wire
message turned into plain Python values, nothing interpreted yet.
``NormalizedSpan`` is what the normalizer makes of a ``RawSpan`` (the model of
the ingest conventions, one field per concept whatever the instrumentation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Normalized span kinds, in the order of the conventions' table.
SPAN_KINDS = (
    "llm",
    "embedding",
    "retrieval",
    "tool",
    "agent",
    "guardrail",
    "chain",
    "evaluator",
    "other",
)

#: Kinds whose token usage counts toward a session's totals.
USAGE_KINDS = frozenset({"llm", "embedding"})


@dataclass(frozen=True, slots=True)
class Resource:
    """An OTLP resource: its attributes, shared by every span it sent."""

    attributes: dict[str, Any]
    #: Stable content hash of ``attributes`` (16 hex chars), the storage key.
    key: str

    @property
    def service_name(self) -> str | None:
        value = self.attributes.get("service.name")
        return str(value) if value is not None else None

    @property
    def service_version(self) -> str | None:
        value = self.attributes.get("service.version")
        return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class RawSpan:
    """One OTLP span as plain values. Ids are lower-case hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    #: OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    span_kind: int
    start_ns: int
    end_ns: int
    #: OTLP StatusCode: 0 unset, 1 ok, 2 error.
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    #: ``[{"name": str, "time_ns": int, "attributes": {...}}]``
    events: list[dict[str, Any]]
    #: ``[{"trace_id": str, "span_id": str, "attributes": {...}}]``
    links: list[dict[str, Any]]
    resource: Resource
    scope_name: str
    scope_version: str


@dataclass(frozen=True, slots=True)
class RawLogRecord:
    """One OTLP log record that names a span (GenAI events travel this way)."""

    trace_id: str
    span_id: str
    event_name: str
    #: ``time_unix_nano``, else ``observed_time_unix_nano`` (0 when neither is set).
    time_ns: int
    severity_number: int
    attributes: dict[str, Any]
    #: The body as a plain value (kvlist -> dict, array -> list), or None.
    body: Any
    resource: Resource
    scope_name: str


@dataclass(slots=True)
class NormalizedSpan:
    """The normalized span of the ingest conventions (section 1)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    name: str
    convention: list[str] = field(default_factory=list)
    kind: str = "other"
    operation: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    turn_id: str | None = None
    turn_index: int | None = None
    agent_name: str | None = None
    agent_id: str | None = None
    agent_version: str | None = None
    service: str | None = None
    intent: str | None = None
    provider: str | None = None
    model_requested: str | None = None
    model_responded: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_cache_read: int | None = None
    tokens_cache_write: int | None = None
    tokens_reasoning: int | None = None
    cost_usd: float | None = None
    cost_source: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    tool_args: Any = None
    tool_result: Any = None
    success: bool = True
    error_type: str | None = None
    error_message: str | None = None
    input_text: str | None = None
    output_text: str | None = None
    input_messages: list[dict[str, Any]] = field(default_factory=list)
    output_messages: list[dict[str, Any]] = field(default_factory=list)
    system_instructions: list[dict[str, Any]] = field(default_factory=list)
    retrieved_documents: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    raw_attributes: dict[str, Any] = field(default_factory=dict)
