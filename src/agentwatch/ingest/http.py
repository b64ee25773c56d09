"""OTLP/HTTP: ``POST /v1/traces`` and ``POST /v1/logs``.

Answers as the OTLP specification asks: 200 with an empty or partial-success
response in the request's encoding; 400 with a ``google.rpc.Status`` for a
body that does not decode; 413 past the size cap (counted after gzip
decompression, every gzip member); 415 for another content type or
encoding; 429 with ``Retry-After`` when the in-flight budget is full; 503
with ``Retry-After`` when the store cannot be written just now.

A request reserves its Content-Length from the in-flight budget before its
body is read, and grows the reservation to what the body turns out to be
(chunked, or inflated), so compressed requests cannot get round the budget.
A refusal answered before the body is read (413 on Content-Length, 415,
429) still reaches the client: on a kept-alive connection uvicorn reads and
discards the rest of the body, and the connection goes on serving.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any, Callable

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from agentwatch.errors import AgentwatchError, DecodeError
from agentwatch.ingest.decode import decode_logs
from agentwatch.ingest.receiver import OFFLOAD_BYTES, Overloaded, Receiver
from agentwatch.store.writer import WriteRejected, WriterUnavailable

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_CONTENT_TYPES = {"application/x-protobuf": "protobuf", "application/protobuf": "protobuf", "application/json": "json"}
_GRPC_CODE = {400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 413: code_pb2.INVALID_ARGUMENT,
              415: code_pb2.INVALID_ARGUMENT, 429: code_pb2.RESOURCE_EXHAUSTED, 500: code_pb2.INTERNAL,
              503: code_pb2.UNAVAILABLE}


class _Refusal(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _status_response(status: int, message: str, encoding: str, retry_after: int | None = None) -> Response:
    body = status_pb2.Status(code=_GRPC_CODE.get(status, code_pb2.UNKNOWN), message=message)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if encoding == "protobuf":
        return Response(body.SerializeToString(), status_code=status, media_type=PROTOBUF, headers=headers)
    return Response(json_format.MessageToJson(body, indent=None), status_code=status, media_type=JSON, headers=headers)


#: Compressed bodies above this are inflated off the event loop.
_INFLATE_OFFLOAD_BYTES = 16 * 1024
_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def _declared_length(request: Request, cap: int) -> int | None:
    """The Content-Length, refused with 413 past ``cap`` before anything is read."""
    length = request.headers.get("content-length")
    if length is None:
        return None
    try:
        declared = int(length)
    except ValueError:
        raise _Refusal(400, f"Content-Length {length!r} is not a number") from None
    if declared > cap:
        raise _Refusal(413, f"request body of {declared} bytes is over the {cap}-byte limit")
    return declared


def _content_encoding(request: Request) -> str | None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in _ENCODINGS:
        raise _Refusal(415, f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    return _ENCODINGS[encoding]


async def _read_body(request: Request, cap: int) -> bytes:
    """The body as sent (still compressed), refused with 413 once past ``cap``."""
    chunks = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise _Refusal(413, f"request body is over the {cap}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _inflate(body: bytes, encoding: str, cap: int) -> bytes:
    """Decompress a gzip (every member, RFC 1952) or deflate body; 413 once past ``cap``."""
    out: list[bytes] = []
    size = 0
    data = body
    while True:
        inflater = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)
        try:
            chunk = inflater.decompress(data, cap + 1 - size)
        except zlib.error as exc:
            raise _Refusal(400, f"the {encoding} body does not decompress: {exc}") from None
        size += len(chunk)
        out.append(chunk)
        if size > cap or inflater.unconsumed_tail:
            raise _Refusal(413, f"decompressed request body is over the {cap}-byte limit")
        if not inflater.eof:
            raise _Refusal(400, f"the {encoding} body is truncated")
        data = inflater.unused_data
        if not data.strip(b"\x00"):
            return b"".join(out)
        if encoding != "gzip":
            raise _Refusal(400, f"the {encoding} body has {len(data)} bytes after its end")


def _encoding_of(request: Request) -> str | None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return _CONTENT_TYPES.get(media)


def make_otlp_endpoint(
    receiver: Receiver,
    project_for: Callable[[Any], int],
    max_body_bytes: int,
    signal: str,
) -> Callable[[Request], Any]:
    """The handler of ``/v1/traces`` (signal ``traces``) or ``/v1/logs`` (``logs``)."""
    async def endpoint(request: Request) -> Response:
        encoding = _encoding_of(request)
        if encoding is None:
            got = request.headers.get("content-type", "none")
            return _status_response(415, f"Content-Type {got!r} is not supported: send {PROTOBUF} or {JSON}", "json")
        try:
            project_id = project_for(request.headers)
        except AgentwatchError as exc:
            return _status_response(exc.status, exc.message, encoding)
        try:
            declared = _declared_length(request, max_body_bytes)
            compression = _content_encoding(request)
        except _Refusal as exc:
            return _status_response(exc.status, exc.message, encoding)
        budget = receiver.budget
        # Reserve what the client announced; grow it once the body (inflated) is known.
        held = max(declared or 0, 1)
        try:
            budget.acquire(held)
        except Overloaded as exc:
            return _status_response(429, str(exc), encoding, retry_after=exc.retry_after)
        try:
            body = await _read_body(request, max_body_bytes)
            if compression is not None and body:
                if len(body) > held:
                    budget.grow(held, len(body) - held)
                    held = len(body)
                if len(body) > _INFLATE_OFFLOAD_BYTES:
                    body = await asyncio.to_thread(_inflate, body, compression, max_body_bytes)
                else:
                    body = _inflate(body, compression, max_body_bytes)
            if len(body) > held:
                budget.grow(held, len(body) - held)
                held = len(body)
            if signal == "traces":
                outcome = await receiver.traces_body(project_id, body, encoding)
            else:
                if len(body) > OFFLOAD_BYTES:
                    decoded = await asyncio.to_thread(decode_logs, body, encoding)
                else:
                    decoded = decode_logs(body, encoding)
                outcome = await receiver.logs(project_id, decoded, nbytes=len(body))
        except _Refusal as exc:
            return _status_response(exc.status, exc.message, encoding, exc.retry_after)
        except Overloaded as exc:
            return _status_response(429, str(exc), encoding, retry_after=exc.retry_after)
        except DecodeError as exc:
            return _status_response(400, exc.message, encoding)
        except WriterUnavailable as exc:
            return _status_response(503, f"the store is unavailable: {exc}", encoding, retry_after=2)
        except WriteRejected as exc:
            return _status_response(400, str(exc), encoding)
        except ClientDisconnect:
            # Nobody is left to answer; the status is for the log of the ASGI server only.
            return _status_response(400, "the client went away before sending the whole body", encoding)
        except Exception:  # noqa: BLE001 - OTLP clients expect a Status body even for our bugs
            logger.exception("OTLP %s request failed", signal)
            return _status_response(500, "internal error; the server log has the details", encoding)
        finally:
            budget.release(held)
        return _export_response(signal, outcome.rejected, outcome.message, encoding)

    return endpoint


def _export_response(signal: str, rejected: int, message: str, encoding: str) -> Response:
    if signal == "traces":
        response: Any = ExportTraceServiceResponse()
        if rejected or message:
            response.partial_success.CopyFrom(ExportTracePartialSuccess(rejected_spans=rejected, error_message=message))
    else:
        response = ExportLogsServiceResponse()
        if rejected or message:
            response.partial_success.CopyFrom(
                ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
            )
    if encoding == "protobuf":
        return Response(response.SerializeToString(), media_type=PROTOBUF)
    return Response(json_format.MessageToJson(response, indent=None), media_type=JSON)
