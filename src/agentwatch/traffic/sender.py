"""Send OTLP sessions to a server over OTLP/HTTP, as fast as it takes them or in real time.

One ``httpx.Client`` (keep-alive) shared by ``concurrency`` worker threads
POSTs each request as ``application/x-protobuf`` to ``{url}/v1/traces``.
OTLP's retryable answers (429, 502, 503, 504) are retried, honouring
``Retry-After``; any other error status raises :class:`SendError` with the
server's message. Usage::

    from agentwatch.traffic import Generator, flush, send

    gen = Generator(seed=1, start_ns=1_767_225_600 * 10**9)
    result = send(gen.sessions(count=200), "http://127.0.0.1:4318")
    flush("http://127.0.0.1:4318")        # complete every open session now
    print(result.sessions, result.spans, result.seconds)

``pace="live"`` sleeps until each session's start time (event time read as
wall time), for a generator started at "now".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agentwatch import __version__
from agentwatch.errors import AgentwatchError
from agentwatch.retry_after import retry_after_s

Pace = Literal["max", "live"]
PROTOBUF = "application/x-protobuf"
#: OTLP/HTTP statuses a client retries (the specification's list).
RETRYABLE = frozenset({429, 502, 503, 504})
_MAX_RETRY_AFTER_S = 60.0
#: A server that cannot be reached gets a few seconds (0.25 + 0.5 + 1 + 2), not minutes.
_TRANSPORT_RETRIES = 4


class SendError(AgentwatchError):
    """The server refused a request for good, or could not be reached."""

    code = "send_error"


class SessionLike(Protocol):
    """Anything with an OTLP request and an event-time start (generated or imported sessions)."""

    @property
    def start_ns(self) -> int: ...

    @property
    def request(self) -> ExportTraceServiceRequest: ...


@dataclass(frozen=True)
class SendResult:
    """What ``send`` did."""

    sessions: int
    requests: int
    spans: int
    #: Spans the server reported as rejected in a partial success.
    rejected_spans: int
    #: Retried attempts (429/502/503/504 or a transport error).
    retries: int
    seconds: float
    #: Stopped early by Ctrl-C; what was in flight was still sent.
    interrupted: bool = False


class _Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.spans = self.rejected = self.retries = 0

    def add(self, *, spans: int = 0, rejected: int = 0, retries: int = 0, requests: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.spans += spans
            self.rejected += rejected
            self.retries += retries


def send(
    items: Iterable[SessionLike | ExportTraceServiceRequest],
    url: str,
    *,
    api_key: str | None = None,
    concurrency: int = 4,
    pace: Pace = "max",
    timeout: float = 30.0,
    max_retries: int = 10,
    per_request: int = 1,
) -> SendResult:
    """POST every item's request to ``{url}/v1/traces``; see the module docstring.

    ``per_request`` items go in one request (their resource spans side by side), as a collector's
    batch processor sends them.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if per_request < 1:
        raise ValueError(f"per_request must be at least 1, got {per_request}")
    if pace not in ("max", "live"):
        raise ValueError(f"pace must be 'max' or 'live', got {pace!r}")
    endpoint = url.rstrip("/") + "/v1/traces"
    headers = {"Content-Type": PROTOBUF, "User-Agent": f"agentwatch-traffic/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    tally = _Tally()
    sessions = 0
    interrupted = False
    began = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(headers=headers, timeout=timeout, limits=limits) as client, \
            ThreadPoolExecutor(concurrency, thread_name_prefix="agentwatch-send") as pool:
        pending: set[Future[None]] = set()
        batch: list[ExportTraceServiceRequest] = []

        def submit() -> None:
            nonlocal pending
            while len(pending) >= 2 * concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            request = batch[0] if len(batch) == 1 else _merged(batch)
            batch.clear()
            body = request.SerializeToString()
            pending.add(pool.submit(_post, client, endpoint, body, _span_count(request), max_retries, tally))

        try:
            for item in items:
                if isinstance(item, ExportTraceServiceRequest):
                    request, start_ns = item, None
                else:
                    request, start_ns = item.request, item.start_ns
                if pace == "live" and start_ns is not None:
                    _sleep_until(start_ns)
                batch.append(request)
                sessions += start_ns is not None
                if len(batch) >= per_request:
                    submit()
            if batch:
                submit()
        except KeyboardInterrupt:
            if batch:
                submit()
            interrupted = True
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        for future in pending:
            future.result()
    return SendResult(sessions, tally.requests, tally.spans, tally.rejected, tally.retries,
                      time.monotonic() - began, interrupted)


def flush(url: str, *, api_key: str | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """``POST /api/v1/admin/flush``: complete every open session of the key's project; returns the answer."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + "/api/v1/admin/flush"
    try:
        response = httpx.post(endpoint, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:
        raise SendError(f"cannot reach {endpoint}: {exc}") from exc
    if response.status_code != 200:
        raise SendError(f"{endpoint} answered {response.status_code}: {_error_message(response)}")
    answer: dict[str, Any] = response.json()
    return answer


def _merged(requests: list[ExportTraceServiceRequest]) -> ExportTraceServiceRequest:
    merged = ExportTraceServiceRequest()
    for request in requests:
        merged.resource_spans.extend(request.resource_spans)
    return merged


def _span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _sleep_until(t_ns: int) -> None:
    delay = t_ns / 1e9 - time.time()
    if delay > 0:
        time.sleep(delay)


def _post(client: httpx.Client, endpoint: str, body: bytes, spans: int, max_retries: int, tally: _Tally) -> None:
    attempt = 0
    while True:
        try:
            response = client.post(endpoint, content=body)
        except httpx.TransportError as exc:
            if attempt >= min(max_retries, _TRANSPORT_RETRIES):
                raise SendError(f"cannot reach {endpoint}: {exc}") from exc
            delay = _backoff(attempt)
        else:
            if response.status_code == 200:
                tally.add(requests=1, spans=spans, rejected=_rejected_spans(response))
                return
            if response.status_code not in RETRYABLE:
                raise SendError(f"{endpoint} answered {response.status_code}: {_error_message(response)}")
            if attempt >= max_retries:
                raise SendError(f"{endpoint} still answered {response.status_code} after {attempt} retries: "
                                f"{_error_message(response)}")
            asked = retry_after_s(response.headers, at_most=_MAX_RETRY_AFTER_S)
            delay = _backoff(attempt) if asked is None else asked
        attempt += 1
        tally.add(retries=1)
        time.sleep(delay)


def _backoff(attempt: int) -> float:
    return float(min(30.0, 0.25 * 2**attempt))


def _rejected_spans(response: httpx.Response) -> int:
    if not response.content or not response.headers.get("content-type", "").startswith(PROTOBUF):
        return 0
    try:
        answer = ExportTraceServiceResponse.FromString(response.content)
    except ProtobufDecodeError:
        return 0
    return int(answer.partial_success.rejected_spans)


def _error_message(response: httpx.Response) -> str:
    """The server's own words: a ``google.rpc.Status`` (OTLP) or ``{"error": {...}}`` (API)."""
    content_type = response.headers.get("content-type", "")
    if content_type.startswith(PROTOBUF):
        try:
            return RpcStatus.FromString(response.content).message or "(no message)"
        except ProtobufDecodeError:
            pass
    if content_type.startswith("application/json"):
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
            if body.get("message"):
                return str(body["message"])
    return response.text[:300] or "(empty body)"
