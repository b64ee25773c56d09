"""Realistic agent sessions as OTLP requests, for tests and benchmarks.

``agent_session_request`` builds one agent session with an ``invoke_agent``
root, model calls, tool calls and message content, in the OpenTelemetry
GenAI conventions; its :class:`SessionSpec` says what went in, for
assertions.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentwatch.otlp import TraceBuilder, traces_request

_WORDS = ("refund order account billing plan premium invoice shipping delivery charge card policy "
          "customer request amount support ticket update status review confirm").split()


def filler_text(rng: random.Random, nbytes: int, vocabulary: tuple[str, ...] | list[str] = _WORDS) -> str:
    """About ``nbytes`` of words drawn from ``vocabulary``: message content of a plausible size."""
    words: list[str] = []
    size = 0
    while size < nbytes:
        word = rng.choice(vocabulary)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


@dataclass
class SessionSpec:
    """What :func:`agent_session_request` put into a request, for assertions."""

    session_id: str
    trace_id: str
    span_ids: list[str]
    tokens_in: int
    tokens_out: int
    llm_calls: int
    tool_calls: int
    tool_errors: int


def agent_session_request(
    rng: random.Random,
    *,
    session_id: str | None = None,
    start_ns: int | None = None,
    tool_calls: int = 6,
    message_bytes: int = 500,
    service: str = "support-agent",
    service_version: str = "1.4.0",
    intent: str | None = "refund",
    user_id: str | None = "user-1",
    tool_error_rate: float = 0.0,
) -> tuple[ExportTraceServiceRequest, SessionSpec]:
    """One agent session as an OTLP request, its root span last (as SDK batches send it).

    Spans: the ``invoke_agent`` root; per tool call an llm span, the tool
    span and a guardrail check; a closing llm span: ``2 + 3 * tool_calls``
    spans (20 with the default six tool calls), each llm span with about
    ``message_bytes`` of message content.
    """
    trace = TraceBuilder(rng)
    trace_id = trace.trace_id
    session_id = session_id or f"sess-{trace_id.hex()[:16]}"
    t = start_ns if start_ns is not None else time.time_ns() - 60 * 10**9
    root_id = trace.new_span_id()
    tokens_in = tokens_out = errors = 0

    def span(name: str, parent: bytes | None, start: int, dur_ms: int, attrs: dict[str, Any],
             error: str | None = None) -> Span:
        return trace.add(trace.new_span_id(), parent, name, Span.SPAN_KIND_INTERNAL, start,
                         start + dur_ms * 1_000_000, attrs, error=error)

    cursor = t + 1_000_000
    user_text = filler_text(rng, message_bytes)
    for i in range(tool_calls + 1):
        n_in, n_out = rng.randint(200, 900), rng.randint(20, 200)
        tokens_in += n_in
        tokens_out += n_out
        final = i == tool_calls
        output = ([{"role": "assistant", "parts": [{"type": "text", "content": filler_text(rng, message_bytes)}]}]
                  if final else
                  [{"role": "assistant", "parts": [{"type": "tool_call", "id": f"call_{i}", "name": "lookup_order",
                                                    "arguments": {"order_id": f"A-{rng.randint(1000, 9999)}"}}]}])
        llm = span("chat gpt-4o-mini", root_id, cursor, rng.randint(300, 1500), {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": n_in, "gen_ai.usage.output_tokens": n_out,
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": user_text}]}]),
            "gen_ai.output.messages": json.dumps(output),
            "gen_ai.response.finish_reasons": ["stop" if final else "tool_calls"],
        })
        llm.kind = Span.SPAN_KIND_CLIENT
        cursor = llm.end_time_unix_nano + 1_000_000
        if final:
            break
        failed = rng.random() < tool_error_rate
        errors += failed
        attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
                 "gen_ai.tool.call.id": f"call_{i}",
                 "gen_ai.tool.call.arguments": json.dumps({"order_id": f"A-{rng.randint(1000, 9999)}"})}
        if failed:
            attrs["error.type"] = "timeout"
        else:
            note = filler_text(rng, message_bytes // 2)
            attrs["gen_ai.tool.call.result"] = json.dumps({"status": "shipped", "note": note})
        tool = span("execute_tool lookup_order", root_id, cursor, rng.randint(20, 400), attrs,
                    error="order service timed out" if failed else None)
        cursor = tool.end_time_unix_nano + 1_000_000
        guard = span("apply_guardrail pii", root_id, cursor, 5, {
            "gen_ai.operation.name": "apply_guardrail", "gen_ai.guardrail.component.name": "pii",
            "gen_ai.guardrail.result.type": "allow"})
        cursor = guard.end_time_unix_nano + 1_000_000
    root_attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": service,
                                  "gen_ai.conversation.id": session_id}
    if intent:
        root_attrs["agentwatch.intent"] = intent
    if user_id:
        root_attrs["user.id"] = user_id
    trace.add(root_id, None, f"invoke_agent {service}", Span.SPAN_KIND_INTERNAL, t, cursor + 1_000_000, root_attrs)
    spans = trace.spans
    request = traces_request(spans, service=service,
                             resource={"service.version": service_version, "telemetry.sdk.language": "python"})
    spec = SessionSpec(session_id=session_id, trace_id=trace_id.hex(), span_ids=[s.span_id.hex() for s in spans],
                       tokens_in=tokens_in, tokens_out=tokens_out, llm_calls=tool_calls + 1,
                       tool_calls=tool_calls, tool_errors=errors)
    return request, spec
