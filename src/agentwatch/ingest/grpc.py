"""OTLP/gRPC: the trace and logs ``Export`` services on their own port.

The servicers walk the already-parsed request with the same code as HTTP and
answer only after the commit. A full in-flight budget or an unavailable
store answers ``UNAVAILABLE`` (retryable for OTLP exporters).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from agentwatch.errors import AgentwatchError
from agentwatch.ingest.decode import logs_from_message, traces_from_message
from agentwatch.ingest.receiver import OFFLOAD_BYTES, Overloaded, Receiver
from agentwatch.store.writer import WriteRejected, WriterUnavailable


async def _guard(
    receiver: Receiver,
    project_for: Callable[[Any], int],
    request: Any,
    context: grpc.aio.ServicerContext,
    handle: Callable[[int, int], Any],
) -> Any:
    headers = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    try:
        project_id = project_for(headers)
    except AgentwatchError as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
    size = request.ByteSize()
    try:
        receiver.budget.acquire(size)
    except Overloaded as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    try:
        return await handle(project_id, size)
    except WriterUnavailable as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store is unavailable: {exc}")
    except WriteRejected as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    finally:
        receiver.budget.release(size)


class _Export:
    """One OTLP ``Export`` rpc: walk the parsed request, hand it to the receiver, answer after the commit."""

    def __init__(self, receiver: Receiver, project_for: Callable[[Any], int], signal: str) -> None:
        self.receiver = receiver
        self.project_for = project_for
        self.signal = signal

    async def Export(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 - gRPC name
        traces = self.signal == "traces"
        walk = traces_from_message if traces else logs_from_message

        async def handle(project_id: int, size: int) -> Any:
            decoded: Any = await asyncio.to_thread(walk, request) if size > OFFLOAD_BYTES else walk(request)
            if traces:
                outcome = await self.receiver.traces(project_id, decoded, nbytes=size)
                response: Any = trace_service_pb2.ExportTraceServiceResponse()
                if outcome.rejected or outcome.message:
                    response.partial_success.rejected_spans = outcome.rejected
                    response.partial_success.error_message = outcome.message
            else:
                outcome = await self.receiver.logs(project_id, decoded, nbytes=size)
                response = logs_service_pb2.ExportLogsServiceResponse()
                if outcome.rejected or outcome.message:
                    response.partial_success.rejected_log_records = outcome.rejected
                    response.partial_success.error_message = outcome.message
            return response

        return await _guard(self.receiver, self.project_for, request, context, handle)


class TraceService(_Export, trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver, project_for: Callable[[Any], int]) -> None:
        super().__init__(receiver, project_for, "traces")


class LogsService(_Export, logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: Receiver, project_for: Callable[[Any], int]) -> None:
        super().__init__(receiver, project_for, "logs")


def make_grpc_server(
    receiver: Receiver, project_for: Callable[[Any], int], *, host: str, port: int, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """A gRPC server bound to ``host:port`` (not started); answers it and the bound port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ]
    )
    # The generated registration functions carry no annotations.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TraceService(receiver, project_for), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        LogsService(receiver, project_for), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind OTLP/gRPC to {host}:{port}")
    return server, bound
