"""Bad, huge and hostile OTLP/HTTP requests, on both engines.

One server per engine serves the whole module. Before any bad request it
accepts one good agent session; every test then checks its own documented
answer and that the server still serves and that session is still listed,
whole. Answers follow OTLP: 400 with a ``google.rpc.Status`` in the
request's encoding for bodies that do not decode, 413 past the size cap
(after decompression), 415 for another content type, 200 with
``partial_success`` when only some spans are invalid.
"""

from __future__ import annotations

import gzip
import json
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import create_engine, text

from agentwatch.testing import ServerProcess, SessionSpec, agent_session_request, make_span, traces_request

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
CAP = 64 * 1024 * 1024  # the default ingest.max_body_bytes


@dataclass
class Served:
    server: ServerProcess
    db_url: str
    client: httpx.Client
    good: SessionSpec

    def post(self, content: object, headers: dict[str, str], path: str = "/v1/traces") -> httpx.Response:
        return self.client.post(self.server.url + path, content=content, headers=headers)  # type: ignore[arg-type]

    def spans_in_db(self, where: str, **params: object) -> set[tuple[str, str]]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return {(r[0], r[1]) for r in conn.execute(text(f"select trace_id, span_id from spans where {where}"),
                                                           params)}
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def served(engine: str, module_db: tuple[str, Path]) -> Iterator[Served]:
    url, tmp = module_db
    with ServerProcess(url, cwd=tmp) as server, httpx.Client(timeout=120) as client:
        good_request, good = agent_session_request(random.Random(7), session_id=f"good-{engine}")
        response = client.post(server.url + "/v1/traces", content=good_request.SerializeToString(),
                               headers=PROTOBUF)
        assert response.status_code == 200, response.text
        yield Served(server, url, client, good)


@pytest.fixture
def srv(served: Served) -> Iterator[Served]:
    """The module's server; after the test, it still serves and the good session is whole."""
    yield served
    assert served.server.proc is not None and served.server.proc.poll() is None, served.server.log()[-3000:]
    base = served.server.url
    assert served.client.get(base + "/readyz").status_code == 200
    detail = served.client.get(f"{base}/api/v1/sessions/{served.good.session_id}")
    assert detail.status_code == 200, detail.text
    session = detail.json()["session"]
    assert session["spans"] == len(served.good.span_ids) == 20
    assert (session["tokens_in"], session["tokens_out"]) == (served.good.tokens_in, served.good.tokens_out)
    listed = served.client.get(base + "/api/v1/sessions", params={"service": "support-agent", "limit": 1000})
    assert served.good.session_id in {s["session_id"] for s in listed.json()["items"]}
    trace = served.client.get(f"{base}/api/v1/traces/{served.good.trace_id}").json()["spans"]
    assert sorted(s["span_id"] for s in trace) == sorted(served.good.span_ids)


def _pb_status(response: httpx.Response) -> status_pb2.Status:
    assert response.headers["content-type"].startswith("application/x-protobuf"), response.headers
    return status_pb2.Status.FromString(response.content)


def _json_status(response: httpx.Response) -> status_pb2.Status:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return json_format.Parse(response.text, status_pb2.Status())


def _good_body(seed: int) -> tuple[bytes, SessionSpec]:
    request, spec = agent_session_request(random.Random(seed))
    return request.SerializeToString(), spec


def _trace_span_ids(srv: Served, trace_id: str) -> set[str]:
    response = srv.client.get(f"{srv.server.url}/api/v1/traces/{trace_id}")
    if response.status_code == 404:
        return set()
    assert response.status_code == 200, response.text
    return {s["span_id"] for s in response.json()["spans"]}


# -- bodies that do not decode -------------------------------------------------


@pytest.mark.parametrize("cut", ["half", "last-bytes"])
def test_truncated_protobuf_is_400_with_status(srv: Served, cut: str) -> None:
    body, spec = _good_body(11)
    truncated = body[: len(body) // 2] if cut == "half" else body[:-7]
    response = srv.post(truncated, PROTOBUF)
    assert response.status_code == 400
    status = _pb_status(response)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in status.message and "protobuf" in status.message
    assert _trace_span_ids(srv, spec.trace_id) == set(), "nothing of a refused body is stored"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[1,2]", "must be an object"),
        (b'{"resourceSpans": 5}', "resourceSpans must be a list"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}', "spans[0] must be an object"),
        (b"this is not JSON", "does not parse"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", '
         b'"spanId": "eee19b7ec3c1b174", "name": "x", "startTimeUnixNano": "soon"}]}]}]}', "ExportTraceServiceRequest"),
        (b"[" * 100_000, "does not parse"),
    ],
    ids=["list", "resourceSpans-int", "span-int", "not-json", "bad-time", "deeply-nested"],
)
def test_json_that_is_not_otlp_is_400_with_json_status(srv: Served, body: bytes, says: str) -> None:
    response = srv.post(body, JSON)
    assert response.status_code == 400, response.text
    status = _json_status(response)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert says in status.message


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_other_content_type_is_415(srv: Served, content_type: str | None) -> None:
    body, spec = _good_body(12)
    headers = {"content-type": content_type} if content_type else {}
    response = srv.post(body, headers)
    assert response.status_code == 415
    assert "not supported" in _json_status(response).message
    assert _trace_span_ids(srv, spec.trace_id) == set()


def test_unknown_content_encoding_is_415(srv: Served) -> None:
    body, spec = _good_body(13)
    response = srv.post(body, {**PROTOBUF, "content-encoding": "br"})
    assert response.status_code == 415
    assert "Content-Encoding" in _pb_status(response).message
    assert _trace_span_ids(srv, spec.trace_id) == set()


@pytest.mark.parametrize("where", ["span name", "attribute value"])
def test_invalid_utf8_in_a_protobuf_string_is_400(srv: Served, where: str) -> None:
    marker = "MARKER-8c1d27"
    span = (make_span("71", "72", name=marker) if where == "span name"
            else make_span("71", "72", attributes={"note": marker}))
    body = traces_request([span]).SerializeToString()
    assert body.count(marker.encode()) == 1
    response = srv.post(body.replace(marker.encode(), b"MARKER\xff\xfe8c1d27"), PROTOBUF)
    assert response.status_code == 400
    assert "UTF-8" in _pb_status(response).message
    assert _trace_span_ids(srv, "71".rjust(32, "0")) == set()


def test_logs_garbage_is_400(srv: Served) -> None:
    response = srv.post(b"\x0a\xff\xff\xff\xff\x0f garbage", PROTOBUF, path="/v1/logs")
    assert response.status_code == 400
    assert "ExportLogsServiceRequest" in _pb_status(response).message
    response = srv.post(b'{"resourceLogs": {"no": "list"}}', JSON, path="/v1/logs")
    assert response.status_code == 400
    assert "resourceLogs must be a list" in _json_status(response).message


# -- ids: partial success ----------------------------------------------------------


def test_invalid_ids_are_rejected_one_by_one_protobuf(srv: Served) -> None:
    trace = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    good = [make_span(trace, "1000000000000001", name="good-root"),
            make_span(trace, "1000000000000002", parent="1000000000000001", name="good-child")]
    short_trace = Span(trace_id=bytes.fromhex(trace)[:15], span_id=bytes.fromhex("2000000000000001"), name="bad",
                       start_time_unix_nano=1_767_225_600_000_000_000, end_time_unix_nano=1_767_225_600_100_000_000)
    zero_span = make_span(trace, "0", name="bad-zero-span-id")
    assert zero_span.span_id == bytes(8)
    response = srv.post(traces_request([good[0], short_trace, zero_span, good[1]]).SerializeToString(), PROTOBUF)
    assert response.status_code == 200, response.content
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.HasField("partial_success")
    assert answer.partial_success.rejected_spans == 2
    assert "trace_id must be 16 bytes, got 15" in answer.partial_success.error_message
    assert "span_id must not be all zero" in answer.partial_success.error_message
    assert _trace_span_ids(srv, trace) == {"1000000000000001", "1000000000000002"}


def test_invalid_ids_are_rejected_one_by_one_json(srv: Served) -> None:
    trace = "b1b2c3d4e5f60718293a4b5c6d7e8f90"

    def span(trace_id: str, span_id: str, name: str) -> dict[str, object]:
        return {"traceId": trace_id, "spanId": span_id, "name": name, "kind": 1,
                "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225600100000000",
                "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}

    document = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [
            span(trace.upper(), "3000000000000001", "good-upper-case-hex"),
            span("zz" + trace[2:], "3000000000000002", "bad-non-hex-trace-id"),
            span(trace, "30000000000000", "bad-seven-byte-span-id"),
            span(trace, "", "bad-empty-span-id"),
            span(trace, "3000000000000005", "good"),
        ]}],
    }]}
    response = srv.post(json.dumps(document).encode(), JSON)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = json_format.Parse(response.text, ExportTraceServiceResponse())
    assert answer.partial_success.rejected_spans == 3
    assert answer.partial_success.error_message
    assert _trace_span_ids(srv, trace) == {"3000000000000001", "3000000000000005"}


def test_times_past_int64_are_rejected_one_by_one(srv: Served) -> None:
    trace = "c1b2c3d4e5f60718293a4b5c6d7e8f90"
    far = make_span(trace, "4000000000000001", name="year-2554")
    far.start_time_unix_nano = far.end_time_unix_nano = 2**64 - 1
    good = make_span(trace, "4000000000000002", name="good")
    response = srv.post(traces_request([far, good]).SerializeToString(), PROTOBUF)
    assert response.status_code == 200, response.content
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert _trace_span_ids(srv, trace) == {"4000000000000002"}


def test_nan_and_nul_in_valid_protobuf_are_stored_on_every_engine(srv: Served) -> None:
    trace = "d1b2c3d4e5f60718293a4b5c6d7e8f90"
    span = make_span(trace, "5000000000000001", name="nul\x00in-name",
                     attributes={"score": float("nan"), "ceiling": float("inf"), "k\x00ey": "v\x00alue",
                                 "fine": 0.5})
    response = srv.post(traces_request([span]).SerializeToString(), PROTOBUF)
    assert response.status_code == 200, response.content
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    spans = srv.client.get(f"{srv.server.url}/api/v1/traces/{trace}").json()["spans"]
    assert len(spans) == 1
    raw = spans[0]["raw_attributes"]
    assert raw["score"] == "NaN" and raw["ceiling"] == "Infinity" and raw["fine"] == 0.5
    assert raw["k\ufffdey"] == "v\ufffdalue"
    assert spans[0]["name"] == "nul\ufffdin-name"


def test_unknown_enum_values_are_kept_as_unspecified(srv: Served) -> None:
    """proto3 enums are open: a span kind or status code from a newer OTLP is no reason to drop data."""
    trace = "d2b2c3d4e5f60718293a4b5c6d7e8f90"
    odd = make_span(trace, "5100000000000001", name="future-kind")
    odd.kind = 40_000
    odd.status.code = 70_000  # type: ignore[assignment]
    response = srv.post(traces_request([odd, make_span(trace, "5100000000000002")]).SerializeToString(), PROTOBUF)
    assert response.status_code == 200, response.content
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    spans = {s["span_id"]: s for s in srv.client.get(f"{srv.server.url}/api/v1/traces/{trace}").json()["spans"]}
    assert set(spans) == {"5100000000000001", "5100000000000002"}
    assert spans["5100000000000001"]["status"]["code"] == 0
    logs = ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add()
    record.trace_id, record.span_id = bytes.fromhex(trace), bytes.fromhex("5100000000000001")
    record.event_name, record.time_unix_nano, record.severity_number = "gen_ai.evaluation.result", 5, 99_999
    record.attributes.add(key="gen_ai.evaluation.name", value={"string_value": "relevance"})
    response = srv.post(logs.SerializeToString(), PROTOBUF, path="/v1/logs")
    assert response.status_code == 200, response.content
    spans = srv.client.get(f"{srv.server.url}/api/v1/traces/{trace}").json()["spans"]
    [evaluated] = [s for s in spans if s["span_id"] == "5100000000000001"]
    assert [e["name"] for e in evaluated["evaluations"]] == ["relevance"]


# -- sizes and compression -------------------------------------------------------


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_100_mb_body_is_413_and_the_connection_still_works(srv: Served, connection: str) -> None:
    body = b"\x00" * (100 * 1024 * 1024)
    # httpx raises on a reset: the 413 itself must arrive, also when the server then closes.
    response = srv.post(body, {**PROTOBUF, "connection": connection})
    assert response.status_code == 413
    assert "over the 67108864-byte limit" in _pb_status(response).message
    # The same keep-alive client goes on working.
    good, spec = _good_body(14)
    assert srv.post(good, PROTOBUF).status_code == 200
    assert _trace_span_ids(srv, spec.trace_id) == set(spec.span_ids)


def test_100_mb_chunked_body_without_length_is_413(srv: Served) -> None:
    chunk = b"\x00" * (1024 * 1024)
    response = srv.post(iter([chunk] * 100), PROTOBUF)
    assert response.status_code == 413
    assert "over the 67108864-byte limit" in _pb_status(response).message


def test_gzip_bomb_is_413(srv: Served) -> None:
    bomb = gzip.compress(b"\x00" * (CAP + 1024 * 1024), compresslevel=9)
    assert len(bomb) < 200 * 1024
    response = srv.post(bomb, {**PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed request body is over" in _pb_status(response).message


@pytest.mark.parametrize("damage", ["not-gzip", "truncated", "corrupt"])
def test_bad_gzip_is_400(srv: Served, damage: str) -> None:
    body, spec = _good_body(15)
    packed = gzip.compress(body)
    if damage == "not-gzip":
        sent = body
    elif damage == "truncated":
        sent = packed[: len(packed) // 2]
    else:
        sent = packed[:10] + bytes(b ^ 0x5A for b in packed[10:60]) + packed[60:]
    response = srv.post(sent, {**PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in _pb_status(response).message
    assert _trace_span_ids(srv, spec.trace_id) == set()


def test_gzip_with_two_members_keeps_both(srv: Served) -> None:
    first, a = _good_body(16)
    second, b = _good_body(17)
    response = srv.post(gzip.compress(first) + gzip.compress(second), {**PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 200
    assert _trace_span_ids(srv, a.trace_id) == set(a.span_ids)
    assert _trace_span_ids(srv, b.trace_id) == set(b.span_ids), "the second gzip member was dropped"


def test_gzip_json_is_accepted(srv: Served) -> None:
    trace = "e1b2c3d4e5f60718293a4b5c6d7e8f90"
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": trace, "spanId": "6000000000000001", "name": "zipped",
         "startTimeUnixNano": 1767225600000000000, "endTimeUnixNano": "1767225600100000000"}]}]}]}
    response = srv.post(gzip.compress(json.dumps(document).encode()), {**JSON, "content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert _trace_span_ids(srv, trace) == {"6000000000000001"}


def test_20000_spans_in_one_request(srv: Served) -> None:
    rng = random.Random(20_000)
    spans = []
    expected = set()
    for t in range(1000):
        trace = rng.getrandbits(128).to_bytes(16, "big").hex()
        root = f"{t + 1:08x}00000001"
        for i in range(20):
            span_id = f"{t + 1:08x}{i + 1:08x}"
            attributes = {"gen_ai.conversation.id": "bulk-session"} if i == 0 else {
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}
            spans.append(make_span(trace, span_id, parent=None if i == 0 else root, name=f"s{i}",
                                   attributes=attributes, start_ns=1_767_225_600_000_000_000 + i * 1000))
            expected.add((trace, span_id))
    request = traces_request(spans, service="bulk-svc")
    body = request.SerializeToString()
    assert len(spans) == len(expected) == 20_000
    response = srv.post(body, PROTOBUF)
    assert response.status_code == 200, response.content
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    sessions = srv.client.get(f"{srv.server.url}/api/v1/sessions", params={"service": "bulk-svc"}).json()["items"]
    assert [(s["session_id"], s["spans"], s["llm_calls"]) for s in sessions] == [("bulk-session", 20_000, 19_000)]
    assert sessions[0]["tokens_in"] == 19_000 * 10
    assert srv.spans_in_db("session_id = :s", s="bulk-session") == expected


def test_one_megabyte_attribute_comes_back_whole(srv: Served) -> None:
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits + "é€😀 "
    value = "".join(rng.choices(alphabet, k=1_000_000))
    assert len(value.encode()) > 1024 * 1024
    trace = "f1b2c3d4e5f60718293a4b5c6d7e8f90"
    span = make_span(trace, "7000000000000001", attributes={"big": value, "gen_ai.conversation.id": "big-attr"})
    response = srv.post(traces_request([span]).SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    spans = srv.client.get(f"{srv.server.url}/api/v1/traces/{trace}").json()["spans"]
    assert len(spans) == 1
    assert spans[0]["raw_attributes"]["big"] == value


@pytest.mark.parametrize("headers", [PROTOBUF, JSON, {**PROTOBUF, "content-encoding": "gzip"}],
                         ids=["protobuf", "json", "gzip-no-bytes"])
def test_empty_body_is_success(srv: Served, headers: dict[str, str]) -> None:
    response = srv.post(b"", headers)
    assert response.status_code == 200, response.content
    if headers["content-type"] == JSON["content-type"]:
        answer = json_format.Parse(response.text, ExportTraceServiceResponse())
    else:
        answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")


def test_empty_logs_request_is_success(srv: Served) -> None:
    response = srv.post(ExportLogsServiceRequest().SerializeToString(), PROTOBUF, path="/v1/logs")
    assert response.status_code == 200


def test_a_refused_body_does_not_poison_the_next_request_on_the_connection(srv: Served) -> None:
    """Refusals answered before the body is read leave the keep-alive connection in step."""
    good, spec = _good_body(18)
    with httpx.Client(timeout=60) as client:
        for content, headers in [(good, {"content-type": "text/plain"}), (b"\x00" * (CAP + 1), PROTOBUF),
                                 (good, {**PROTOBUF, "content-encoding": "br"})]:
            assert client.post(srv.server.url + "/v1/traces", content=content, headers=headers).status_code >= 400
            assert client.get(srv.server.url + "/healthz").status_code == 200
        assert client.post(srv.server.url + "/v1/traces", content=good, headers=PROTOBUF).status_code == 200
    assert _trace_span_ids(srv, spec.trace_id) == set(spec.span_ids)
