"""What both OTLP transports share: the in-flight budget, normalization and
the hand-off to the group-commit writer.

The handler decodes, normalizes the columns queries need, then awaits the
commit of its batch; only then does the transport answer success. Past the
in-flight budget a request is refused at once with a retryable status, so
memory stays bounded however fast clients send.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any

from agentwatch._types import RawLogRecord, RawSpan, Resource
from agentwatch.ingest.decode import MAX_ERRORS, DecodedLogs, DecodedTraces
from agentwatch.normalize import NormalizeOptions, normalize
from agentwatch.store.statements import clean_json as _clean_json
from agentwatch.store.writer import WriteBatch, Writer, WriterUnavailable

#: Bodies above this are decoded and normalized off the event loop.
OFFLOAD_BYTES = 256 * 1024
#: Longest wait for the writer's commit before answering "unavailable" (retryable).
COMMIT_TIMEOUT_S = 60.0
#: Span times are stored as signed 64-bit integers; OTLP's fixed64 can hold more.
MAX_TIME_NS = 2**63 - 1
#: Known values of OTLP's open enums: SpanKind, StatusCode, SeverityNumber. Others are
#: legal on the wire (proto3 enums are open) and are stored as 0, the unspecified value.
_SPAN_KINDS = range(6)
_STATUS_CODES = range(3)
_SEVERITIES = range(25)


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

    def grow(self, held: int, extra: int) -> None:
        """Add ``extra`` bytes to a request already holding ``held``.

        Used once a body turns out bigger than its Content-Length said
        (gzip, chunked transfer). Like :meth:`acquire`, a request alone in
        flight always passes.
        """
        with self._lock:
            others = self.in_flight - held
            if others > 0 and self.in_flight + extra > self.max_bytes:
                self.rejected += 1
                raise Overloaded(f"in-flight budget of {self.max_bytes} bytes is full; retry later")
            self.in_flight += extra

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


_isfinite = math.isfinite


def _dirty(value: Any) -> bool:
    """Whether ``value`` holds a NUL character or a non-finite float anywhere."""
    kind = type(value)
    if kind is str:
        return "\x00" in value
    if kind is float:
        return not _isfinite(value)
    if kind is dict:
        return any("\x00" in k or _dirty(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return any(_dirty(v) for v in value)
    return False


def _clean_column(value: Any) -> Any:
    """A scalar column value made storable: NUL replaced, a non-finite number dropped."""
    kind = type(value)
    if kind is str:
        return value.replace("\x00", "\ufffd")
    if kind is float and not _isfinite(value):
        return None
    return value


#: Text columns of a span row; the JSON columns are cleaned when the writer serializes them.
_TEXT_COLUMNS = ("_session", "name", "status_message", "error_type", "service", "agent_name", "agent_version",
                 "intent", "user_id", "provider", "model", "tool_name", "scope_name", "scope_version")
#: Above this a token count is not a real one, and a session's sum could overflow 64 bits.
MAX_TOKENS = 2**40


def _clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row made storable on every engine (PostgreSQL refused all of these).

    Only the scalar columns are checked here, cheaply, on every span; NUL and
    non-finite numbers inside attributes, events and links are handled by the
    writer's JSON serializer (:func:`agentwatch.store.statements.dumps`).
    """
    if row["span_kind"] not in _SPAN_KINDS:
        row["span_kind"] = 0
    if row["status_code"] not in _STATUS_CODES:
        row["status_code"] = 0
    for key in _TEXT_COLUMNS:
        value = row[key]
        if value is not None and "\x00" in value:
            row[key] = value.replace("\x00", "\ufffd")
    cost = row["cost_usd"]
    if cost is not None and not _isfinite(cost):
        row["cost_usd"] = None
    for key in ("tokens_in", "tokens_out"):
        tokens = row[key]
        if tokens is not None and not 0 <= tokens < MAX_TOKENS:
            row[key] = None
    return row


def _clean_resource(resource: Resource) -> Resource:
    # The key stays the hash of what was sent, so identical resources still share a row.
    if not _dirty(resource.attributes):
        return resource
    return Resource(attributes=_clean_json(resource.attributes), key=resource.key)


def _clean_record(record: RawLogRecord) -> RawLogRecord:
    if record.severity_number not in _SEVERITIES:
        record = dataclasses.replace(record, severity_number=0)
    if not (_dirty(record.attributes) or _dirty(record.body) or _dirty(record.event_name)
            or _dirty(record.scope_name) or _dirty(record.resource.attributes)):
        return record
    return dataclasses.replace(
        record,
        event_name=_clean_column(record.event_name),
        attributes=_clean_json(record.attributes),
        body=_clean_json(record.body),
        scope_name=_clean_column(record.scope_name),
        resource=_clean_resource(record.resource),
    )


def _time_problem(raw: RawSpan) -> str | None:
    if raw.start_ns > MAX_TIME_NS or raw.end_ns > MAX_TIME_NS:
        return (f"span {raw.span_id} of trace {raw.trace_id}: start_time_unix_nano and end_time_unix_nano "
                f"must be below 2^63 (year 2262)")
    return None


async def committed(future: concurrent.futures.Future[Any]) -> Any:
    """Await the writer's future without ever cancelling it.

    A handler can be cancelled while it waits (a gRPC deadline passes, the
    client goes away, the server shuts down). Cancelling the writer's
    future then would leave the writer resolving a cancelled future, so the
    wait is shielded: the batch still commits, only the answer is lost.
    A writer that does not commit within ``COMMIT_TIMEOUT_S`` is reported
    unavailable (a retryable answer) instead of holding the client forever.
    """
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), COMMIT_TIMEOUT_S)
    except TimeoutError:
        raise WriterUnavailable(f"the commit did not finish within {COMMIT_TIMEOUT_S:.0f}s") from None


class Receiver:
    """Turns decoded OTLP into committed rows."""

    def __init__(self, writer: Writer, options: NormalizeOptions, budget: Budget) -> None:
        self.writer = writer
        self.options = options
        self.budget = budget
        self.spans_accepted = 0
        self.spans_rejected = 0

    def _traces_batch(self, project_id: int, decoded: DecodedTraces) -> tuple[WriteBatch, list[str]]:
        rows = []
        resources: dict[str, Resource] = {}
        problems: list[str] = []
        for raw in decoded.spans:
            problem = _time_problem(raw)
            if problem is not None:
                problems.append(problem)
                continue
            rows.append(_clean_row(span_row(raw, self.options)))
            if raw.resource.key not in resources:
                resources[raw.resource.key] = _clean_resource(raw.resource)
        return WriteBatch(project_id=project_id, spans=rows, resources=list(resources.values())), problems

    async def traces(self, project_id: int, decoded: DecodedTraces, *, nbytes: int) -> Outcome:
        rejected = decoded.rejected_spans
        errors = list(decoded.errors)
        accepted = 0
        if decoded.spans:
            if nbytes > OFFLOAD_BYTES:
                batch, problems = await asyncio.to_thread(self._traces_batch, project_id, decoded)
            else:
                batch, problems = self._traces_batch(project_id, decoded)
            rejected += len(problems)
            errors.extend(problems[: max(0, MAX_ERRORS - len(errors))])
            accepted = len(batch.spans)
            if batch.spans:
                await committed(self.writer.submit(batch))
        self.spans_accepted += accepted
        self.spans_rejected += rejected
        return Outcome(accepted, rejected, "; ".join(errors))

    async def logs(self, project_id: int, decoded: DecodedLogs, *, nbytes: int) -> Outcome:
        rejected = decoded.rejected_log_records
        errors = list(decoded.errors)
        records = []
        for record in decoded.records:
            if record.time_ns > MAX_TIME_NS:
                rejected += 1
                if len(errors) < MAX_ERRORS:
                    errors.append(f"log record of span {record.span_id}: time_unix_nano must be below 2^63")
                continue
            records.append(_clean_record(record))
        if records:
            resources = list({r.resource.key: r.resource for r in records}.values())
            batch = WriteBatch(project_id=project_id, logs=records, resources=resources)
            await committed(self.writer.submit(batch))
        return Outcome(len(records), rejected, "; ".join(errors))
