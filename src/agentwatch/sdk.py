"""A thin layer over OpenTelemetry for agents that report to agentwatch.

``configure`` sets up a tracer provider exporting OTLP/HTTP protobuf to the
server; ``session``, ``llm_call`` and ``tool_call`` open spans that carry the
OpenTelemetry GenAI attribute names, so any OTLP backend understands them
too. Nothing here is needed when an instrumentation library already emits
GenAI, OpenInference or OpenLLMetry spans: point its exporter at the server.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode

_TRACER_NAME = "agentwatch.sdk"


def configure(
    endpoint: str = "http://127.0.0.1:4318",
    api_key: str | None = None,
    service_name: str = "agent",
    *,
    service_version: str | None = None,
    set_global: bool = True,
    **processor_options: Any,
) -> TracerProvider:
    """A tracer provider that exports to agentwatch at ``endpoint``.

    ``processor_options`` go to ``BatchSpanProcessor`` (``max_queue_size``,
    ``schedule_delay_millis``...). The provider becomes the global one unless
    ``set_global`` is False; call ``provider.shutdown()`` to flush at exit.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    attributes = {"service.name": service_name}
    if service_version:
        attributes["service.version"] = service_version
    provider = TracerProvider(resource=Resource.create(attributes))
    headers = {"authorization": f"Bearer {api_key}"} if api_key else None
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", headers=headers)
    provider.add_span_processor(BatchSpanProcessor(exporter, **processor_options))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _tracer(provider: TracerProvider | None) -> trace.Tracer:
    return (provider or trace.get_tracer_provider()).get_tracer(_TRACER_NAME)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@contextlib.contextmanager
def session(
    session_id: str,
    *,
    user_id: str | None = None,
    intent: str | None = None,
    agent_name: str = "agent",
    agent_version: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Iterator[Span]:
    """An ``invoke_agent`` span that marks a session (``gen_ai.conversation.id``).

    Spans opened inside it belong to the session: agentwatch inherits the id
    down the trace.
    """
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent_name,
        "gen_ai.conversation.id": session_id,
    }
    if user_id:
        attributes["user.id"] = user_id
    if intent:
        attributes["agentwatch.intent"] = intent
    if agent_version:
        attributes["gen_ai.agent.version"] = agent_version
    with _tracer(tracer_provider).start_as_current_span(f"invoke_agent {agent_name}", attributes=attributes) as span:
        yield span


class LlmCall:
    """The span of one model call; ``record`` adds what the response said."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def record(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        response_model: str | None = None,
        input_messages: list[dict[str, Any]] | None = None,
        output_text: str | None = None,
        finish_reason: str | None = None,
    ) -> None:
        span = self.span
        if input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        if output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if response_model:
            span.set_attribute("gen_ai.response.model", response_model)
        if input_messages is not None:
            span.set_attribute("gen_ai.input.messages", _json(input_messages))
        if output_text is not None:
            message = {"role": "assistant", "parts": [{"type": "text", "content": output_text}]}
            if finish_reason:
                message["finish_reason"] = finish_reason
            span.set_attribute("gen_ai.output.messages", _json([message]))
        if finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])


@contextlib.contextmanager
def llm_call(
    model: str, *, provider: str = "openai", operation: str = "chat", tracer_provider: TracerProvider | None = None
) -> Iterator[LlmCall]:
    """A ``chat {model}`` client span with the GenAI request attributes."""
    attributes = {"gen_ai.operation.name": operation, "gen_ai.provider.name": provider,
                  "gen_ai.request.model": model}
    with _tracer(tracer_provider).start_as_current_span(
        f"{operation} {model}", kind=trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield LlmCall(span)


class ToolCall:
    """The span of one tool execution; ``result`` or ``fail`` says how it went."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def result(self, value: Any) -> None:
        self.span.set_attribute("gen_ai.tool.call.result", _json(value))

    def fail(self, error_type: str, message: str = "") -> None:
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, message or error_type))


@contextlib.contextmanager
def tool_call(
    name: str,
    arguments: Any = None,
    *,
    call_id: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Iterator[ToolCall]:
    """An ``execute_tool {name}`` span; an exception inside marks it failed."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    if call_id:
        attributes["gen_ai.tool.call.id"] = call_id
    if arguments is not None:
        attributes["gen_ai.tool.call.arguments"] = _json(arguments)
    with _tracer(tracer_provider).start_as_current_span(f"execute_tool {name}", attributes=attributes) as span:
        call = ToolCall(span)
        try:
            yield call
        except Exception as exc:
            call.fail(type(exc).__name__, str(exc))
            raise
