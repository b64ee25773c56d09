"""OTLP decoding: the conformance captures, id validation, garbage bodies."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agentwatch.errors import (
    AgentwatchError,
    BadRequest,
    ConfigError,
    DecodeError,
    Forbidden,
    IngestError,
    MigrationError,
    NotFound,
    StoreError,
    Unauthorized,
)
from agentwatch.ingest.decode import (
    decode_logs,
    decode_traces,
    logs_from_message,
    resource_key,
    traces_from_message,
)
from agentwatch.normalize.attributes import any_value, attributes_to_dict

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "otlp-captures"
RUNS = ["otel-genai", "otel-genai-events", "otel-genai-grpc", "otel-genai-legacy", "openinference", "openllmetry"]
LOG_RUNS = {"otel-genai-events": 3, "otel-genai-legacy": 15}
ENCODINGS = [("protobuf", ".pb"), ("json", ".otlp.json")]

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_A = "eee19b7ec3c1b173"
SPAN_B = "eee19b7ec3c1b174"


def capture(run: str, signal: str, suffix: str) -> bytes:
    number = "0001" if signal == "traces" else "0002"
    return (CAPTURES / run / f"{number}-{signal}{suffix}").read_bytes()


def span_json(span_id: str = SPAN_A, trace_id: str = TRACE_ID, **extra: Any) -> dict[str, Any]:
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225601000000000",
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}],
    }
    span.update(extra)
    return span


def traces_json(*spans: dict[str, Any]) -> bytes:
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
            }
        ]
    }
    return json.dumps(doc).encode()


# --- conformance captures -------------------------------------------------------------


@pytest.mark.parametrize("content_type,suffix", ENCODINGS)
@pytest.mark.parametrize("run", RUNS)
def test_capture_decodes_to_one_tree_of_five_spans(run: str, content_type: str, suffix: str) -> None:
    decoded = decode_traces(capture(run, "traces", suffix), content_type)
    assert decoded.rejected_spans == 0
    assert decoded.errors == []
    spans = decoded.spans
    assert len(spans) == 5
    assert len({s.trace_id for s in spans}) == 1
    for span in spans:
        assert len(span.trace_id) == 32 and span.trace_id == span.trace_id.lower()
        assert len(span.span_id) == 16 and span.span_id == span.span_id.lower()
        int(span.trace_id, 16)
        assert span.start_ns > 0 and span.end_ns >= span.start_ns
    roots = [s for s in spans if s.parent_span_id is None]
    assert len(roots) == 1
    children = [s for s in spans if s.parent_span_id == roots[0].span_id]
    assert len(children) == 4
    assert spans[-1] is roots[0], "the README says the batch lists children first, root last"
    resource = spans[0].resource
    assert resource.service_name == "support-agent"
    assert resource.service_version == "0.0.1"
    assert resource.attributes["deployment.environment.name"] == "conformance"
    assert all(s.resource is resource for s in spans)


@pytest.mark.parametrize("run", RUNS)
def test_capture_json_and_protobuf_decode_identically(run: str) -> None:
    from_pb = decode_traces(capture(run, "traces", ".pb"), "protobuf").spans
    from_json = decode_traces(capture(run, "traces", ".otlp.json"), "json").spans
    assert from_pb == from_json


@pytest.mark.parametrize("run", RUNS)
def test_traces_from_message_matches_decode(run: str) -> None:
    message = json_format.Parse(capture(run, "traces", ".json").decode(), ExportTraceServiceRequest())
    assert traces_from_message(message).spans == decode_traces(capture(run, "traces", ".pb"), "protobuf").spans


@pytest.mark.parametrize("run", RUNS)
def test_capture_resource_key_is_hash_of_canonical_attributes(run: str) -> None:
    resource = decode_traces(capture(run, "traces", ".pb"), "protobuf").spans[0].resource
    canonical = json.dumps(resource.attributes, sort_keys=True, separators=(",", ":"))
    assert resource.key == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert resource.attributes["conformance.instrumentation"] in run


def test_capture_attribute_types_survive() -> None:
    spans = decode_traces(capture("otel-genai", "traces", ".pb"), "protobuf").spans
    chat = next(s for s in spans if s.attributes.get("gen_ai.response.id") == "chatcmpl-stub0001")
    assert chat.attributes["gen_ai.usage.input_tokens"] == 39
    assert isinstance(chat.attributes["gen_ai.usage.input_tokens"], int)
    assert chat.attributes["gen_ai.request.temperature"] == 0.0
    assert isinstance(chat.attributes["gen_ai.request.temperature"], float)
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert chat.span_kind == 3
    assert chat.scope_name == "opentelemetry.util.genai.handler"
    assert chat.scope_version == "1.1b0"


def test_capture_openllmetry_streamed_chat_keeps_its_events() -> None:
    spans = decode_traces(capture("openllmetry", "traces", ".pb"), "protobuf").spans
    streamed = next(s for s in spans if s.attributes.get("gen_ai.is_streaming") is True)
    assert len(streamed.events) == 24
    assert {e["name"] for e in streamed.events} == {"gen_ai.content.completion.chunk"}
    assert all(e["time_ns"] > 0 and e["attributes"] == {} for e in streamed.events)
    assert streamed.status_code == 1


@pytest.mark.parametrize("content_type,suffix", ENCODINGS)
@pytest.mark.parametrize("run", sorted(LOG_RUNS))
def test_capture_logs_decode_and_name_chat_spans(run: str, content_type: str, suffix: str) -> None:
    logs = decode_logs(capture(run, "logs", suffix), content_type)
    assert logs.rejected_log_records == 0
    assert len(logs.records) == LOG_RUNS[run]
    spans = decode_traces(capture(run, "traces", suffix), content_type).spans
    chat_ids = {s.span_id for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"}
    assert {r.span_id for r in logs.records} == chat_ids
    assert {r.trace_id for r in logs.records} == {spans[0].trace_id}
    for record in logs.records:
        assert record.event_name.startswith("gen_ai.")
        assert record.time_ns > 0, "no time_unix_nano: must fall back to observed_time_unix_nano"
        assert record.resource.service_name == "support-agent"


def test_capture_legacy_log_bodies_are_plain_values() -> None:
    records = decode_logs(capture("otel-genai-legacy", "logs", ".pb"), "protobuf").records
    names = [r.event_name for r in records]
    assert names.count("gen_ai.choice") == 3
    choice = next(r for r in records if r.event_name == "gen_ai.choice")
    assert choice.body["index"] == 0
    assert choice.body["finish_reason"] == "tool_calls"
    call = choice.body["message"]["tool_calls"][0]
    assert call["function"]["name"] == "refund_api"
    assert json.loads(call["function"]["arguments"]) == {"order_id": "A-1001", "amount": 42.5}
    assert choice.attributes == {"gen_ai.system": "openai"}


def test_capture_details_log_has_structured_messages_and_no_body() -> None:
    records = decode_logs(capture("otel-genai-events", "logs", ".otlp.json"), "json").records
    first = records[0]
    assert first.event_name == "gen_ai.client.inference.operation.details"
    assert first.body is None
    messages = first.attributes["gen_ai.input.messages"]
    assert isinstance(messages, list) and messages[0]["role"] == "system"
    assert messages[0]["parts"][0]["type"] == "text"


@pytest.mark.parametrize("run", sorted(LOG_RUNS))
def test_logs_from_message_matches_decode(run: str) -> None:
    message = json_format.Parse(capture(run, "logs", ".json").decode(), ExportLogsServiceRequest())
    assert logs_from_message(message).records == decode_logs(capture(run, "logs", ".pb"), "protobuf").records


# --- AnyValue conversion ---------------------------------------------------------------


def test_any_value_converts_every_type() -> None:
    value = AnyValue()
    value.kvlist_value.values.add(key="s", value=AnyValue(string_value="x"))
    value.kvlist_value.values.add(key="b", value=AnyValue(bool_value=False))
    value.kvlist_value.values.add(key="i", value=AnyValue(int_value=-(2**62)))
    value.kvlist_value.values.add(key="d", value=AnyValue(double_value=1.5))
    value.kvlist_value.values.add(key="raw", value=AnyValue(bytes_value=b"\x00\xffab"))
    value.kvlist_value.values.add(key="unset", value=AnyValue())
    array = value.kvlist_value.values.add(key="a").value.array_value
    array.values.add(int_value=1)
    array.values.add().array_value.values.add(string_value="nested")
    assert any_value(value) == {
        "s": "x",
        "b": False,
        "i": -(2**62),
        "d": 1.5,
        "raw": base64.b64encode(b"\x00\xffab").decode(),
        "unset": None,
        "a": [1, ["nested"]],
    }


def test_attributes_to_dict_last_duplicate_wins_and_empty_array() -> None:
    kvs = [
        KeyValue(key="k", value=AnyValue(string_value="first")),
        KeyValue(key="k", value=AnyValue(string_value="second")),
        KeyValue(key="empty", value=AnyValue(array_value={})),
    ]
    assert attributes_to_dict(kvs) == {"k": "second", "empty": []}


# --- OTLP/JSON specifics ---------------------------------------------------------------


def test_json_ids_are_case_insensitive_and_lowercased() -> None:
    body = traces_json(span_json(trace_id=TRACE_ID.upper(), span_id=SPAN_A.upper(), parentSpanId=SPAN_B.upper()))
    (span,) = decode_traces(body, "json").spans
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_ID, SPAN_A, SPAN_B)


def test_json_int64_as_number_or_string_enums_as_ints_unknown_fields_ignored() -> None:
    span = span_json(
        startTimeUnixNano=1767225600000000000,
        status={"code": 2, "message": "boom", "futureField": 1},
        someNewField={"x": 1},
        attributes=[
            {"key": "a", "value": {"intValue": "97"}},
            {"key": "b", "value": {"intValue": 98}},
            {"key": "c", "value": {"bytesValue": base64.b64encode(b"hi").decode()}},
            {"key": "d", "value": {"kvlistValue": {"values": [{"key": "x", "value": {"doubleValue": 2}}]}}},
        ],
    )
    (raw,) = decode_traces(traces_json(span), "json").spans
    assert raw.start_ns == 1767225600000000000
    assert raw.status_code == 2 and raw.status_message == "boom"
    assert raw.attributes == {"a": 97, "b": 98, "c": base64.b64encode(b"hi").decode(), "d": {"x": 2.0}}


def test_json_links_ids_are_rewritten() -> None:
    span = span_json(links=[{"traceId": TRACE_ID, "spanId": SPAN_B, "attributes": []}])
    (raw,) = decode_traces(traces_json(span), "json").spans
    assert raw.links == [{"trace_id": TRACE_ID, "span_id": SPAN_B, "attributes": {}}]


def test_json_log_ids_are_rewritten_and_event_name_falls_back_to_attribute() -> None:
    doc = {
        "resourceLogs": [
            {
                "resource": {},
                "scopeLogs": [
                    {
                        "scope": {"name": "s"},
                        "logRecords": [
                            {
                                "traceId": TRACE_ID,
                                "spanId": SPAN_A,
                                "timeUnixNano": "5",
                                "observedTimeUnixNano": "9",
                                "attributes": [{"key": "event.name", "value": {"stringValue": "gen_ai.evaluation.result"}}],
                                "body": {"stringValue": "hello"},
                            },
                            {"traceId": TRACE_ID, "observedTimeUnixNano": "9", "eventName": "orphan"},
                        ],
                    }
                ],
            }
        ]
    }
    logs = decode_logs(json.dumps(doc).encode(), "json")
    (record,) = logs.records
    assert record.event_name == "gen_ai.evaluation.result"
    assert record.time_ns == 5
    assert record.body == "hello"
    assert record.span_id == SPAN_A and record.scope_name == "s"
    assert logs.rejected_log_records == 1
    assert "log record 1 of resourceLogs[0].scopeLogs[0]" in logs.errors[0]
    assert "span_id must be 8 bytes, got 0" in logs.errors[0]


# --- span validation -------------------------------------------------------------------


def test_invalid_spans_are_rejected_and_the_others_kept() -> None:
    body = traces_json(
        span_json(span_id=SPAN_A),
        span_json(span_id=SPAN_B, trace_id=""),
        span_json(span_id="0000000000000000"),
        span_json(span_id="1111111111111111", parentSpanId="abcdef"),
        span_json(span_id="2222222222222222", startTimeUnixNano="0"),
        span_json(span_id="not-hex-at-all!!"),
        span_json(span_id="3333333333333333", trace_id="00000000000000000000000000000000"),
        span_json(span_id="4444444444444444", parentSpanId="0000000000000000"),
    )
    decoded = decode_traces(body, "json")
    assert [s.span_id for s in decoded.spans] == [SPAN_A, "4444444444444444"]
    assert decoded.spans[1].parent_span_id is None, "an all-zero parent means no parent"
    assert decoded.rejected_spans == 6
    assert len(decoded.errors) == 5
    assert decoded.errors[0] == "span 1 of resourceSpans[0].scopeSpans[0]: trace_id must be 16 bytes, got 0"
    assert "span_id must not be all zero" in decoded.errors[1]
    assert "parent_span_id must be empty or 8 bytes, got 3" in decoded.errors[2]
    assert "start_time_unix_nano must be > 0" in decoded.errors[3]
    assert "span 5 of" in decoded.errors[4] and "span_id must be 8 bytes, got 0" in decoded.errors[4]


def test_invalid_protobuf_spans_are_rejected() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    good = spans.add(trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_A), start_time_unix_nano=1)
    spans.add(trace_id=bytes.fromhex(TRACE_ID)[:15], span_id=bytes.fromhex(SPAN_B), start_time_unix_nano=1)
    decoded = decode_traces(request.SerializeToString(), "protobuf")
    assert [s.span_id for s in decoded.spans] == [good.span_id.hex()]
    assert decoded.rejected_spans == 1
    assert decoded.errors == ["span 1 of resourceSpans[0].scopeSpans[0]: trace_id must be 16 bytes, got 15"]


def test_empty_bodies_are_empty_requests() -> None:
    for content_type in ("protobuf", "json"):
        assert decode_traces(b"", content_type).spans == []
        assert decode_logs(b"", content_type).records == []
    assert decode_traces(b"{}", "json").spans == []
    assert decode_traces(b'{"resourceSpans": []}', "json").rejected_spans == 0


def test_identical_resources_share_one_key_whatever_the_order() -> None:
    def body(order: list[tuple[str, str]]) -> bytes:
        attrs = [{"key": k, "value": {"stringValue": v}} for k, v in order]
        doc = {"resourceSpans": [{"resource": {"attributes": attrs}, "scopeSpans": [{"spans": [span_json()]}]}]}
        return json.dumps(doc).encode()

    one = decode_traces(body([("service.name", "a"), ("x", "1")]), "json").spans[0].resource
    two = decode_traces(body([("x", "1"), ("service.name", "a")]), "json").spans[0].resource
    other = decode_traces(body([("service.name", "b")]), "json").spans[0].resource
    assert one.key == two.key == resource_key({"x": "1", "service.name": "a"})
    assert other.key != one.key
    assert len(one.key) == 16


# --- garbage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,content_type,fragment",
    [
        (b"\x0a\xff\xff\xff\x0f\x01", "protobuf", "not a valid ExportTraceServiceRequest protobuf"),
        (b"\xff\xfe\xfd", "protobuf", "not a valid ExportTraceServiceRequest protobuf"),
        (b"not json", "json", "JSON body does not parse"),
        (b"\xff\xfe{", "json", "JSON body does not parse"),
        (b"[1, 2]", "json", "JSON body must be an object, got list"),
        (b'"text"', "json", "JSON body must be an object, got str"),
        (b'{"resourceSpans": {}}', "json", "resourceSpans must be a list"),
        (b'{"resourceSpans": [3]}', "json", "resourceSpans[0] must be an object"),
        (b'{"resourceSpans": [{"scopeSpans": "x"}]}', "json", "resourceSpans[0].scopeSpans must be a list"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [null]}]}]}', "json", "resourceSpans[0].scopeSpans[0].spans[0] must be an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"links": 5}]}]}]}',
            "json",
            "resourceSpans[0].scopeSpans[0].spans[0].links must be a list",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}',
            "json",
            "not a valid ExportTraceServiceRequest",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "a", "value": {"intValue": "abc"}}]}]}]}]}',
            "json",
            "not a valid ExportTraceServiceRequest",
        ),
        (b"{}", "yaml", "unsupported content type"),
    ],
)
def test_garbage_trace_bodies_raise_decode_error(body: bytes, content_type: str, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_traces(body, content_type)
    assert fragment in str(info.value)


def test_invalid_utf8_in_a_protobuf_string_is_a_decode_error() -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="PLACEHOLDER")
    span.trace_id = bytes.fromhex(TRACE_ID)
    data = request.SerializeToString().replace(b"PLACEHOLDER", b"\xff\xfe\xfdHOLDER\xc3\x28")
    with pytest.raises(DecodeError, match="ExportTraceServiceRequest protobuf"):
        decode_traces(data, "protobuf")


@pytest.mark.parametrize(
    "body,content_type,fragment",
    [
        (b"\x0a\x05\x0a", "protobuf", "not a valid ExportLogsServiceRequest protobuf"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": {}}]}]}', "json", "resourceLogs[0].scopeLogs[0].logRecords must be a list"),
        (b"[]", "json", "must be an object"),
    ],
)
def test_garbage_log_bodies_raise_decode_error(body: bytes, content_type: str, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_logs(body, content_type)
    assert fragment in str(info.value)


# --- error tree -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,parent,status,code",
    [
        (ConfigError, AgentwatchError, 500, "config_error"),
        (IngestError, AgentwatchError, 400, "ingest_error"),
        (DecodeError, IngestError, 400, "decode_error"),
        (StoreError, AgentwatchError, 500, "store_error"),
        (MigrationError, StoreError, 500, "migration_error"),
        (NotFound, AgentwatchError, 404, "not_found"),
        (Forbidden, AgentwatchError, 403, "forbidden"),
        (BadRequest, AgentwatchError, 400, "bad_request"),
        (Unauthorized, AgentwatchError, 401, "unauthorized"),
    ],
)
def test_error_tree(cls: type[AgentwatchError], parent: type[Exception], status: int, code: str) -> None:
    assert issubclass(cls, parent) and issubclass(cls, Exception)
    error = cls("message text")
    assert (error.status, error.code, str(error)) == (status, code, "message text")
