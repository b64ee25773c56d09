"""What both OTLP transports share: the in-flight budget, normalization and
the hand-off to the group-commit writer.

The handler decodes, normalizes the columns queries need, then awaits the
commit of its batch; only then does the transport answer success. Past the
in-flight budget a request is refused at once with a retryable status, so
memory stays bounded however fast clients send.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from agentwatch._types import RawSpan
from agentwatch.ingest.decode import DecodedLogs, DecodedTraces
from agentwatch.normalize import NormalizeOptions, normalize
from agentwatch.store.writer import WriteBatch, Writer

#: Bodies above this are decoded and normalized off the event loop.
OFFLOAD_BYTES = 256 * 1024


class Overloaded(Exception):
    """The in-flight budget is full; retry after ``retry_after`` seconds."""

    retry_after = 1


class Budget:
    """Bytes of requests accepted but not yet committed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def acquire(self, nbytes: int) -> None:
        with self._lock:
            # A single request larger than the budget still passes when nothing else is in flight.
            if self.in_flight and self.in_flight + nbytes > self.max_bytes:
                self.rejected += 1
                raise Overloaded(f"in-flight budget of {self.max_bytes} bytes is full; retry later")
            self.in_flight += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.in_flight -= nbytes


@dataclass(frozen=True)
class Outcome:
    """What a transport reports back: accepted and rejected items and a message."""

    accepted: int
    rejected: int
    message: str


def span_row(raw: RawSpan, options: NormalizeOptions) -> dict[str, Any]:
    """The stored columns of one span (session assignment is the writer's)."""
    n = normalize(raw, options, content=False)
    return {
        "trace_id": raw.trace_id,
        "span_id": raw.span_id,
        "parent_span_id": raw.parent_span_id,
        "_session": n.session_id,
        "name": raw.name,
        "kind": n.kind,
        "span_kind": raw.span_kind,
        "start_ns": raw.start_ns,
        "end_ns": raw.end_ns,
        "status_code": raw.status_code,
        "status_message": raw.status_message or None,
        "success": n.success,
        "error_type": n.error_type,
        "service": n.service,
        "agent_name": n.agent_name,
        "agent_version": n.agent_version,
        "intent": n.intent,
        "user_id": n.user_id,
        "provider": n.provider,
        "model": n.model_responded or n.model_requested,
        "tool_name": n.tool_name,
        "tokens_in": n.tokens_in,
        "tokens_out": n.tokens_out,
        "cost_usd": n.cost_usd,
        "scope_name": raw.scope_name or None,
        "scope_version": raw.scope_version or None,
        "resource_key": raw.resource.key,
        "attributes": raw.attributes,
        "events": raw.events or None,
        "links": raw.links or None,
    }


class Receiver:
    """Turns decoded OTLP into committed rows."""

    def __init__(self, writer: Writer, options: NormalizeOptions, budget: Budget) -> None:
        self.writer = writer
        self.options = options
        self.budget = budget
        self.spans_accepted = 0
        self.spans_rejected = 0

    def _traces_batch(self, project_id: int, decoded: DecodedTraces) -> WriteBatch:
        rows = [span_row(raw, self.options) for raw in decoded.spans]
        resources = list({raw.resource.key: raw.resource for raw in decoded.spans}.values())
        return WriteBatch(project_id=project_id, spans=rows, resources=resources)

    async def traces(self, project_id: int, decoded: DecodedTraces, *, nbytes: int) -> Outcome:
        if decoded.spans:
            if nbytes > OFFLOAD_BYTES:
                batch = await asyncio.to_thread(self._traces_batch, project_id, decoded)
            else:
                batch = self._traces_batch(project_id, decoded)
            await asyncio.wrap_future(self.writer.submit(batch))
        self.spans_accepted += len(decoded.spans)
        self.spans_rejected += decoded.rejected_spans
        return Outcome(len(decoded.spans), decoded.rejected_spans, "; ".join(decoded.errors))

    async def logs(self, project_id: int, decoded: DecodedLogs, *, nbytes: int) -> Outcome:
        if decoded.records:
            resources = list({r.resource.key: r.resource for r in decoded.records}.values())
            batch = WriteBatch(project_id=project_id, logs=list(decoded.records), resources=resources)
            await asyncio.wrap_future(self.writer.submit(batch))
        return Outcome(len(decoded.records), decoded.rejected_log_records, "; ".join(decoded.errors))
