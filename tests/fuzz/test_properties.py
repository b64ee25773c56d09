"""Property tests of the OTLP decoders, the normalizer and the config loader, in-process.

Bounded and derandomized, so CI runs the same examples every time:

* ``decode_traces`` / ``decode_logs`` on arbitrary bytes, on byte-level
  mutations of valid requests and on OTLP/JSON documents built from JSON
  strategies either return or raise ``DecodeError``, nothing else;
* whatever decodes goes through ``prepare_spans`` and ``normalize`` (with
  and without content) without raising: attribute values of every
  ``AnyValue`` type, nested arrays and kvlists, empty and long strings,
  NaN and infinities, ids of any length, any timestamp and enum value;
* a config file, random YAML-ish text or a mutated valid
  ``agentwatch.yaml``, either loads (settings and evaluator catalogue) or
  raises ``ConfigError`` naming the file and a line.

Bugs the fuzzing found (500s in the normalizer, config errors that escaped
or named no line) have regression tests at the end.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from make_corpus import NORMALIZER_KEYS, START_NS, to_json_doc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agentwatch.errors import ConfigError, DecodeError
from agentwatch.evaluate.catalogue import load_catalogue
from agentwatch.ingest.decode import decode_logs, decode_traces
from agentwatch.ingest.receiver import prepare_spans
from agentwatch.normalize import NormalizeOptions, normalize
from agentwatch.settings import load_settings
from agentwatch.testing import agent_session_request, make_span, traces_request

OPTIONS = NormalizeOptions()
BOUNDED = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ENCODINGS = ("protobuf", "json")


def _seed_bodies() -> dict[str, bytes]:
    request, _ = agent_session_request(random.Random(5), start_ns=START_NS, tool_calls=1, message_bytes=30)
    logs = ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, time_unix_nano=START_NS, event_name="gen_ai.evaluation.result")
    record.attributes.add(key="gen_ai.evaluation.name", value=AnyValue(string_value="relevance"))
    record.body.string_value = "ok"
    return {
        "traces/protobuf": request.SerializeToString(),
        "traces/json": json.dumps(to_json_doc(request, "traces")).encode(),
        "logs/protobuf": logs.SerializeToString(),
        "logs/json": json.dumps(to_json_doc(logs, "logs")).encode(),
    }


SEEDS = _seed_bodies()


def _decode_and_normalize(signal: str, body: bytes, encoding: str) -> None:
    """Decode; on success run everything ingest runs on the result. Only DecodeError may escape."""
    if signal == "logs":
        decode_logs(body, encoding)
        return
    try:
        decoded = decode_traces(body, encoding)
    except DecodeError:
        return
    _prepare_and_normalize(decoded)


def _prepare_and_normalize(decoded: Any) -> None:
    prepared = prepare_spans(decoded, OPTIONS)
    assert len(prepared.rows) + prepared.rejected == len(decoded.spans) + decoded.rejected_spans
    for raw in decoded.spans:
        normalize(raw, OPTIONS)


def _decodes_or_decode_error(signal: str, body: bytes, encoding: str) -> None:
    try:
        _decode_and_normalize(signal, body, encoding)
    except DecodeError as exc:
        assert exc.message


# -- bytes -----------------------------------------------------------------------


@BOUNDED
@given(body=st.binary(max_size=2048), signal=st.sampled_from(["traces", "logs"]), encoding=st.sampled_from(ENCODINGS))
def test_arbitrary_bytes_decode_or_raise_decode_error(body: bytes, signal: str, encoding: str) -> None:
    _decodes_or_decode_error(signal, body, encoding)


_EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("repeat"), st.integers(0, 10**6), st.integers(2, 200)),
)


def _apply(body: bytes, edits: list[tuple[str, int, Any]]) -> bytes:
    data = bytearray(body)
    for op, where, arg in edits:
        if not data:
            break
        i = where % len(data)
        if op == "flip":
            data[i] ^= 1 << arg
        elif op == "cut":
            del data[i:i + arg]
        elif op == "insert":
            data[i:i] = arg
        elif op == "overwrite":
            data[i:i + len(arg)] = arg
        elif op == "truncate":
            del data[i:]
        else:
            chunk = bytes(data[i:i + 8])
            data[i:i] = chunk * arg
    return bytes(data)


@BOUNDED
@given(seed=st.sampled_from(sorted(SEEDS)), edits=st.lists(_EDIT, min_size=1, max_size=6))
def test_mutated_valid_requests_decode_or_raise_decode_error(seed: str, edits: list[tuple[str, int, Any]]) -> None:
    signal, encoding = seed.split("/")
    _decodes_or_decode_error(signal, _apply(SEEDS[seed], edits), encoding)


# -- structured messages: every AnyValue in every position ----------------------------

_SPECIAL_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308])
_STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "gpt-4o-mini", "openai", "chat", "invoke_agent", "execute_tool", "LLM", "agent",
                     "tool", "failure", "1e308", "-1", "12345678901234567890", "NaN", "inf", "[]", "{}",
                     '{"model": "gpt-4o"}', '{"model": ["x"]}', '[{"role": "user", "parts": 5}]',
                     '[{"role": "assistant", "parts": [{"type": "tool_call", "arguments": [1]}]}]', "x" * 100_000]),
)
_KEYS = st.one_of(st.sampled_from(NORMALIZER_KEYS + ("gen_ai.input.messages", "gen_ai.output.messages",
                                                      "gen_ai.prompt.0.content", "gen_ai.completion.0.content",
                                                      "input.value", "output.value", "llm.input_messages.0.message.role",
                                                      "gen_ai.tool.call.arguments", "gen_ai.tool.call.result")),
                  st.text(max_size=20))


def _scalar_values() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        st.just(AnyValue()),
        _STRINGS.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.one_of(st.floats(), _SPECIAL_FLOATS).map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=40).map(lambda v: AnyValue(bytes_value=v)),
    )


def _array(items: list[AnyValue]) -> AnyValue:
    value = AnyValue()
    value.array_value.SetInParent()
    value.array_value.values.extend(items)
    return value


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    value = AnyValue()
    value.kvlist_value.SetInParent()
    value.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in pairs)
    return value


ANY_VALUES = st.recursive(
    _scalar_values(),
    lambda inner: st.one_of(st.lists(inner, max_size=5).map(_array),
                            st.lists(st.tuples(_KEYS, inner), max_size=5).map(_kvlist)),
    max_leaves=20,
)
ATTRIBUTES = st.lists(st.tuples(_KEYS, ANY_VALUES), max_size=8).map(
    lambda pairs: [KeyValue(key=k, value=v) for k, v in pairs])
IDS = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20), st.sampled_from([bytes(8), bytes(16)]))
SPAN_IDS = st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=20))
TIMES = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, START_NS, 2**63 - 1, 2**63, 2**64 - 1]))
ENUMS = st.one_of(st.integers(0, 6), st.integers(-(2**31), 2**31 - 1))


@st.composite
def trace_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(draw(ATTRIBUTES))
        ss = rs.scope_spans.add()
        ss.scope.name = draw(_STRINGS)
        ss.scope.attributes.extend(draw(ATTRIBUTES))
        for _ in range(draw(st.integers(0, 3))):
            span = ss.spans.add(trace_id=draw(IDS), span_id=draw(SPAN_IDS),
                                parent_span_id=draw(st.one_of(st.just(b""), SPAN_IDS)), name=draw(_STRINGS),
                                kind=draw(ENUMS), start_time_unix_nano=draw(TIMES), end_time_unix_nano=draw(TIMES))
            span.attributes.extend(draw(ATTRIBUTES))
            span.status.code = draw(ENUMS)
            span.status.message = draw(_STRINGS)
            for _ in range(draw(st.integers(0, 2))):
                event = span.events.add(name=draw(st.sampled_from(["exception", "gen_ai.choice", ""])),
                                        time_unix_nano=draw(TIMES))
                event.attributes.extend(draw(ATTRIBUTES))
            for _ in range(draw(st.integers(0, 1))):
                link = span.links.add(trace_id=draw(IDS), span_id=draw(SPAN_IDS))
                link.attributes.extend(draw(ATTRIBUTES))
    return request


@st.composite
def log_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(draw(ATTRIBUTES))
    sl = rl.scope_logs.add()
    sl.scope.name = draw(_STRINGS)
    for _ in range(draw(st.integers(0, 3))):
        record = sl.log_records.add(trace_id=draw(IDS), span_id=draw(SPAN_IDS), time_unix_nano=draw(TIMES),
                                    observed_time_unix_nano=draw(TIMES), severity_number=draw(ENUMS),
                                    event_name=draw(_STRINGS))
        record.attributes.extend(draw(ATTRIBUTES))
        if draw(st.booleans()):
            record.body.CopyFrom(draw(ANY_VALUES))
    return request


@BOUNDED
@given(request=trace_requests())
def test_any_decodable_trace_request_is_prepared_and_normalized(request: ExportTraceServiceRequest) -> None:
    body = request.SerializeToString()
    decoded = decode_traces(body, "protobuf")  # a message protobuf wrote always decodes
    assert len(decoded.spans) + decoded.rejected_spans == sum(
        len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    _prepare_and_normalize(decoded)
    # The same request as OTLP/JSON decodes to the same spans.
    try:
        via_json = decode_traces(json.dumps(to_json_doc(request, "traces")).encode(), "json")
    except DecodeError:
        return  # proto3 JSON cannot carry some values of the wire (e.g. invalid UTF-8 is impossible here)
    assert [s.span_id for s in via_json.spans] == [s.span_id for s in decoded.spans]


@BOUNDED
@given(request=log_requests())
def test_any_decodable_logs_request_decodes(request: ExportLogsServiceRequest) -> None:
    decoded = decode_logs(request.SerializeToString(), "protobuf")
    assert len(decoded.records) + decoded.rejected_log_records == sum(
        len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    via_json = decode_logs(json.dumps(to_json_doc(request, "logs")).encode(), "json")
    assert len(via_json.records) == len(decoded.records)


# -- OTLP/JSON from JSON strategies ------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "1767225600000000000", "NaN"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["key", "value", "stringValue", "intValue", "doubleValue", "boolValue", "bytesValue",
                         "arrayValue", "kvlistValue", "values", "name", "traceId", "spanId", "parentSpanId",
                         "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano", "attributes", "events", "links",
                         "status", "code", "kind", "body", "resource", "scope"]) | st.text(max_size=8),
        inner, max_size=4),
    max_leaves=25,
)


@st.composite
def otlp_json_documents(draw: st.DrawFn) -> tuple[str, bytes]:
    signal = draw(st.sampled_from(["traces", "logs"]))
    outer, middle, leaf = {"traces": ("resourceSpans", "scopeSpans", "spans"),
                           "logs": ("resourceLogs", "scopeLogs", "logRecords")}[signal]
    level = draw(st.integers(0, 3))
    if level == 0:
        doc: Any = draw(JSON_VALUES)
    elif level == 1:
        doc = {outer: draw(JSON_VALUES)}
    elif level == 2:
        doc = {outer: [{"resource": draw(JSON_VALUES), middle: draw(JSON_VALUES)}]}
    else:
        items = draw(st.lists(st.dictionaries(st.sampled_from([
            "traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
            "timeUnixNano", "attributes", "events", "links", "status", "body", "severityNumber", "eventName"]),
            JSON_VALUES, max_size=8), max_size=3))
        for item in items:
            if draw(st.booleans()):
                item.update({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                             "startTimeUnixNano": "1767225600000000000", "timeUnixNano": "1767225600000000000"})
        doc = {outer: [{middle: [{leaf: items}]}]}
    return signal, json.dumps(doc, allow_nan=True).encode()


@BOUNDED
@given(document=otlp_json_documents())
def test_otlp_json_documents_decode_or_raise_decode_error(document: tuple[str, bytes]) -> None:
    signal, body = document
    _decodes_or_decode_error(signal, body, "json")


# -- config files ------------------------------------------------------------------------

VALID_CONFIG = """\
project: support-agent
database_url: sqlite:///./agentwatch.db
public_url: http://127.0.0.1:8080
sessions:
  idle_timeout: 5m
  allowed_lateness: 30s
  intent_attributes: [agentwatch.intent, app.intent]
ingest:
  max_body_bytes: 67108864
  max_inflight_bytes: 134217728
  max_batch_spans: 20000
  decode_workers: auto
  sqlite_synchronous: normal
pricing:
  my-model: {input: 0.5, output: 1.5, cache_read: 0.25}
sampling: {default_rate: 0.05}
evaluators:
  - name: tool_use
    kind: rule
    rule: tool_error
    threshold: 1.0
    severity: page
    owner: payments-oncall
    filter: {called_tool: refund_api}
  - name: faithfulness
    kind: faithfulness
    threshold: 0.8
    direction: higher_is_better
    sample_rate: 0.5
  - name: external:helpfulness
    kind: external
"""

_TOKENS = ["-1", "0", "1.5", "1e400", ".nan", ".inf", "~", "null", "yes", "no", "on", "0x10", "0o7", "[", "]", "{",
           "}", ":", "- ", "? ", "&a", "*a", "!!binary xx", "!!int x", "!!float x", "!!timestamp x", "!!str",
           "!!python/object:os.system", "!!set {a}", "!!omap [a]", "<<: *a", "2020-13-45", "2020-02-30",
           "2021-01-01 25:61:00", "'", '"', "\t", "\x00", "é", "#", "|", ">", "%YAML 1.1", "---", "...", "@", "`",
           "[[[[[[[[", "{a: {b: {c: ", "5m", "5x", "auto", "full", "rule", "python", "external:x", "faithfulness",
           "default_rate", "evaluators", "sampling", "pricing", "ingest", "sessions", "project", "nonsense_key"]
_CONFIG_KEYS = ["project", "database_url", "public_url", "sessions", "ingest", "pricing", "sampling", "evaluators",
                "idle_timeout", "allowed_lateness", "intent_attributes", "max_body_bytes", "decode_workers",
                "sqlite_synchronous", "default_rate", "name", "kind", "rule", "threshold", "severity", "filter",
                "params", "direction", "sample_rate", "owner", "dataset_version", "retention", "alerts"]
_LINE_EDIT = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 100), st.just("")),
    st.tuples(st.just("duplicate"), st.integers(0, 100), st.just("")),
    st.tuples(st.just("indent"), st.integers(0, 100), st.sampled_from(["", " ", "   ", "\t", "      "])),
    st.tuples(st.just("value"), st.integers(0, 100), st.sampled_from(_TOKENS)),
    st.tuples(st.just("insert"), st.integers(0, 100), st.sampled_from(_TOKENS) | st.text(max_size=12)),
    st.tuples(st.just("key"), st.integers(0, 100), st.sampled_from(_CONFIG_KEYS)),
    st.tuples(st.just("truncate"), st.integers(0, 2000), st.just("")),
)


def _mutate_config(text: str, edits: list[tuple[str, int, str]]) -> str:
    lines = text.split("\n")
    for op, where, arg in edits:
        if op == "truncate":
            text = "\n".join(lines)
            lines = text[: where % (len(text) + 1)].split("\n")
            continue
        if not lines:
            lines = [""]
        i = where % len(lines)
        line = lines[i]
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "indent":
            lines[i] = arg + line.lstrip()
        elif op == "value":
            head, sep, _ = line.partition(":")
            lines[i] = f"{head}: {arg}" if sep else f"{line} {arg}"
        elif op == "insert":
            column = where % (len(line) + 1)
            lines[i] = line[:column] + arg + line[column:]
        else:
            indent = line[: len(line) - len(line.lstrip(" -"))]
            _, sep, rest = line.partition(":")
            lines[i] = f"{indent}{arg}:{rest}" if sep else f"{indent}{arg}: {line.strip()}"
    return "\n".join(lines)


_FILE_LEVEL = ("cannot read the config file", "is not UTF-8 text", "config file not found")


def _load_config(path: Path) -> None:
    """Load like ``agentwatch serve`` does; only a well-formed ConfigError may escape."""
    settings_ = load_settings(path, environ={})
    load_catalogue(settings_.sections, settings_.config_path)


def _assert_loads_or_config_error(path: Path) -> None:
    try:
        _load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert str(path) in message, message
        if not any(level in message for level in _FILE_LEVEL):
            assert re.search(r"line \d+", message), message


@BOUNDED
@given(edits=st.lists(_LINE_EDIT, min_size=1, max_size=5))
def test_mutated_config_loads_or_names_file_and_line(tmp_path_factory: pytest.TempPathFactory,
                                                     edits: list[tuple[str, int, str]]) -> None:
    path = tmp_path_factory.mktemp("config") / "agentwatch.yaml"
    path.write_text(_mutate_config(VALID_CONFIG, edits), encoding="utf-8")
    _assert_loads_or_config_error(path)


_YAMLISH = st.lists(st.one_of(st.sampled_from(_TOKENS + _CONFIG_KEYS + [": ", "\n", "\n  ", "\n- ", ", "]),
                              st.text(max_size=6)), max_size=30).map("".join)


@BOUNDED
@given(text=_YAMLISH, raw=st.binary(max_size=64))
def test_random_yamlish_config_loads_or_names_file_and_line(tmp_path_factory: pytest.TempPathFactory, text: str,
                                                            raw: bytes) -> None:
    folder = tmp_path_factory.mktemp("config")
    path = folder / "agentwatch.yaml"
    path.write_text(text, encoding="utf-8")
    _assert_loads_or_config_error(path)
    path.write_bytes(raw)
    _assert_loads_or_config_error(path)


def test_valid_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(VALID_CONFIG, encoding="utf-8")
    _load_config(path)


def test_malformed_config_is_refused_at_start_with_file_line_and_key(tmp_path: Path) -> None:
    from agentwatch.testing import ServerProcess

    path = tmp_path / "agentwatch.yaml"
    path.write_text(VALID_CONFIG.replace("max_batch_spans: 20000", "max_batch_spans: -3"), encoding="utf-8")
    server = ServerProcess(f"sqlite:///{tmp_path / 'a.db'}", config=path, grpc=False, cwd=tmp_path)
    with pytest.raises(RuntimeError) as refused:
        server.start(timeout=20)
    log = str(refused.value)
    assert str(path) in log and "line 11" in log and "ingest.max_batch_spans" in log, log
    assert "Traceback" not in log, log


# -- regressions: each of these once answered 500 or escaped as another exception ------------


def _priced_span(attributes: dict[str, Any]) -> bytes:
    span = make_span("e1" * 16, "e2" * 8, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", **attributes})
    return bytes(traces_request([span]).SerializeToString())


def test_huge_token_count_string_gets_no_cost() -> None:
    decoded = decode_traces(_priced_span({"gen_ai.usage.input_tokens": "9" * 400}), "protobuf")
    [row] = prepare_spans(decoded, OPTIONS).rows
    assert row["cost_usd"] is None and row["tokens_in"] is None


def test_deeply_nested_invocation_parameters_stay_text() -> None:
    span = make_span("e1" * 16, "e3" * 8, attributes={"llm.invocation_parameters": "[" * 100_000})
    decoded = decode_traces(traces_request([span]).SerializeToString(), "protobuf")
    assert len(prepare_spans(decoded, OPTIONS).rows) == 1


def test_config_impossible_date_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "agentwatch.yaml"
    path.write_text("sessions: {idle_timeout: 5m}\nproject: 2020-13-45\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}, line 2: a value cannot be read"):
        _load_config(path)


def test_config_section_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "agentwatch.yaml"
    path.write_text("project: x\nsampling: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        _load_config(path)
    assert "line 2" in str(error.value), str(error.value)


@pytest.mark.parametrize("value", ["!!int x", "!!float x", "!!timestamp x", "2021-01-01 25:61:00"])
def test_config_bad_tag_names_file_and_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(f"project: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        _load_config(path)


def test_config_reader_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "agentwatch.yaml"
    path.write_text("project: x\nsessions:\n  idle_timeout: 5\x00m\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        _load_config(path)
    assert "line 3" in str(error.value), str(error.value)


def test_config_missing_key_names_the_entry_line(tmp_path: Path) -> None:
    path = tmp_path / "agentwatch.yaml"
    path.write_text("evaluators:\n  - name: tool_use\n    rule: tool_error\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        _load_config(path)
    assert "line ?" not in str(error.value) and "line 2" in str(error.value), str(error.value)


# -- fixed in decode.py -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"\\ud800name": "x"}]}]}]}',
    b'{"resourceSpans": [{"\xed\xa0\x80": 1}]}',
    '{"resourceSpans": [{"\ud800": 1}]}'.encode("utf-16", "surrogatepass"),
    b'{"resourceSpans": [{"resource": {"attributes": [{"key": "\\udfff", "value": {"stringValue": "\\ud800"}}]}}]}',
], ids=["escaped-key", "utf8-encoded-surrogate-key", "utf16-body", "escaped-key-and-value"])
def test_lone_surrogate_in_json_is_a_decode_error(body: bytes) -> None:
    """Was a SystemError out of protobuf's field lookup (a 500): a key that is not valid Unicode."""
    for decode in (decode_traces, decode_logs):
        with pytest.raises(DecodeError, match="surrogate"):
            decode(body, "json")


def test_paired_surrogate_escapes_are_still_accepted() -> None:
    body = ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "' + "a1" * 16 + '", "spanId": "'
            + "b2" * 8 + '", "startTimeUnixNano": "1767225600000000000", "name": "\\ud83d\\ude00"}]}]}]}').encode()
    [span] = decode_traces(body, "json").spans
    assert span.name == "\U0001f600"


def test_deeply_nested_message_content_reads_as_text() -> None:
    from agentwatch.normalize.messages import parse_messages, parse_parts

    deep = "[" * 100_000
    assert parse_messages(deep, "user") == [{"role": "user", "parts": [{"type": "text", "content": deep}]}]
    assert parse_parts(deep)[0]["content"] == deep
    span = make_span("e1" * 16, "e4" * 8, attributes={"gen_ai.operation.name": "chat", "gen_ai.input.messages": deep})
    [raw] = decode_traces(traces_request([span]).SerializeToString(), "protobuf").spans
    assert normalize(raw, OPTIONS).input_messages[0]["parts"][0]["content"] == deep
