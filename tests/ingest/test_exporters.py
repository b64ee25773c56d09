"""The official OpenTelemetry Python exporters, and agentwatch's SDK helpers, against a real server.

Each engine gets one server for the module. Spans go through a
``TracerProvider`` with a ``BatchSpanProcessor`` (OTLP/HTTP protobuf or
OTLP/gRPC), GenAI evaluation events through a ``LoggerProvider`` with a
``BatchLogRecordProcessor`` (OTLP/HTTP); the result is read back through
the REST API.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import agentwatch
from agentwatch.testing import ServerProcess


@dataclass
class Served:
    server: ServerProcess
    engine: str

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.server.url + path, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def srv(engine: str, module_db: tuple[str, Path]) -> Iterator[Served]:
    url, tmp = module_db
    with ServerProcess(url, cwd=tmp) as server:
        yield Served(server, engine)


def _provider(exporter: SpanExporter, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "3.1.0"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    return provider


def _agent_run(tracer: trace.Tracer, session_id: str) -> dict[str, str]:
    """One agent turn in GenAI conventions; answers the span ids by role."""
    ids: dict[str, str] = {}
    with tracer.start_as_current_span("invoke_agent support-agent", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-agent",
        "gen_ai.conversation.id": session_id, "agentwatch.intent": "refund", "user.id": "user-9",
    }) as root:
        ids["root"] = format(root.get_span_context().span_id, "016x")
        ids["trace"] = format(root.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 321,
            "gen_ai.usage.output_tokens": 54, "gen_ai.response.finish_reasons": ["tool_calls"],
        }) as chat:
            ids["chat"] = format(chat.get_span_context().span_id, "016x")
        with tracer.start_as_current_span("execute_tool lookup_order", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
            "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": '{"order_id": "A-1001"}',
        }) as tool:
            ids["tool"] = format(tool.get_span_context().span_id, "016x")
            tool.set_attribute("error.type", "timeout")
            tool.set_status(Status(StatusCode.ERROR, "order service timed out"))
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 400,
            "gen_ai.usage.output_tokens": 20,
        }):
            pass
    return ids


def _assert_agent_session(srv: Served, session_id: str, ids: dict[str, str], service: str) -> None:
    detail = srv.get(f"/api/v1/sessions/{session_id}")
    session = detail["session"]
    assert session["session_id"] == session_id
    assert session["service"] == service
    assert session["agent_version"] == "3.1.0"
    assert (session["intent"], session["user_id"]) == ("refund", "user-9")
    assert (session["spans"], session["llm_calls"], session["tool_calls"], session["tool_errors"]) == (4, 2, 1, 1)
    assert (session["tokens_in"], session["tokens_out"]) == (721, 74)
    assert session["trace_ids"] == [ids["trace"]]
    assert len(detail["spans"]) == 1, "one root, everything else below it"
    root = detail["spans"][0]
    assert (root["span_id"], root["kind"], root["session_id"]) == (ids["root"], "agent", session_id)
    children = sorted(root["children"], key=lambda s: s["start_time"])
    assert [c["kind"] for c in children] == ["llm", "tool", "llm"]
    assert all(c["parent_span_id"] == ids["root"] and c["session_id"] == session_id for c in children)
    assert children[0]["span_id"] == ids["chat"] and children[0]["tokens_in"] == 321
    tool = children[1]
    assert (tool["span_id"], tool["tool_name"], tool["success"], tool["error_type"]) == (
        ids["tool"], "lookup_order", False, "timeout")
    listed = srv.get("/api/v1/sessions", service=service)["items"]
    assert [s["session_id"] for s in listed] == [session_id]


def test_otlp_http_protobuf_exporter(srv: Served) -> None:
    exporter = HttpSpanExporter(endpoint=f"{srv.server.url}/v1/traces", timeout=30)
    provider = _provider(exporter, "http-exporter")
    try:
        ids = _agent_run(provider.get_tracer("test"), "sess-http-exporter")
        assert provider.force_flush(30_000)
    finally:
        provider.shutdown()
    _assert_agent_session(srv, "sess-http-exporter", ids, "http-exporter")


def test_otlp_http_exporter_with_gzip(srv: Served) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    sent: list[tuple[str | None, int]] = []
    session = requests.Session()
    session.hooks["response"].append(
        lambda r, *a, **k: sent.append((r.request.headers.get("content-encoding"), r.status_code)))
    exporter = HttpSpanExporter(endpoint=f"{srv.server.url}/v1/traces", timeout=30, compression=Compression.Gzip,
                                session=session)
    provider = _provider(exporter, "http-gzip-exporter")
    try:
        ids = _agent_run(provider.get_tracer("test"), "sess-http-gzip")
        assert provider.force_flush(30_000)
    finally:
        provider.shutdown()
    assert sent == [("gzip", 200)]
    _assert_agent_session(srv, "sess-http-gzip", ids, "http-gzip-exporter")


def test_otlp_grpc_exporter(srv: Served) -> None:
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{srv.server.grpc_port}", insecure=True, timeout=30)
    provider = _provider(exporter, "grpc-exporter")
    try:
        ids = _agent_run(provider.get_tracer("test"), "sess-grpc-exporter")
        assert provider.force_flush(30_000)
    finally:
        provider.shutdown()
    _assert_agent_session(srv, "sess-grpc-exporter", ids, "grpc-exporter")


def _evaluations_of(srv: Served, session_id: str, span_id: str) -> list[dict[str, Any]]:
    def walk(spans: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for span in spans:
            yield span
            yield from walk(span["children"])

    spans = [s for s in walk(srv.get(f"/api/v1/sessions/{session_id}")["spans"]) if s["span_id"] == span_id]
    assert len(spans) == 1
    return spans[0]["evaluations"]


def test_evaluation_events_before_and_after_their_span(srv: Served) -> None:
    resource = Resource.create({"service.name": "eval-exporter"})
    span_provider = _provider(HttpSpanExporter(endpoint=f"{srv.server.url}/v1/traces", timeout=30), "eval-exporter")
    log_provider = LoggerProvider(resource=resource)
    log_provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{srv.server.url}/v1/logs", timeout=30), schedule_delay_millis=60_000))
    logger = log_provider.get_logger("evaluator")
    tracer = span_provider.get_tracer("test")

    def evaluate(span: trace.Span, name: str, score: float, label: str) -> None:
        logger.emit(
            event_name="gen_ai.evaluation.result",
            context=trace.set_span_in_context(span),
            attributes={"gen_ai.evaluation.name": name, "gen_ai.evaluation.score.value": score,
                        "gen_ai.evaluation.score.label": label,
                        "gen_ai.evaluation.explanation": f"{name} checked"},
        )

    try:
        with tracer.start_as_current_span("invoke_agent eval", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "sess-evaluated",
        }):
            chat = tracer.start_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5})
            chat_id = format(chat.get_span_context().span_id, "016x")
            # The first evaluation is exported while its span is still open, so before the span.
            evaluate(chat, "relevance", 0.25, "irrelevant")
            assert log_provider.force_flush(30_000)
            trace_id = format(chat.get_span_context().trace_id, "032x")
            not_yet = httpx.get(f"{srv.server.url}/api/v1/traces/{trace_id}", timeout=30)
            assert not_yet.status_code == 404, "the evaluation must arrive before its span"
            chat.end()
        assert span_provider.force_flush(30_000)
        assert srv.get("/api/v1/sessions/sess-evaluated")["session"]["spans"] == 2
        evaluate(chat, "faithfulness", 0.9, "faithful")
        assert log_provider.force_flush(30_000)
    finally:
        span_provider.shutdown()
        log_provider.shutdown()

    evaluations = sorted(_evaluations_of(srv, "sess-evaluated", chat_id), key=lambda e: e["name"])
    assert [(e["name"], e["score"], e["label"], e["source"]) for e in evaluations] == [
        ("faithfulness", 0.9, "faithful", "event"),
        ("relevance", 0.25, "irrelevant", "event"),
    ]
    assert evaluations[1]["explanation"] == "relevance checked"


def test_sdk_helpers_end_to_end(srv: Served) -> None:
    provider = agentwatch.configure(endpoint=srv.server.url, service_name="sdk-agent", service_version="5.0.0",
                                    set_global=False, schedule_delay_millis=60_000)
    try:
        with pytest.raises(TimeoutError):
            with agentwatch.session("sess-sdk", user_id="user-42", intent="cancel_order", agent_name="helper",
                                    tracer_provider=provider):
                with agentwatch.llm_call("gpt-4o-mini", tracer_provider=provider) as call:
                    call.record(input_tokens=120, output_tokens=30, response_model="gpt-4o-mini-2024-07-18",
                                input_messages=[{"role": "user", "parts": [{"type": "text",
                                                                            "content": "cancel A-7"}]}],
                                output_text="Looking it up.", finish_reason="tool_calls")
                with agentwatch.tool_call("lookup_order", {"order_id": "A-7"}, call_id="c1",
                                          tracer_provider=provider) as tool:
                    tool.result({"status": "shipped"})
                with agentwatch.tool_call("cancel_order", {"order_id": "A-7"}, call_id="c2",
                                          tracer_provider=provider):
                    raise TimeoutError("payments service did not answer")
        assert provider.force_flush(30_000)
    finally:
        provider.shutdown()

    detail = srv.get("/api/v1/sessions/sess-sdk")
    session = detail["session"]
    assert (session["intent"], session["user_id"], session["service"]) == ("cancel_order", "user-42", "sdk-agent")
    assert session["agent_name"] == "helper" and session["agent_version"] == "5.0.0"
    assert (session["tokens_in"], session["tokens_out"]) == (120, 30)
    assert (session["llm_calls"], session["tool_calls"], session["tool_errors"]) == (1, 2, 1)
    assert session["error"] is True
    [root] = detail["spans"]
    assert root["kind"] == "agent"
    by_name = {c["name"]: c for c in root["children"]}
    assert set(by_name) == {"chat gpt-4o-mini", "execute_tool lookup_order", "execute_tool cancel_order"}
    llm = by_name["chat gpt-4o-mini"]
    assert (llm["kind"], llm["model_responded"], llm["finish_reasons"]) == ("llm", "gpt-4o-mini-2024-07-18",
                                                                            ["tool_calls"])
    assert "cancel A-7" in llm["input_text"] and llm["output_text"] == "Looking it up."
    ok, failed = by_name["execute_tool lookup_order"], by_name["execute_tool cancel_order"]
    assert (ok["success"], ok["tool_result"]) == (True, {"status": "shipped"})
    assert (failed["success"], failed["error_type"], failed["tool_args"]) == (False, "TimeoutError",
                                                                              {"order_id": "A-7"})
