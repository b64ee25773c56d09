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
import logging
import math
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from agentwatch._types import RawLogRecord, RawSpan, Resource
from agentwatch.ingest.decode import MAX_ERRORS, DecodedLogs, DecodedTraces, decode_traces
from agentwatch.normalize import NormalizeOptions, normalize
from agentwatch.store.statements import clean_json as _clean_json
from agentwatch.store.statements import dumps
from agentwatch.store.writer import WriteBatch, Writer, WriterUnavailable

logger = logging.getLogger(__name__)

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
    """The stored columns of one span (session assignment is the writer's).

    Attributes, events and links are JSON text already, storable on every engine.
    """
    n = normalize(raw, options, content=False)
    redaction = options.redaction
    if redaction.active:
        # Redaction happens here, before storage, on the serialized JSON text: one pass per text.
        json_text = redaction.json_text
        attributes = json_text(dumps(raw.attributes))
        events = json_text(dumps(raw.events)) if raw.events else None
        links = json_text(dumps(raw.links)) if raw.links else None
    else:
        attributes = dumps(raw.attributes)
        events = dumps(raw.events) if raw.events else None
        links = dumps(raw.links) if raw.links else None
    row = {
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
        "attributes": attributes,
        "events": events,
        "links": links,
    }
    if redaction.active:
        redaction.columns(row, _REDACTED_COLUMNS)
    return row


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
#: Text columns redacted at ingest: every one (one pre-check covers them all; an id that is an
#: e-mail becomes its deterministic mark, so sessions and users still group and can be erased).
_REDACTED_COLUMNS = _TEXT_COLUMNS
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


def _redact_resource(resource: Resource, options: NormalizeOptions) -> Resource:
    redaction = options.redaction
    if not redaction.active:
        return resource
    attributes = redaction.value(resource.attributes)
    if attributes is resource.attributes:
        return resource
    # The key stays the hash of what was sent, so identical resources still share a row.
    return Resource(attributes=attributes, key=resource.key)


def _redact_record(record: RawLogRecord, options: NormalizeOptions) -> RawLogRecord:
    """A log record's attributes, body and resource redacted (not hot: logs are few)."""
    redaction = options.redaction
    if not redaction.active:
        return record
    attributes = redaction.value(record.attributes)
    body = redaction.value(record.body)
    event_name = redaction.text(record.event_name) if record.event_name else record.event_name
    scope_name = redaction.text(record.scope_name) if record.scope_name else record.scope_name
    resource = _redact_resource(record.resource, options)
    if (attributes is record.attributes and body is record.body and resource is record.resource
            and event_name == record.event_name and scope_name == record.scope_name):
        return record
    return dataclasses.replace(record, attributes=attributes, body=body, resource=resource,
                               event_name=event_name, scope_name=scope_name)


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


@dataclass(frozen=True)
class PreparedTraces:
    """Span rows ready for the writer, and what was refused on the way."""

    rows: list[dict[str, Any]]
    resources: list[Resource]
    rejected: int
    errors: list[str]


def prepare_spans(decoded: DecodedTraces, options: NormalizeOptions) -> PreparedTraces:
    """Normalize decoded spans into storable rows."""
    rows = []
    resources: dict[str, Resource] = {}
    errors = list(decoded.errors)
    rejected = decoded.rejected_spans
    for raw in decoded.spans:
        problem = _time_problem(raw)
        if problem is not None:
            rejected += 1
            if len(errors) < MAX_ERRORS:
                errors.append(problem)
            continue
        rows.append(_clean_row(span_row(raw, options)))
        if raw.resource.key not in resources:
            resources[raw.resource.key] = _redact_resource(_clean_resource(raw.resource), options)
    return PreparedTraces(rows, list(resources.values()), rejected, errors)


_worker_options: NormalizeOptions | None = None


def _init_worker(options: NormalizeOptions, parent_pid: int) -> None:
    global _worker_options
    _worker_options = options
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """A server killed outright (SIGKILL) runs no shutdown: its workers leave by themselves."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def _prepare_in_worker(body: bytes, encoding: str) -> PreparedTraces:
    assert _worker_options is not None, "decode worker started without its options"
    return prepare_spans(decode_traces(body, encoding), _worker_options)


def _ready() -> bool:
    return True


class DecodePool:
    """Worker processes that decode and normalize OTLP trace bodies.

    Python runs one thread at a time per process; decoding and normalizing
    in other processes leaves the server's own core to HTTP and the writer.
    """

    def __init__(self, workers: int, options: NormalizeOptions) -> None:
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(options, os.getpid())
        )
        # Start the processes now, not on the first request.
        for _ in range(workers):
            self._pool.submit(_ready)

    async def prepare(self, body: bytes, encoding: str) -> PreparedTraces:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _prepare_in_worker, body, encoding)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class Receiver:
    """Turns decoded OTLP into committed rows."""

    def __init__(self, writer: Writer, options: NormalizeOptions, budget: Budget,
                 pool: DecodePool | None = None) -> None:
        self.writer = writer
        self.options = options
        self.budget = budget
        self.pool = pool
        self.spans_accepted = 0
        self.spans_rejected = 0

    async def traces_body(self, project_id: int, body: bytes, encoding: str) -> Outcome:
        """Decode, normalize and commit one OTLP/HTTP trace body."""
        if self.pool is not None and body:
            try:
                prepared = await self.pool.prepare(body, encoding)
            except concurrent.futures.process.BrokenProcessPool:
                logger.error("a decode worker died; decoding in the server process from now on")
                self.pool = None
                return await self.traces_body(project_id, body, encoding)
        elif len(body) > OFFLOAD_BYTES:
            prepared = await asyncio.to_thread(lambda: prepare_spans(decode_traces(body, encoding), self.options))
        else:
            prepared = prepare_spans(decode_traces(body, encoding), self.options)
        return await self._commit(project_id, prepared)

    async def traces(self, project_id: int, decoded: DecodedTraces, *, nbytes: int) -> Outcome:
        """Normalize and commit spans decoded already (OTLP/gRPC hands over parsed messages)."""
        if nbytes > OFFLOAD_BYTES:
            prepared = await asyncio.to_thread(prepare_spans, decoded, self.options)
        else:
            prepared = prepare_spans(decoded, self.options)
        return await self._commit(project_id, prepared)

    async def _commit(self, project_id: int, prepared: PreparedTraces) -> Outcome:
        if prepared.rows:
            batch = WriteBatch(project_id=project_id, spans=prepared.rows, resources=prepared.resources)
            await committed(self.writer.submit(batch))
        self.spans_accepted += len(prepared.rows)
        self.spans_rejected += prepared.rejected
        return Outcome(len(prepared.rows), prepared.rejected, "; ".join(prepared.errors))

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
            records.append(_redact_record(_clean_record(record), self.options))
        if records:
            resources = list({r.resource.key: r.resource for r in records}.values())
            batch = WriteBatch(project_id=project_id, logs=records, resources=resources)
            await committed(self.writer.submit(batch))
        return Outcome(len(records), rejected, "; ".join(errors))
