"""Normalization: the conformance captures, the conventions' examples, edge cases, pricing."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from agentwatch._types import NormalizedSpan, RawLogRecord, RawSpan, Resource
from agentwatch.errors import ConfigError
from agentwatch.ingest.decode import decode_logs, decode_traces
from agentwatch.normalize import (
    DEFAULT_OPTIONS,
    ModelPrice,
    NormalizeOptions,
    PriceTable,
    attach_log_records,
    normalize,
)

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "otlp-captures"
ENCODINGS = [("protobuf", ".pb"), ("json", ".otlp.json")]
SESSION = "sess-conformance-0001"
TOOL_ARGS = {"order_id": "A-1001", "amount": 42.5}
USAGE = [(39, 10), (55, 20), (94, 21)]
#: Published gpt-4o-mini list price, USD per million tokens (input, output).
GPT_4O_MINI = (0.15, 0.60)
GPT_4O = (2.50, 10.00, 1.25)

# Per run, from the captures' README: which kinds carry the session / user id, whether the
# tool span records its call id and arguments, where chat messages live, and the conventions.
RUNS: dict[str, dict[str, Any]] = {
    "otel-genai": {
        "session_on": {"agent"},
        "user_on": set(),
        "tool_call_id": True,
        "tool_args": True,
        "messages": "span",
        "conventions": {"agent": ["otel_genai"], "llm": ["otel_genai"], "tool": ["otel_genai"]},
    },
    "otel-genai-grpc": {
        "session_on": {"agent"},
        "user_on": set(),
        "tool_call_id": True,
        "tool_args": True,
        "messages": "span",
        "conventions": {"agent": ["otel_genai"], "llm": ["otel_genai"], "tool": ["otel_genai"]},
    },
    "otel-genai-events": {
        "session_on": {"agent"},
        "user_on": set(),
        "tool_call_id": True,
        "tool_args": False,
        "messages": "logs",
        "conventions": {"agent": ["otel_genai"], "llm": ["otel_genai"], "tool": ["otel_genai"]},
    },
    "otel-genai-legacy": {
        "session_on": {"agent"},
        "user_on": set(),
        "tool_call_id": True,
        "tool_args": True,
        "messages": "logs",
        "conventions": {"agent": ["otel_genai"], "llm": ["otel_genai"], "tool": ["otel_genai"]},
    },
    "openinference": {
        "session_on": {"agent", "llm", "tool"},
        "user_on": {"agent", "llm", "tool"},
        "tool_call_id": False,
        "tool_args": True,
        "messages": "span",
        "conventions": {"agent": ["openinference"], "llm": ["openinference"], "tool": ["openinference"]},
    },
    "openllmetry": {
        "session_on": {"llm", "tool"},
        "user_on": {"llm", "tool"},
        "tool_call_id": False,
        "tool_args": True,
        "messages": "span",
        "conventions": {
            "agent": ["openllmetry"],
            "llm": ["otel_genai", "openllmetry"],
            "tool": ["openllmetry"],
        },
    },
}

COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "start_ns", "end_ns", "name", "convention", "kind",
    "operation", "session_id", "user_id", "agent_name", "agent_id", "agent_version", "service",
    "intent", "provider", "model_requested", "model_responded", "tokens_in", "tokens_out",
    "tokens_cache_read", "tokens_cache_write", "tokens_reasoning", "cost_usd", "cost_source",
    "tool_name", "tool_call_id", "success", "error_type", "error_message", "finish_reasons",
)
CONTENT = (
    "input_text", "output_text", "input_messages", "output_messages", "system_instructions",
    "retrieved_documents", "evaluations", "tool_args", "tool_result",
)


def load_run(run: str, content_type: str, suffix: str, *, content: bool = True) -> list[NormalizedSpan]:
    raw = decode_traces((CAPTURES / run / f"0001-traces{suffix}").read_bytes(), content_type).spans
    spans = [normalize(s, content=content) for s in raw]
    logs_path = CAPTURES / run / f"0002-logs{suffix}"
    if logs_path.exists():
        by_span: dict[str, list[RawLogRecord]] = defaultdict(list)
        for record in decode_logs(logs_path.read_bytes(), content_type).records:
            by_span[record.span_id].append(record)
        for span in spans:
            attach_log_records(span, by_span.get(span.span_id, []))
    return spans


def chats(spans: list[NormalizedSpan]) -> list[NormalizedSpan]:
    return sorted((s for s in spans if s.kind == "llm"), key=lambda s: s.start_ns)


def tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in message["parts"] if p.get("type") == "tool_call"]


def resource() -> Resource:
    return Resource(attributes={"service.name": "travel-agent", "service.version": "2.0"}, key="0" * 16)


def raw_span(attributes: dict[str, Any], name: str = "span", **fields: Any) -> RawSpan:
    values: dict[str, Any] = {
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "parent_span_id": None,
        "name": name,
        "span_kind": 1,
        "start_ns": 1767225600000000000,
        "end_ns": 1767225601000000000,
        "status_code": 0,
        "status_message": "",
        "attributes": attributes,
        "events": [],
        "links": [],
        "resource": resource(),
        "scope_name": "test",
        "scope_version": "",
    }
    values.update(fields)
    return RawSpan(**values)


def log_record(event_name: str, attributes: dict[str, Any] | None = None, body: Any = None) -> RawLogRecord:
    return RawLogRecord(
        trace_id="5b8efff798038103d269b633813fc60c",
        span_id="eee19b7ec3c1b174",
        event_name=event_name,
        time_ns=1,
        severity_number=9,
        attributes=attributes or {},
        body=body,
        resource=resource(),
        scope_name="test",
    )


# --- conformance captures ---------------------------------------------------------------


@pytest.mark.parametrize("content_type,suffix", ENCODINGS)
@pytest.mark.parametrize("run", sorted(RUNS))
def test_capture_columns(run: str, content_type: str, suffix: str) -> None:
    expect = RUNS[run]
    spans = load_run(run, content_type, suffix)
    assert sorted(s.kind for s in spans) == ["agent", "llm", "llm", "llm", "tool"]
    (agent,) = [s for s in spans if s.kind == "agent"]
    assert agent.parent_span_id is None
    assert all(s.parent_span_id == agent.span_id for s in spans if s is not agent)
    assert agent.agent_name == "support-agent"

    for span in spans:
        assert span.service == "support-agent"
        assert span.agent_version == "0.0.1"
        assert span.success is True and span.error_type is None
        assert span.convention == expect["conventions"][span.kind], span.name
        assert span.session_id == (SESSION if span.kind in expect["session_on"] else None), span.name
        assert span.user_id == ("user-42" if span.kind in expect["user_on"] else None), span.name
        assert span.raw_attributes is not None and span.intent is None

    llm = chats(spans)
    assert [(s.tokens_in, s.tokens_out) for s in llm] == USAGE
    for span, (tokens_in, tokens_out) in zip(llm, USAGE):
        assert span.provider == "openai"
        assert span.model_requested == "gpt-4o-mini"
        assert span.model_responded == "gpt-4o-mini-2024-07-18"
        assert span.cost_source == "computed"
        expected = (tokens_in * GPT_4O_MINI[0] + tokens_out * GPT_4O_MINI[1]) / 1e6
        assert span.cost_usd == pytest.approx(expected)
    assert llm[0].finish_reasons[0] in ("tool_calls", "tool_call")
    assert llm[1].finish_reasons == ["stop"]

    (tool,) = [s for s in spans if s.kind == "tool"]
    assert tool.tool_name == "refund_api"
    assert tool.tool_call_id == ("call_refund_0001" if expect["tool_call_id"] else None)
    assert tool.tool_args == (TOOL_ARGS if expect["tool_args"] else None)
    if expect["tool_args"]:
        assert tool.tool_result["refund_id"] == "rf_0001"
    assert tool.tokens_in is None and tool.cost_usd is None
    assert agent.cost_usd is None


@pytest.mark.parametrize("content_type,suffix", ENCODINGS)
@pytest.mark.parametrize("run", sorted(RUNS))
def test_capture_messages(run: str, content_type: str, suffix: str) -> None:
    llm = chats(load_run(run, content_type, suffix))
    first, second, third = llm
    assert "refund" in first.input_text
    assert "42.50" in second.output_text
    assert third.input_text == "Thanks! How long until the money is back on my card?"
    assert third.output_text.startswith("Refunds usually take 3-5 business days")

    assert first.input_messages[0]["role"] == "system"
    assert first.input_messages[-1]["role"] == "user"
    assert first.output_text is None, "the first answer is a tool call, it has no text part"
    (call,) = tool_calls(first.output_messages[0])
    assert call["name"] == "refund_api"
    assert call["id"] == "call_refund_0001"
    assert call["arguments"] == TOOL_ARGS

    roles = [m["role"] for m in second.input_messages]
    assert roles == ["system", "user", "assistant", "tool"]
    (response,) = second.input_messages[3]["parts"]
    assert response["type"] == "tool_call_response" and response["id"] == "call_refund_0001"
    assert json.loads(response["response"])["status"] == "refunded"
    assert [m["role"] for m in third.input_messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    for span in llm:
        assert len(span.output_messages) == 1 and span.output_messages[0]["role"] == "assistant"


@pytest.mark.parametrize("run", ["otel-genai-events", "otel-genai-legacy"])
def test_capture_log_runs_have_no_messages_without_their_logs(run: str) -> None:
    raw = decode_traces((CAPTURES / run / "0001-traces.pb").read_bytes(), "protobuf").spans
    for span in (normalize(s) for s in raw):
        assert span.input_messages == [] and span.output_messages == []


@pytest.mark.parametrize("run", sorted(RUNS))
def test_capture_content_false_keeps_columns_and_drops_content(run: str) -> None:
    raw = decode_traces((CAPTURES / run / "0001-traces.pb").read_bytes(), "protobuf").spans
    for span in raw:
        full = normalize(span)
        light = normalize(span, content=False)
        assert {c: getattr(light, c) for c in COLUMNS} == {c: getattr(full, c) for c in COLUMNS}
        for name in CONTENT:
            assert getattr(light, name) in (None, []), name
        assert light.raw_attributes is span.attributes


def test_capture_openinference_agent_and_tool_texts() -> None:
    spans = load_run("openinference", "protobuf", ".pb")
    agent = next(s for s in spans if s.kind == "agent")
    assert agent.input_text.startswith("Hi, I was charged twice")
    assert agent.output_text.startswith("Refunds usually take")
    assert agent.operation == "AGENT"


def test_capture_openllmetry_agent_output_is_the_final_answer() -> None:
    spans = load_run("openllmetry", "protobuf", ".pb")
    agent = next(s for s in spans if s.kind == "agent")
    assert agent.input_text is None, '{"args": [], "kwargs": {}} carries no input'
    assert agent.output_text.startswith("Refunds usually take")
    assert next(s for s in spans if s.kind == "llm").agent_name == "support-agent"


# --- conventions section 9 -------------------------------------------------------------

SYSTEM = '[{"type":"text","content":"You are a travel assistant."}]'
INPUT = '[{"role":"user","parts":[{"type":"text","content":"Weather in Paris?"}]}]'
OUTPUT = (
    '[{"role":"assistant","parts":[{"type":"tool_call","id":"call_VSPygqKTWdrhaFErNvMV18Yl",'
    '"name":"get_weather","arguments":{"location":"Paris"}}],"finish_reason":"tool_calls"}]'
)


def sv(value: str) -> dict[str, Any]:
    return {"stringValue": value}


def section9(structured: bool = False, failed_tool: bool = False) -> bytes:
    def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "value": value}

    def to_any(value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            return sv(value)
        if isinstance(value, list):
            return {"arrayValue": {"values": [to_any(v) for v in value]}}
        return {"kvlistValue": {"values": [kv(k, to_any(v)) for k, v in value.items()]}}

    content = (
        [to_any(json.loads(SYSTEM)), to_any(json.loads(INPUT)), to_any(json.loads(OUTPUT))]
        if structured
        else [sv(SYSTEM), sv(INPUT), sv(OUTPUT)]
    )
    tool_attrs = [
        kv("gen_ai.operation.name", sv("execute_tool")),
        kv("gen_ai.tool.name", sv("get_weather")),
        kv("gen_ai.tool.type", sv("function")),
        kv("gen_ai.tool.call.id", sv("call_VSPygqKTWdrhaFErNvMV18Yl")),
        kv("gen_ai.tool.call.arguments", sv('{"location":"Paris"}')),
    ]
    tool_status: dict[str, Any] = {}
    if failed_tool:
        tool_attrs.append(kv("error.type", sv("timeout")))
        tool_status = {"code": 2, "message": "weather API timed out after 10s"}
    else:
        tool_attrs.append(kv("gen_ai.tool.call.result", sv('{"conditions":"rainy","temperature_f":57}')))
    doc = {
        "resourceSpans": [{
            "resource": {"attributes": [kv("service.name", sv("travel-agent"))]},
            "scopeSpans": [{
                "scope": {"name": "example.genai.instrumentation", "version": "1.0.0"},
                "spans": [
                    {
                        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b173",
                        "name": "invoke_agent TravelAgent", "kind": 1,
                        "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225603000000000",
                        "attributes": [
                            kv("gen_ai.operation.name", sv("invoke_agent")),
                            kv("gen_ai.provider.name", sv("openai")),
                            kv("gen_ai.agent.name", sv("TravelAgent")),
                            kv("gen_ai.conversation.id", sv("conv_5j66UpCpwteGg4YSxUnt7lPY")),
                        ],
                        "status": {},
                    },
                    {
                        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                        "parentSpanId": "eee19b7ec3c1b173", "name": "chat gpt-4o", "kind": 3,
                        "startTimeUnixNano": "1767225600100000000", "endTimeUnixNano": "1767225601350000000",
                        "attributes": [
                            kv("gen_ai.operation.name", sv("chat")),
                            kv("gen_ai.provider.name", sv("openai")),
                            kv("gen_ai.request.model", sv("gpt-4o")),
                            kv("gen_ai.response.model", sv("gpt-4o-2024-08-06")),
                            kv("gen_ai.response.id", sv("chatcmpl-123")),
                            kv("gen_ai.response.finish_reasons", {"arrayValue": {"values": [sv("tool_calls")]}}),
                            kv("gen_ai.conversation.id", sv("conv_5j66UpCpwteGg4YSxUnt7lPY")),
                            kv("gen_ai.usage.input_tokens", {"intValue": "97"}),
                            kv("gen_ai.usage.output_tokens", {"intValue": "18"}),
                            kv("gen_ai.usage.cache_read.input_tokens", {"intValue": "64"}),
                            kv("server.address", sv("api.openai.com")),
                            kv("gen_ai.system_instructions", content[0]),
                            kv("gen_ai.input.messages", content[1]),
                            kv("gen_ai.output.messages", content[2]),
                        ],
                        "status": {},
                    },
                    {
                        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "a1b2c3d4e5f60718",
                        "parentSpanId": "eee19b7ec3c1b173", "name": "execute_tool get_weather", "kind": 1,
                        "startTimeUnixNano": "1767225601400000000", "endTimeUnixNano": "1767225601900000000",
                        "attributes": tool_attrs,
                        "status": tool_status,
                    },
                ],
            }],
        }]
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize("structured", [False, True])
def test_section9_genai_example(structured: bool) -> None:
    agent, chat, tool = (normalize(s) for s in decode_traces(section9(structured), "json").spans)
    assert (agent.kind, chat.kind, tool.kind) == ("agent", "llm", "tool")
    assert agent.agent_name == "TravelAgent" and agent.operation == "invoke_agent"
    assert agent.session_id == chat.session_id == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert tool.session_id is None
    assert agent.service == chat.service == "travel-agent"
    assert agent.agent_version is None
    assert chat.convention == ["otel_genai"]

    assert (chat.provider, chat.model_requested, chat.model_responded) == ("openai", "gpt-4o", "gpt-4o-2024-08-06")
    assert (chat.tokens_in, chat.tokens_out, chat.tokens_cache_read) == (97, 18, 64)
    assert chat.tokens_cache_write is None and chat.tokens_reasoning is None
    price_in, price_out, price_cached = GPT_4O
    expected = ((97 - 64) * price_in + 64 * price_cached + 18 * price_out) / 1e6
    assert chat.cost_usd == pytest.approx(expected) and chat.cost_source == "computed"
    assert chat.finish_reasons == ["tool_calls"]

    assert chat.system_instructions == [{"type": "text", "content": "You are a travel assistant."}]
    assert chat.input_messages == [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
    assert chat.input_text == "Weather in Paris?"
    (message,) = chat.output_messages
    assert message["role"] == "assistant" and message["finish_reason"] == "tool_calls"
    assert message["parts"] == [
        {"type": "tool_call", "id": "call_VSPygqKTWdrhaFErNvMV18Yl", "name": "get_weather", "arguments": {"location": "Paris"}}
    ]
    assert chat.output_text is None

    assert tool.tool_name == "get_weather" and tool.tool_call_id == "call_VSPygqKTWdrhaFErNvMV18Yl"
    assert tool.tool_args == {"location": "Paris"}
    assert tool.tool_result == {"conditions": "rainy", "temperature_f": 57}
    assert tool.success is True and tool.cost_usd is None


def test_section9_failed_tool() -> None:
    tool = normalize(decode_traces(section9(failed_tool=True), "json").spans[2])
    assert tool.success is False
    assert tool.error_type == "timeout"
    assert tool.error_message == "weather API timed out after 10s"
    assert tool.tool_result is None
    assert tool.tool_args == {"location": "Paris"}


def openinference_chat() -> dict[str, Any]:
    return {
        "openinference.span.kind": "LLM", "llm.system": "openai", "llm.provider": "openai",
        "llm.model_name": "gpt-4o-2024-08-06", "llm.request.model_name": "gpt-4o",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "You are a travel assistant.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": "Weather in Paris?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_VSPygqKTWdrhaFErNvMV18Yl",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"location": "Paris"}',
        "llm.token_count.prompt": 97, "llm.token_count.completion": 18, "llm.token_count.total": 115,
        "llm.token_count.prompt_details.cache_read": 64, "session.id": "conv_5j66UpCpwteGg4YSxUnt7lPY",
        "input.value": '{"messages": []}', "input.mime_type": "application/json",
    }


def test_section9_openinference_chat() -> None:
    span = normalize(raw_span(openinference_chat(), name="ChatCompletion"))
    assert span.convention == ["openinference"] and span.kind == "llm" and span.operation == "LLM"
    assert span.provider == "openai"
    assert (span.model_requested, span.model_responded) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert (span.tokens_in, span.tokens_out, span.tokens_cache_read) == (97, 18, 64)
    assert span.session_id == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert [m["role"] for m in span.input_messages] == ["system", "user"]
    assert span.input_text == "Weather in Paris?"
    (call,) = tool_calls(span.output_messages[0])
    assert call == {"type": "tool_call", "id": "call_VSPygqKTWdrhaFErNvMV18Yl", "name": "get_weather", "arguments": {"location": "Paris"}}
    assert span.agent_version == "2.0", "falls back to the resource's service.version"


def test_section9_openinference_tool() -> None:
    span = normalize(raw_span(
        {
            "openinference.span.kind": "TOOL", "tool.name": "get_weather",
            "tool.id": "call_VSPygqKTWdrhaFErNvMV18Yl", "input.value": '{"location":"Paris"}',
            "output.value": "rainy, 57F", "tool.parameters": '{"type": "object"}',
        },
        name="get_weather",
    ))
    assert span.kind == "tool"
    assert (span.tool_name, span.tool_call_id) == ("get_weather", "call_VSPygqKTWdrhaFErNvMV18Yl")
    assert span.tool_args == {"location": "Paris"}
    assert span.tool_result == "rainy, 57F", "not JSON: kept as the string"


def test_section9_legacy_openllmetry_chat() -> None:
    span = normalize(raw_span(
        {
            "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Weather in Paris?",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_calls",
            "gen_ai.completion.0.tool_calls.0.name": "get_weather",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"location":"Paris"}',
            "gen_ai.usage.prompt_tokens": 97, "gen_ai.usage.completion_tokens": 18,
            "llm.usage.total_tokens": 115,
            "traceloop.association.properties.session_id": "conv_5j66UpCpwteGg4YSxUnt7lPY",
        },
        name="openai.chat",
    ))
    assert span.convention == ["openllmetry"]
    assert span.kind == "llm" and span.operation == "chat"
    assert span.provider == "openai" and span.model_requested == "gpt-4o" and span.model_responded is None
    assert (span.tokens_in, span.tokens_out) == (97, 18)
    assert span.session_id == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert span.finish_reasons == ["tool_calls"]
    assert span.input_messages == [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
    assert span.input_text == "Weather in Paris?"
    (message,) = span.output_messages
    assert message["finish_reason"] == "tool_calls"
    (call,) = tool_calls(message)
    assert (call["name"], call["arguments"]) == ("get_weather", {"location": "Paris"})
    assert span.cost_usd == pytest.approx((97 * GPT_4O[0] + 18 * GPT_4O[1]) / 1e6)


# --- kinds, aliases, providers ------------------------------------------------------------


@pytest.mark.parametrize(
    "attributes,name,kind",
    [
        ({"openinference.span.kind": "LLM"}, "x", "llm"),
        ({"openinference.span.kind": "EMBEDDING"}, "x", "embedding"),
        ({"openinference.span.kind": "RETRIEVER"}, "x", "retrieval"),
        ({"openinference.span.kind": "RERANKER"}, "x", "retrieval"),
        ({"openinference.span.kind": "TOOL"}, "x", "tool"),
        ({"openinference.span.kind": "AGENT"}, "x", "agent"),
        ({"openinference.span.kind": "GUARDRAIL"}, "x", "guardrail"),
        ({"openinference.span.kind": "CHAIN"}, "x", "chain"),
        ({"openinference.span.kind": "PROMPT"}, "x", "chain"),
        ({"openinference.span.kind": "EVALUATOR"}, "x", "evaluator"),
        ({"openinference.span.kind": "LLM", "gen_ai.operation.name": "execute_tool"}, "x", "llm"),
        ({"gen_ai.operation.name": "chat"}, "x", "llm"),
        ({"gen_ai.operation.name": "text_completion"}, "x", "llm"),
        ({"gen_ai.operation.name": "generate_content"}, "x", "llm"),
        ({"gen_ai.operation.name": "embeddings"}, "x", "embedding"),
        ({"gen_ai.operation.name": "retrieval"}, "x", "retrieval"),
        ({"gen_ai.operation.name": "search_memory"}, "x", "retrieval"),
        ({"gen_ai.operation.name": "execute_tool"}, "x", "tool"),
        ({"gen_ai.operation.name": "invoke_agent"}, "x", "agent"),
        ({"gen_ai.operation.name": "create_agent"}, "x", "agent"),
        ({"gen_ai.operation.name": "apply_guardrail"}, "x", "guardrail"),
        ({"gen_ai.operation.name": "invoke_workflow"}, "x", "chain"),
        ({"gen_ai.operation.name": "plan"}, "x", "chain"),
        ({"gen_ai.operation.name": "create_memory"}, "x", "other"),
        ({"gen_ai.operation.name": "vector_db_retrieve"}, "x", "retrieval"),
        ({"gen_ai.operation.name": "guardrail.run"}, "x", "guardrail"),
        ({"gen_ai.operation.name": "execute_task"}, "x", "chain"),
        ({"traceloop.span.kind": "workflow"}, "x", "chain"),
        ({"traceloop.span.kind": "task"}, "x", "chain"),
        ({"traceloop.span.kind": "agent"}, "x", "agent"),
        ({"traceloop.span.kind": "tool"}, "x", "tool"),
        ({"traceloop.span.kind": "unknown"}, "x", "other"),
        ({"llm.request.type": "chat"}, "x", "llm"),
        ({"llm.request.type": "completion"}, "x", "llm"),
        ({"llm.request.type": "embedding"}, "x", "embedding"),
        ({"llm.request.type": "rerank"}, "x", "retrieval"),
        ({"db.system": "chroma"}, "chroma.query", "retrieval"),
        ({}, "chat gpt-4o", "llm"),
        ({}, "execute_tool lookup", "tool"),
        ({}, "plan.workflow", "chain"),
        ({}, "fetch.task", "chain"),
        ({}, "openai.chat", "llm"),
        ({}, "anthropic.chat", "llm"),
        ({}, "openai.embeddings", "embedding"),
        ({}, "GET /health", "other"),
    ],
)
def test_kind_mapping(attributes: dict[str, Any], name: str, kind: str) -> None:
    assert normalize(raw_span(attributes, name=name), content=False).kind == kind


def test_unknown_convention_when_no_marker() -> None:
    assert normalize(raw_span({}, name="chat gpt-4o")).convention == ["unknown"]


@pytest.mark.parametrize(
    "value,provider",
    [
        ("openai", "openai"),
        ("Anthropic", "anthropic"),
        ("az.ai.openai", "azure.ai.openai"),
        ("MistralAI", "mistral_ai"),
        ("mistralai", "mistral_ai"),
        ("xai", "x_ai"),
        ("vertexai", "gcp.vertex_ai"),
        ("AWS", "aws.bedrock"),
        ("amazon", "aws.bedrock"),
        ("aws.bedrock", "aws.bedrock"),
        ("cohere", "cohere"),
    ],
)
def test_provider_synonyms(value: str, provider: str) -> None:
    assert normalize(raw_span({"gen_ai.system": value}), content=False).provider == provider


def test_alias_priority_newest_first() -> None:
    span = normalize(raw_span({
        "gen_ai.provider.name": "anthropic", "gen_ai.system": "openai", "llm.system": "cohere",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.prompt_tokens": 99, "llm.token_count.prompt": 98,
        "gen_ai.usage.output_tokens": "7", "gen_ai.usage.completion_tokens": 99,
        "gen_ai.usage.cache_write.input_tokens": 3, "gen_ai.usage.cache_creation.input_tokens": 99,
        "gen_ai.usage.cache_read_input_tokens": 4,
        "gen_ai.usage.reasoning.output_tokens": 2, "gen_ai.usage.reasoning_tokens": 99,
        "gen_ai.conversation.id": "conv", "session.id": "sess",
        "traceloop.association.properties.session_id": "tl",
        "enduser.id": "end", "traceloop.association.properties.user_id": "tl-user",
        "gen_ai.agent.name": "A", "agent.name": "B", "gen_ai.agent.id": "agent-1", "gen_ai.agent.version": "9",
    }))
    assert span.provider == "anthropic"
    assert (span.tokens_in, span.tokens_out) == (10, 7)
    assert (span.tokens_cache_write, span.tokens_cache_read, span.tokens_reasoning) == (3, 4, 2)
    assert (span.session_id, span.user_id) == ("conv", "end")
    assert (span.agent_name, span.agent_id, span.agent_version) == ("A", "agent-1", "9")


def test_legacy_aliases_alone() -> None:
    span = normalize(raw_span({
        "gen_ai.usage.cache_creation.input_tokens": 5,
        "llm.token_count.completion_details.reasoning": 6,
        "session.id": "sess", "traceloop.association.properties.user_id": "u",
        "llm.finish_reason": "stop",
    }))
    assert (span.tokens_cache_write, span.tokens_reasoning) == (5, 6)
    assert (span.session_id, span.user_id, span.finish_reasons) == ("sess", "u", ["stop"])


def test_traceloop_agent_and_tool_names_come_from_the_entity() -> None:
    agent = normalize(raw_span({"traceloop.span.kind": "agent", "traceloop.entity.name": "planner"}, name="x"))
    tool = normalize(raw_span({"traceloop.span.kind": "tool", "traceloop.entity.name": "search"}, name="x"))
    task = normalize(raw_span({"traceloop.span.kind": "task", "traceloop.entity.name": "step"}, name="x"))
    assert agent.agent_name == "planner" and tool.tool_name == "search"
    assert task.agent_name is None and task.tool_name is None


@pytest.mark.parametrize(
    "attributes,intent",
    [
        ({"agentwatch.intent": "refund", "intent": "other"}, "refund"),
        ({"app.intent": "billing"}, "billing"),
        ({"traceloop.association.properties.intent": "cancel"}, "cancel"),
        ({}, None),
    ],
)
def test_intent_default_attributes(attributes: dict[str, Any], intent: str | None) -> None:
    assert normalize(raw_span(attributes), content=False).intent == intent


def test_intent_custom_attributes() -> None:
    options = NormalizeOptions(intent_attributes=("my.intent",))
    span = raw_span({"intent": "ignored", "traceloop.association.properties.my.intent": "custom"})
    assert normalize(span, options).intent == "custom"
    assert normalize(span).intent == "ignored"


# --- success and errors -------------------------------------------------------------------


def test_exception_event_fills_error_fields_of_a_failed_span() -> None:
    events = [
        {"name": "exception", "time_ns": 1, "attributes": {"exception.type": "First", "exception.message": "one"}},
        {"name": "log", "time_ns": 2, "attributes": {}},
        {"name": "exception", "time_ns": 3, "attributes": {"exception.type": "ValueError", "exception.message": "bad amount"}},
    ]
    span = normalize(raw_span({"openinference.span.kind": "TOOL"}, status_code=2, events=events))
    assert span.success is False
    assert (span.error_type, span.error_message) == ("ValueError", "bad amount")


def test_status_message_and_error_type_win_over_the_exception_event() -> None:
    events = [{"name": "exception", "time_ns": 1, "attributes": {"exception.type": "E", "exception.message": "m"}}]
    span = normalize(raw_span({"error.type": "rate_limit"}, status_code=2, status_message="429", events=events))
    assert (span.error_type, span.error_message) == ("rate_limit", "429")


def test_exception_event_on_a_successful_span_is_not_an_error() -> None:
    events = [{"name": "exception", "time_ns": 1, "attributes": {"exception.type": "Retry"}}]
    span = normalize(raw_span({}, status_code=1, events=events))
    assert span.success is True and span.error_type is None


@pytest.mark.parametrize(
    "attributes,status_code,success",
    [
        ({}, 0, True),
        ({}, 1, True),
        ({}, 2, False),
        ({"error.type": "_OTHER"}, 0, False),
        ({"gen_ai.task.status": "failure"}, 0, False),
        ({"gen_ai.task.status": "success"}, 0, True),
    ],
)
def test_success_rule(attributes: dict[str, Any], status_code: int, success: bool) -> None:
    assert normalize(raw_span(attributes, status_code=status_code), content=False).success is success


# --- content --------------------------------------------------------------------------------


def test_openinference_indices_sort_numerically_with_contents_and_tool_results() -> None:
    attributes: dict[str, Any] = {"openinference.span.kind": "LLM"}
    for i in range(12):
        attributes[f"llm.input_messages.{i}.message.role"] = "user" if i % 2 else "assistant"
        attributes[f"llm.input_messages.{i}.message.content"] = f"m{i}"
    attributes["llm.input_messages.12.message.role"] = "tool"
    attributes["llm.input_messages.12.message.tool_call_id"] = "call_1"
    attributes["llm.input_messages.12.message.content"] = "57F"
    attributes["llm.input_messages.13.message.role"] = "user"
    attributes["llm.input_messages.13.message.contents.10.message_content.type"] = "text"
    attributes["llm.input_messages.13.message.contents.10.message_content.text"] = "second"
    attributes["llm.input_messages.13.message.contents.2.message_content.type"] = "text"
    attributes["llm.input_messages.13.message.contents.2.message_content.text"] = "first"
    attributes["llm.input_messages.13.message.contents.3.message_content.type"] = "image"
    attributes["llm.input_messages.13.message.contents.3.message_content.image.image.url"] = "https://x/y.png"
    span = normalize(raw_span(attributes))
    texts = [m["parts"][0].get("content") for m in span.input_messages[:12]]
    assert texts == [f"m{i}" for i in range(12)]
    assert span.input_messages[12] == {
        "role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "57F"}]
    }
    last = span.input_messages[13]["parts"]
    assert [p["type"] for p in last] == ["text", "uri", "text"]
    assert span.input_text == "first\nsecond"


def test_structured_messages_with_result_alias_unknown_parts_and_string_arguments() -> None:
    messages = [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}, {"type": "hologram", "payload": 1}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": '{"a": 1}'}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "result": {"ok": True}}]},
    ]
    original = copy.deepcopy(messages)
    span = normalize(raw_span({"gen_ai.operation.name": "chat", "gen_ai.input.messages": messages}))
    assert span.input_messages[0]["parts"][1] == {"type": "hologram", "payload": 1}
    assert span.input_messages[1]["parts"][0]["arguments"] == {"a": 1}
    assert span.input_messages[2]["parts"][0] == {"type": "tool_call_response", "id": "c1", "response": {"ok": True}}
    assert span.input_text == "hi"
    assert messages == original, "raw attribute values must not be mutated"


def test_unparseable_message_json_is_kept_as_text() -> None:
    span = normalize(raw_span({"gen_ai.output.messages": "not json [", "gen_ai.system_instructions": "Be brief."}))
    assert span.output_messages == [{"role": "assistant", "parts": [{"type": "text", "content": "not json ["}]}]
    assert span.output_text == "not json ["
    assert span.system_instructions == [{"type": "text", "content": "Be brief."}]


def test_deprecated_per_message_span_events_become_messages() -> None:
    events = [
        {"name": "gen_ai.system.message", "time_ns": 1, "attributes": {"gen_ai.system": "openai", "content": "sys"}},
        {"name": "gen_ai.user.message", "time_ns": 2, "attributes": {"content": "Weather in Paris?"}},
        {
            "name": "gen_ai.choice", "time_ns": 3,
            "attributes": {"body": json.dumps({"index": 0, "finish_reason": "stop", "message": {"content": "Rainy."}})},
        },
    ]
    span = normalize(raw_span({"gen_ai.operation.name": "chat"}, events=events))
    assert [m["role"] for m in span.input_messages] == ["system", "user"]
    assert span.input_text == "Weather in Paris?"
    assert span.output_messages == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Rainy."}], "finish_reason": "stop"}
    ]
    assert span.output_text == "Rainy."


def test_traceloop_tool_keeps_args_and_kwargs_when_args_present() -> None:
    span = normalize(raw_span({
        "traceloop.span.kind": "tool", "traceloop.entity.name": "f",
        "traceloop.entity.input": '{"args": [1], "kwargs": {"b": 2}}', "traceloop.entity.output": "plain",
    }))
    assert span.tool_args == {"args": [1], "kwargs": {"b": 2}}
    assert span.tool_result == "plain"


def test_tool_payloads_only_from_tool_spans_for_generic_values() -> None:
    span = normalize(raw_span({"openinference.span.kind": "CHAIN", "input.value": '{"a": 1}', "output.value": "done"}))
    assert span.tool_args is None and span.tool_result is None
    assert span.input_text == '{"a": 1}' and span.output_text == "done"


def test_retrieved_documents_from_every_encoding() -> None:
    genai = normalize(raw_span({
        "gen_ai.operation.name": "retrieval", "gen_ai.retrieval.query.text": "paris weather",
        "gen_ai.retrieval.documents": '[{"id": "doc1", "score": 0.9}, {"id": "doc2", "score": 0.5, "source": "kb"}]',
    }))
    assert genai.retrieved_documents == [
        {"id": "doc1", "score": 0.9, "content": None, "metadata": None},
        {"id": "doc2", "score": 0.5, "content": None, "metadata": None, "source": "kb"},
    ]
    assert genai.input_text == "paris weather"
    oi = normalize(raw_span({
        "openinference.span.kind": "RETRIEVER",
        "retrieval.documents.1.document.id": "b", "retrieval.documents.1.document.content": "B text",
        "retrieval.documents.0.document.id": "a", "retrieval.documents.0.document.score": 0.7,
        "retrieval.documents.0.document.metadata": '{"page": 3}',
    }))
    assert oi.retrieved_documents == [
        {"id": "a", "score": 0.7, "content": None, "metadata": {"page": 3}},
        {"id": "b", "score": None, "content": "B text", "metadata": None},
    ]
    reranker = normalize(raw_span({
        "openinference.span.kind": "RERANKER",
        "reranker.input_documents.0.document.id": "in",
        "reranker.output_documents.0.document.id": "out", "reranker.output_documents.0.document.score": "0.8",
    }))
    assert [(d["id"], d["score"]) for d in reranker.retrieved_documents] == [("out", 0.8)]


def test_openinference_evaluations() -> None:
    span = normalize(raw_span({
        "openinference.span.kind": "LLM",
        "evaluations.0.evaluation.name": "relevance", "evaluations.0.evaluation.score": 0.5,
        "evaluations.0.evaluation.label": "relevant", "evaluations.0.evaluation.explanation": "on topic",
        "evaluations.1.evaluation.name": "toxicity", "evaluations.1.evaluation.label": "clean",
    }))
    assert span.evaluations == [
        {"name": "relevance", "score": 0.5, "label": "relevant", "explanation": "on topic", "source": "span"},
        {"name": "toxicity", "score": None, "label": "clean", "explanation": None, "source": "span"},
    ]


def test_content_false_leaves_content_empty_but_columns_filled() -> None:
    attributes = openinference_chat() | {"evaluations.0.evaluation.name": "x", "llm.cost.total": 0.5}
    span = normalize(raw_span(attributes), content=False)
    for name in CONTENT:
        assert getattr(span, name) in (None, []), name
    assert (span.kind, span.tokens_in, span.model_requested, span.session_id) == ("llm", 97, "gpt-4o", "conv_5j66UpCpwteGg4YSxUnt7lPY")
    assert (span.cost_usd, span.cost_source) == (0.5, "reported")
    assert span.raw_attributes is attributes


# --- log records --------------------------------------------------------------------------


def test_evaluation_result_log_record() -> None:
    span = normalize(raw_span({"gen_ai.operation.name": "chat"}))
    attach_log_records(span, [log_record("gen_ai.evaluation.result", {
        "gen_ai.evaluation.name": "Relevance", "gen_ai.evaluation.score.value": 0.85,
        "gen_ai.evaluation.score.label": "relevant", "gen_ai.evaluation.explanation": "ok",
        "gen_ai.response.id": "chatcmpl-123",
    })])
    assert span.evaluations == [{
        "name": "Relevance", "score": 0.85, "label": "relevant", "explanation": "ok",
        "source": "event", "response_id": "chatcmpl-123", "error_type": None,
    }]


def test_operation_exception_log_record() -> None:
    span = normalize(raw_span({"gen_ai.operation.name": "chat"}))
    attach_log_records(span, [log_record("gen_ai.client.operation.exception", {
        "exception.type": "openai.RateLimitError", "exception.message": "slow down",
    })])
    assert span.success is False
    assert (span.error_type, span.error_message) == ("openai.RateLimitError", "slow down")


def test_operation_details_fill_only_missing_messages() -> None:
    span = normalize(raw_span({"gen_ai.operation.name": "chat", "gen_ai.input.messages": INPUT}))
    attach_log_records(span, [log_record("gen_ai.client.inference.operation.details", {
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "from the event"}]}],
        "gen_ai.output.messages": json.loads(OUTPUT),
        "gen_ai.system_instructions": [{"type": "text", "content": "sys"}],
    })])
    assert span.input_text == "Weather in Paris?"
    assert tool_calls(span.output_messages[0])[0]["name"] == "get_weather"
    assert span.system_instructions == [{"type": "text", "content": "sys"}]


def test_legacy_log_events_build_messages_in_record_order() -> None:
    span = normalize(raw_span({"gen_ai.operation.name": "chat"}), content=False)
    attach_log_records(span, [
        log_record("gen_ai.system.message", {"gen_ai.system": "openai"}, {"content": "sys"}),
        log_record("gen_ai.user.message", {}, {"content": "refund please"}),
        log_record("gen_ai.assistant.message", {}, {"tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "refund_api", "arguments": '{"amount": 1}'}}
        ]}),
        log_record("gen_ai.tool.message", {}, {"content": "done", "id": "c1"}),
        log_record("gen_ai.choice", {}, {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Refunded."}}),
        log_record("unrelated.event", {}, {"content": "ignored"}),
    ])
    assert [m["role"] for m in span.input_messages] == ["system", "user", "assistant", "tool"]
    assert span.input_messages[2]["parts"] == [{"type": "tool_call", "id": "c1", "name": "refund_api", "arguments": {"amount": 1}}]
    assert span.input_messages[3]["parts"] == [{"type": "tool_call_response", "id": "c1", "response": "done"}]
    assert span.input_text == "refund please"
    assert span.output_text == "Refunded."
    assert span.output_messages[0]["finish_reason"] == "stop"


# --- pricing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model,rates",
    [
        ("gpt-4o-mini-2024-07-18", (0.15, 0.60)),
        ("gpt-4o-mini", (0.15, 0.60)),
        ("gpt-4o-2024-08-06", (2.50, 10.00)),
        ("gpt-4o-2024-05-13", (5.00, 15.00)),
        ("GPT-4o", (2.50, 10.00)),
        ("gpt-4.1-mini-2025-04-14", (0.40, 1.60)),
        ("gpt-4.1-nano", (0.10, 0.40)),
        ("gpt-4.1-2025-04-14", (2.00, 8.00)),
        ("claude-3-5-sonnet-20241022", (3.00, 15.00)),
        ("claude-3-5-haiku-latest", (0.80, 4.00)),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", (3.00, 15.00)),
        ("openai/gpt-4o-mini", (0.15, 0.60)),
        ("text-embedding-3-small", (0.02, 0.0)),
    ],
)
def test_price_prefix_matching(model: str, rates: tuple[float, float]) -> None:
    price = PriceTable.builtin().lookup(model)
    assert price is not None and (price.input, price.output) == rates


@pytest.mark.parametrize("model", ["gpt-4ox", "llama-3-70b", "", None, "gpt"])
def test_unknown_models_have_no_price(model: str | None) -> None:
    assert PriceTable.builtin().lookup(model) is None


def test_cost_prices_cache_reads_and_writes_inside_the_input_count() -> None:
    price = ModelPrice(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    assert price.cost(1000, 100, 600, 200) == pytest.approx((200 * 3.0 + 600 * 0.3 + 200 * 3.75 + 100 * 15.0) / 1e6)
    no_cache_rate = ModelPrice(input=1.0, output=2.0)
    assert no_cache_rate.cost(1000, 10, 500) == pytest.approx((1000 * 1.0 + 10 * 2.0) / 1e6)


def test_overrides_add_replace_and_merge() -> None:
    table = PriceTable.builtin().with_overrides({
        "my-model": {"input": 1, "output": 2, "cache_read": 0.5},
        "gpt-4o-mini": {"input": 0.2},
        "azure.ai.openai/gpt-4o": {"input": 9, "output": 9},
    })
    assert table.lookup("my-model-v2") == ModelPrice(1.0, 2.0, cache_read=0.5)
    assert table.lookup("gpt-4o-mini-2024-07-18") == ModelPrice(0.2, 0.60, cache_read=0.075)
    assert table.lookup("gpt-4o", "azure.ai.openai").input == 9
    assert table.lookup("gpt-4o", "openai").input == 2.50
    assert PriceTable.builtin().lookup("gpt-4o-mini").input == 0.15, "overrides make a new table"


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"new-model": {"input": 1}}, "needs output"),
        ({"gpt-4o": {"input": -1}}, "non-negative"),
        ({"gpt-4o": {"input": "cheap"}}, "non-negative"),
        ({"gpt-4o": {"inptu": 1}}, "unknown rate"),
        ({"gpt-4o": 3}, "expected a mapping"),
    ],
)
def test_bad_overrides_raise_config_error(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        PriceTable.builtin().with_overrides(overrides)


def test_cost_rules_by_kind_and_source() -> None:
    usage = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 1000}
    llm = normalize(raw_span({"gen_ai.operation.name": "chat"} | usage), content=False)
    assert llm.cost_usd == pytest.approx((1000 * 0.15 + 1000 * 0.60) / 1e6) and llm.cost_source == "computed"
    agent = normalize(raw_span({"gen_ai.operation.name": "invoke_agent"} | usage), content=False)
    assert (agent.tokens_in, agent.cost_usd, agent.cost_source) == (1000, None, None)
    reported = normalize(raw_span({"gen_ai.operation.name": "invoke_agent", "llm.cost.total": "0.25"}), content=False)
    assert (reported.cost_usd, reported.cost_source) == (0.25, "reported")
    embedding = normalize(raw_span({
        "gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.usage.input_tokens": 1_000_000,
    }), content=False)
    assert embedding.cost_usd == pytest.approx(0.02)
    unknown = normalize(raw_span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "mystery",
                                  "gen_ai.usage.input_tokens": 5}), content=False)
    assert unknown.cost_usd is None and unknown.cost_source is None
    fetch = normalize(raw_span({"gen_ai.operation.name": "fetch_response"} | usage), content=False)
    assert fetch.kind == "llm" and fetch.tokens_in is None and fetch.cost_usd is None


def test_custom_price_table_in_options() -> None:
    options = NormalizeOptions(prices=PriceTable.builtin().with_overrides({"mystery": {"input": 1, "output": 1}}))
    span = raw_span({"gen_ai.operation.name": "chat", "gen_ai.response.model": "mystery-1",
                     "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10})
    assert normalize(span, options).cost_usd == pytest.approx(20 / 1e6)
    assert normalize(span, DEFAULT_OPTIONS).cost_usd is None
