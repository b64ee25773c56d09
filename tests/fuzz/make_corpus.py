"""Write the kept corpus of malformed OTLP/HTTP bodies: ``tests/fuzz/corpus/bodies.jsonl.gz``.

Deterministic: every choice comes from a seeded ``random.Random`` and the
gzip header carries no time, so running it again rewrites the file byte for
byte (given the same protobuf and zlib)::

    .venv/bin/python tests/fuzz/make_corpus.py            # write
    .venv/bin/python tests/fuzz/make_corpus.py --check    # exit 1 if the file would change

The valid seeds are ``agent_session_request`` sessions (fixed seeds and start
times) and the real captures in ``shared/data/otlp-captures`` (needed only to
regenerate; the test reads the committed file alone, every mutated byte is
in it). One JSON record per line::

    {"id", "category", "signal" (traces|logs), "content_type", "encoding" (identity|gzip), "body_b64"}

Categories (each on protobuf and JSON, traces and logs): truncation,
bitflip, wire_type (wrong protobuf wire types / wrong JSON value types),
huge_repeated (many small items, declared-huge lengths), deep_nesting,
invalid_utf8, bad_ids, timestamps, attr_values (every AnyValue type in every
position, under the keys the normalizer reads), random_bytes, json_shape
(random JSON documents), cross_encoding (a body sent under the other
content type), compression (broken gzip, gzip of malformed bodies), seed
(the valid seeds themselves). Bodies are capped at ``MAX_BODY`` bytes.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import io
import json
import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentwatch.testing import agent_session_request, any_value

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus" / "bodies.jsonl.gz"
CAPTURES = HERE.parents[2] / "shared" / "data" / "otlp-captures"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY = 96 * 1024
START_NS = 1_767_225_600_000_000_000

#: Keys the normalizer reads, so wrongly typed values reach every code path.
NORMALIZER_KEYS = (
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens", "llm.token_count.prompt", "llm.cost.total",
    "gen_ai.conversation.id", "session.id", "user.id", "gen_ai.agent.name", "gen_ai.agent.version",
    "gen_ai.tool.name", "gen_ai.tool.call.id", "error.type", "gen_ai.task.status",
    "gen_ai.response.finish_reasons", "gen_ai.completion.0.finish_reason", "llm.invocation_parameters",
    "openinference.span.kind", "traceloop.span.kind", "traceloop.entity.name", "llm.request.type",
    "agentwatch.intent", "traceloop.association.properties.intent", "service.name", "service.version",
    "event.name", "gen_ai.evaluation.name", "gen_ai.evaluation.score.value", "exception.type",
    "exception.message", "", "\x00", "k" * 300,
)


# -- seeds ---------------------------------------------------------------------


def _seeds() -> list[tuple[str, str, bytes]]:
    """(name, signal, protobuf bytes) of every valid seed."""
    seeds = []
    for i, (tools, size) in enumerate([(1, 40), (2, 120), (0, 10)]):
        request, _ = agent_session_request(random.Random(1000 + i), start_ns=START_NS + i * 10**9,
                                           tool_calls=tools, message_bytes=size,
                                           session_id=f"fuzz-seed-{i}")
        seeds.append((f"session{i}", "traces", request.SerializeToString()))
    logs = ExportLogsServiceRequest()
    scope = logs.resource_logs.add()
    scope.resource.attributes.add(key="service.name", value=any_value("support-agent"))
    sl = scope.scope_logs.add()
    sl.scope.name = "fuzz"
    for j in range(3):
        record = sl.log_records.add(trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"),
                                    span_id=bytes.fromhex(f"eee19b7ec3c1b17{j}"), time_unix_nano=START_NS + j,
                                    event_name="gen_ai.evaluation.result", severity_number=9)
        record.attributes.add(key="gen_ai.evaluation.name", value=any_value("relevance"))
        record.attributes.add(key="gen_ai.evaluation.score.value", value=any_value(0.5 + j / 10))
        record.body.CopyFrom(any_value({"content": "ok", "n": [1, 2.5, True]}))
    seeds.append(("logs0", "logs", logs.SerializeToString()))
    if not CAPTURES.is_dir():
        sys.exit(f"the OTLP captures are expected at {CAPTURES} (needed to regenerate the corpus)")
    seen = {pb for _, _, pb in seeds}
    for path in sorted(CAPTURES.glob("*/*.pb")):
        if path.read_bytes() in seen:  # otel-genai-grpc carries the same bytes as otel-genai
            continue
        seen.add(path.read_bytes())
        signal = "logs" if path.name.endswith("-logs.pb") else "traces"
        seeds.append((f"{path.parent.name}/{path.stem}", signal, path.read_bytes()))
    return seeds


def _message(signal: str) -> Any:
    return ExportTraceServiceRequest() if signal == "traces" else ExportLogsServiceRequest()


_ITEM_LISTS = {"traces": ("resourceSpans", "scopeSpans", "spans"), "logs": ("resourceLogs", "scopeLogs", "logRecords")}
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def to_json_doc(msg: Any, signal: str) -> dict[str, Any]:
    """OTLP/JSON of a message: proto3 JSON with hex trace and span ids."""
    doc: dict[str, Any] = json_format.MessageToDict(msg)
    outer, middle, inner = _ITEM_LISTS[signal]
    for rs in doc.get(outer, []):
        for ss in rs.get(middle, []):
            for item in ss.get(inner, []):
                _ids_to_hex(item)
                for link in item.get("links", []):
                    _ids_to_hex(link)
    return doc


def _ids_to_hex(item: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        if key in item:
            item[key] = base64.b64decode(item[key]).hex()


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def _items(msg: Any, signal: str) -> list[Any]:
    if signal == "traces":
        return [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
    return [r for rl in msg.resource_logs for sl in rl.scope_logs for r in sl.log_records]


# -- the protobuf wire ---------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < end and shift < 70:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    return None


def fields_of(buf: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[tuple[int, int, int, int, int]]:
    """Every field, nested ones too: (tag start, value start, value end, wire type, field number).

    A length-delimited value is walked into when it parses whole as fields.
    Returns [] when ``buf[start:end]`` is not a clean run of fields.
    """
    end = len(buf) if end is None else end
    out: list[tuple[int, int, int, int, int]] = []
    pos = start
    while pos < end:
        tag = _read_varint(buf, pos, end)
        if tag is None:
            return []
        key, value_start = tag
        wire, number = key & 7, key >> 3
        if number == 0:
            return []
        if wire == 0:
            got = _read_varint(buf, value_start, end)
            if got is None:
                return []
            value_end = got[1]
        elif wire == 1:
            value_end = value_start + 8
        elif wire == 5:
            value_end = value_start + 4
        elif wire == 2:
            got = _read_varint(buf, value_start, end)
            if got is None:
                return []
            length, value_start = got
            value_end = value_start + length
        else:
            return []
        if value_end > end:
            return []
        out.append((pos, value_start, value_end, wire, number))
        if wire == 2 and depth < 12 and value_end > value_start:
            out.extend(fields_of(buf, value_start, value_end, depth + 1))
        pos = value_end
    return out


def _is_text(chunk: bytes) -> bool:
    return bool(chunk) and all(32 <= b < 127 for b in chunk)


# -- mutators --------------------------------------------------------------------

Body = tuple[str, bytes, str]  # (content_type, body, encoding)


def truncations(rng: random.Random, pb: bytes, js: bytes, n: int) -> Iterator[tuple[str, bytes]]:
    for _ in range(n):
        for ctype, body in ((PROTOBUF, pb), (JSON, js)):
            where = rng.choice([1, 2, 3, len(body) // 2, len(body) - 1, len(body) - 2, rng.randrange(1, len(body))])
            yield ctype, body[:max(0, min(where, len(body) - 1))]


def bitflips(rng: random.Random, pb: bytes, js: bytes, n: int) -> Iterator[tuple[str, bytes]]:
    for _ in range(n):
        for ctype, body in ((PROTOBUF, pb), (JSON, js)):
            data = bytearray(body)
            for _ in range(rng.choice([1, 1, 2, 3, 8])):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
            yield ctype, bytes(data)


def wrong_wire_types(rng: random.Random, pb: bytes, n: int) -> Iterator[bytes]:
    fields = fields_of(pb)
    for _ in range(n):
        tag_start, value_start, value_end, wire, number = rng.choice(fields)
        tag_len = len(_varint(number << 3 | wire))
        new_wire = rng.choice([w for w in range(8) if w != wire])
        yield pb[:tag_start] + _varint(number << 3 | new_wire) + pb[tag_start + tag_len:]


def json_wrong_types(rng: random.Random, doc: Any, n: int) -> Iterator[bytes]:
    paths: list[tuple[Any, ...]] = []

    def collect(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                collect(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                collect(v, path + (i,))

    collect(doc, ())
    paths = paths[1:]
    replacements: list[Any] = [None, True, False, 0, -1, 1.5, 2**64, -(2**63) - 1, "", "x", "NaN", [], [1, "a"], {},
                               {"stringValue": 5}, {"intValue": "abc"}, {"arrayValue": {"values": 3}},
                               "9" * 40, 1e308, -0.0, {"key": None}]
    for _ in range(n):
        mutated = copy.deepcopy(doc)
        path = rng.choice(paths)
        node = mutated
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = copy.deepcopy(rng.choice(replacements))
        yield dumps(mutated)


def huge_lengths(rng: random.Random, pb: bytes, n: int) -> Iterator[bytes]:
    fields = [f for f in fields_of(pb) if f[3] == 2]
    for _ in range(n):
        tag_start, value_start, value_end, wire, number = rng.choice(fields)
        tag = _varint(number << 3 | 2)
        length = rng.choice([2**31, 2**32 + 1, 2**63 - 1, 2**64 - 1, 10**12, value_end - value_start + 1])
        encoded = _varint(length) if rng.random() < 0.8 else b"\xff" * 10 + b"\x01"  # an over-long varint
        yield pb[:tag_start] + tag + encoded + pb[value_start:]


def repeated_fields(rng: random.Random, signal: str) -> Iterator[tuple[str, bytes]]:
    """Large counts of small items: empty spans, attributes, events, resources, unknown fields."""
    inner = {"traces": (1, 2, 2), "logs": (1, 2, 2)}[signal]  # resource_*=1, scope_*=2, spans/log_records=2
    for count in (1000, 5000, 20000, 30000):
        empty_items = bytes([inner[1] << 3 | 2]) + _varint(count * 2) + (bytes([inner[2] << 3 | 2, 0]) * count)
        yield PROTOBUF, bytes([inner[0] << 3 | 2]) + _varint(len(empty_items)) + empty_items
        yield PROTOBUF, (bytes([inner[0] << 3 | 2, 0])) * count          # empty resource_spans
        yield PROTOBUF, (b"\xf8\x07\x01") * count                        # unknown varint field 127
        yield PROTOBUF, (b"\x0a\x00") * (count // 2) + b"\x0a"            # ends inside the last item
    outer, middle, leaf = _ITEM_LISTS[signal]
    for count in (1000, 10000, 30000):
        yield JSON, dumps({outer: [{}] * count})
        yield JSON, dumps({outer: [{middle: [{leaf: [{}] * count}]}]})
        yield JSON, dumps({outer: [{middle: [{leaf: [{"attributes": [{"key": "k"}] * (count // 10)}]}]}]})
        yield JSON, dumps({outer: [{"resource": {"attributes": [{"key": f"k{i % 97}", "value": {"intValue": i}}
                                                                for i in range(count // 10)]}}]})
    for count in (200, 2000):
        msg = _message(signal)
        items = msg.resource_spans.add().scope_spans.add().spans if signal == "traces" else \
            msg.resource_logs.add().scope_logs.add().log_records
        for i in range(count):
            item = items.add(trace_id=bytes.fromhex("a0" * 15 + f"{i % 256:02x}"), span_id=(i + 1).to_bytes(8, "big"))
            if signal == "traces":
                item.start_time_unix_nano = START_NS + i
                item.name = "r"
            else:
                item.time_unix_nano = START_NS + i
        yield PROTOBUF, msg.SerializeToString()
        yield JSON, dumps(to_json_doc(msg, signal))
        msg = _message(signal)
        item = (msg.resource_spans.add().scope_spans.add().spans.add(start_time_unix_nano=START_NS, name="many-attrs")
                if signal == "traces" else msg.resource_logs.add().scope_logs.add().log_records.add())
        item.trace_id, item.span_id = bytes.fromhex("b1" * 16), bytes.fromhex(f"{count:016x}")
        for i in range(count * 5):
            item.attributes.add(key=f"a{i % 13}", value=any_value(i))
        if signal == "traces":
            for i in range(count):
                item.events.add(name="e", time_unix_nano=i)
        yield PROTOBUF, msg.SerializeToString()
        yield JSON, dumps(to_json_doc(msg, signal))
    rng.random()


def deep_nesting(rng: random.Random, signal: str) -> Iterator[tuple[str, bytes]]:
    for depth in (10, 50, 99, 100, 101, 200, 1000, 5000):
        # Written as text: json.dumps itself stops at Python's recursion limit.
        opening, closing = [], []
        for level in reversed(range(depth)):
            if level % 2:
                opening.append('{"arrayValue":{"values":[')
                closing.append("]}}")
            else:
                opening.append(f'{{"kvlistValue":{{"values":[{{"key":"k{level}","value":')
                closing.append("}]}}")
        value = "".join(opening) + '{"stringValue":"leaf"}' + "".join(reversed(closing))
        outer, middle, leaf = _ITEM_LISTS[signal]
        time_key = "startTimeUnixNano" if signal == "traces" else "timeUnixNano"
        item = (f'{{"traceId":"{"c1" * 16}","spanId":"{depth:016x}","{time_key}":"{START_NS}",'
                f'"attributes":[{{"key":"nested","value":{value}}}]' + (f',"body":{value}' if signal == "logs" else "")
                + "}")
        yield JSON, f'{{"{outer}":[{{"{middle}":[{{"{leaf}":[{item}]}}]}}]}}'.encode()
        yield JSON, (b"[" * depth) + (b"]" * rng.choice([0, depth]))
        yield JSON, (b'{"a":' * depth) + b"1" + (b"}" * depth)
        yield JSON, dumps({outer: [{middle: [{leaf: [{"attributes": [{"key": "x", "value": {"stringValue": "["
                                                                                                * depth}}]}]}]}]})
        # protobuf: AnyValue in AnyValue through array_value (field 5) / kvlist_value (field 6).
        leaf_pb = b"\x0a\x04leaf"
        for level in range(depth):
            if level % 2:
                array = b"\x0a" + _varint(len(leaf_pb)) + leaf_pb          # ArrayValue.values
                leaf_pb = b"\x2a" + _varint(len(array)) + array
            else:
                kv = b"\x0a\x01k\x12" + _varint(len(leaf_pb)) + leaf_pb     # KeyValue{key, value}
                kvlist = b"\x0a" + _varint(len(kv)) + kv
                leaf_pb = b"\x32" + _varint(len(kvlist)) + kvlist
            if len(leaf_pb) > MAX_BODY:
                break
        attribute = b"\x0a\x06nested\x12" + _varint(len(leaf_pb)) + leaf_pb
        if signal == "traces":
            span = (b"\x0a\x10" + b"\xc1" * 16 + b"\x12\x08" + depth.to_bytes(8, "big") + b"\x39"
                    + START_NS.to_bytes(8, "little") + b"\x4a" + _varint(len(attribute)) + attribute)
        else:
            span = (b"\x09" + START_NS.to_bytes(8, "little") + b"\x4a" + _varint(len(attribute)) + attribute
                    + b"\x4a\x10" + b"\xc1" * 16 + b"\x52\x08" + depth.to_bytes(8, "big"))
        scope = b"\x12" + _varint(len(span)) + span
        resource = b"\x12" + _varint(len(scope)) + scope
        yield PROTOBUF, b"\x0a" + _varint(len(resource)) + resource
        # Messages inside unknown fields, nested without end.
        nest = b""
        for _ in range(min(depth, 3000)):
            nest = b"\x7a" + _varint(len(nest)) + nest
        yield PROTOBUF, nest


_BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
             b"\xc0\xaf", b"\x80", b"\xf8\x88\x80\x80\x80", b"\x00\xff")


def invalid_utf8(rng: random.Random, pb: bytes, js: bytes, n: int) -> Iterator[tuple[str, bytes]]:
    strings = [f for f in fields_of(pb) if f[3] == 2 and _is_text(pb[f[1]:f[2]])]
    for _ in range(n):
        tag_start, value_start, value_end, wire, number = rng.choice(strings)
        bad = rng.choice(_BAD_UTF8)
        at = rng.randint(value_start, value_end)
        payload = pb[value_start:at] + bad + pb[at:value_end]
        yield PROTOBUF, pb[:tag_start] + _varint(number << 3 | 2) + _varint(len(payload)) + payload + pb[value_end:]
        at = rng.randrange(len(js))
        quote = js.find(b'"', at)
        at = quote + 1 if quote >= 0 else at
        yield JSON, js[:at] + rng.choice(_BAD_UTF8 + (b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\u0000",
                                                      b"\\uZZZZ", b"\\")) + js[at:]
    yield JSON, b"\xef\xbb\xbf" + js                     # a UTF-8 byte order mark
    yield JSON, js.decode("utf-8").encode("utf-16")
    yield JSON, js.decode("utf-8").encode("utf-32-le")


_ID_VALUES = [b"", b"\x01", b"\x01" * 7, b"\x01" * 9, b"\x01" * 15, b"\x01" * 17, b"\x01" * 32, bytes(8), bytes(16),
              b"\xff" * 16, b"\xff" * 8, b"\x01" * 64]
_JSON_IDS = ["", "0", "abc", "zz" * 8, "zz" * 16, "0" * 16, "0" * 32, "1" * 15, "1" * 31, "1" * 33, "F" * 32,
             "nCJHrdAcwmZQtlGTrCfXPA==", "QqRo8AOfGds=", "0x" + "1" * 30, " " + "1" * 31, "1" * 64, 12345, None, True,
             [], {}, 1.5, "١" * 32, "\u00e9" * 16]


def bad_ids(rng: random.Random, msg: Any, signal: str, n: int) -> Iterator[tuple[str, bytes]]:
    fields = ["trace_id", "span_id"] + (["parent_span_id"] if signal == "traces" else [])
    for _ in range(n):
        m = copy.deepcopy(msg)
        items = _items(m, signal)
        for item in rng.sample(items, k=min(len(items), rng.choice([1, 1, 2, len(items)]))):
            setattr(item, rng.choice(fields), rng.choice(_ID_VALUES))
            if signal == "traces" and item.links and rng.random() < 0.3:
                item.links[0].span_id = rng.choice(_ID_VALUES)
        yield PROTOBUF, m.SerializeToString()
        doc = to_json_doc(msg, signal)
        outer, middle, leaf = _ITEM_LISTS[signal]
        json_items = [i for rs in doc.get(outer, []) for ss in rs.get(middle, []) for i in ss.get(leaf, [])]
        for item in rng.sample(json_items, k=min(len(json_items), rng.choice([1, 2, len(json_items)]))):
            key = rng.choice(["traceId", "spanId", "parentSpanId", "trace_id", "span_id"])
            item[key] = copy.deepcopy(rng.choice(_JSON_IDS))
        yield JSON, dumps(doc)


_TIMES = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, START_NS, 10**19, 2**62]
_JSON_TIMES = ["0", "-1", -1, "18446744073709551616", "18446744073709551615", "9223372036854775808", 1e30, "1e9",
               1.5, "soon", None, True, [], {}, "", " 1", "0x10", 2**64, -(2**63), "1767225600000000000.0", "NaN"]


def timestamps(rng: random.Random, msg: Any, signal: str, n: int) -> Iterator[tuple[str, bytes]]:
    fields = (["start_time_unix_nano", "end_time_unix_nano"] if signal == "traces"
              else ["time_unix_nano", "observed_time_unix_nano"])
    json_fields = (["startTimeUnixNano", "endTimeUnixNano", "start_time_unix_nano"] if signal == "traces"
                   else ["timeUnixNano", "observedTimeUnixNano"])
    for _ in range(n):
        m = copy.deepcopy(msg)
        items = _items(m, signal)
        for item in rng.sample(items, k=min(len(items), rng.choice([1, 2, len(items)]))):
            for f in rng.sample(fields, k=rng.choice([1, 2])):
                setattr(item, f, rng.choice(_TIMES))
            if signal == "traces" and item.events and rng.random() < 0.5:
                item.events[0].time_unix_nano = rng.choice(_TIMES)
        yield PROTOBUF, m.SerializeToString()
        doc = to_json_doc(msg, signal)
        outer, middle, leaf = _ITEM_LISTS[signal]
        json_items = [i for rs in doc.get(outer, []) for ss in rs.get(middle, []) for i in ss.get(leaf, [])]
        for item in rng.sample(json_items, k=min(len(json_items), rng.choice([1, 2]))):
            item[rng.choice(json_fields)] = copy.deepcopy(rng.choice(_JSON_TIMES))
        yield JSON, dumps(doc)


def _palette() -> list[tuple[str, Any]]:
    """(label, AnyValue-as-JSON) for every type, and edge values of each."""
    values: list[tuple[str, Any]] = [
        ("unset", {}), ("string", {"stringValue": "gpt-4o-mini"}), ("empty-string", {"stringValue": ""}),
        ("long-string", {"stringValue": "x" * 20000}), ("nul-string", {"stringValue": "a\u0000b"}),
        ("digits", {"stringValue": "12345678901234567890"}), ("float-string", {"stringValue": "1e308"}),
        ("json-string", {"stringValue": '{"model": ["x"], "a": {"b": null}}'}), ("inf-string", {"stringValue": "inf"}),
        ("bool", {"boolValue": True}), ("bool-false", {"boolValue": False}),
        ("int", {"intValue": "42"}), ("int-max", {"intValue": str(2**63 - 1)}), ("int-min", {"intValue": str(-(2**63))}),
        ("int-zero", {"intValue": 0}), ("int-negative", {"intValue": -5}),
        ("double", {"doubleValue": 0.25}), ("nan", {"doubleValue": "NaN"}), ("inf", {"doubleValue": "Infinity"}),
        ("-inf", {"doubleValue": "-Infinity"}), ("double-huge", {"doubleValue": 1.7e308}),
        ("double-tiny", {"doubleValue": 5e-324}), ("double-negzero", {"doubleValue": -0.0}),
        ("bytes", {"bytesValue": "AAECAwQ="}), ("bytes-empty", {"bytesValue": ""}),
        ("array-empty", {"arrayValue": {}}), ("array", {"arrayValue": {"values": [
            {"stringValue": "stop"}, {"intValue": 1}, {"doubleValue": "NaN"}, {}, {"boolValue": True}]}}),
        ("array-nested", {"arrayValue": {"values": [{"arrayValue": {"values": [{"kvlistValue": {"values": [
            {"key": "a", "value": {"bytesValue": "AA=="}}]}}]}}]}}),
        ("kvlist-empty", {"kvlistValue": {}}), ("kvlist", {"kvlistValue": {"values": [
            {"key": "model", "value": {"stringValue": "m"}}, {"key": "", "value": {}}, {"key": "n"},
            {"key": "model", "value": {"intValue": 3}}]}}),
    ]
    return values


def attr_values(rng: random.Random, msg: Any, signal: str, n: int) -> Iterator[tuple[str, bytes]]:
    palette = _palette()
    outer, middle, leaf = _ITEM_LISTS[signal]
    for k in range(n):
        doc = to_json_doc(msg, signal)
        label, value = palette[k % len(palette)]
        key = NORMALIZER_KEYS[(k // len(palette)) % len(NORMALIZER_KEYS)]
        rs = doc.setdefault(outer, [{}])[0]
        ss = rs.setdefault(middle, [{}])[0]
        items = ss.setdefault(leaf, [{}])
        item = rng.choice(items)
        positions = ["resource", "scope", "item", "item", "item"] + (
            ["event", "link"] if signal == "traces" else ["body"])
        position = positions[(k // (len(palette) * len(NORMALIZER_KEYS))) % len(positions)] if k < 3 * len(
            palette) * len(NORMALIZER_KEYS) else rng.choice(positions)
        attribute = {"key": key, "value": copy.deepcopy(value)}
        if position == "resource":
            rs.setdefault("resource", {}).setdefault("attributes", []).append(attribute)
        elif position == "scope":
            ss.setdefault("scope", {}).setdefault("attributes", []).append(attribute)
        elif position == "item":
            item.setdefault("attributes", []).append(attribute)
        elif position == "event":
            item.setdefault("events", [{"name": "exception", "timeUnixNano": str(START_NS)}])[0].setdefault(
                "attributes", []).append(attribute)
            item.setdefault("attributes", []).append({"key": "error.type", "value": {"stringValue": "x"}})
        elif position == "link":
            item.setdefault("links", [{"traceId": "d1" * 16, "spanId": "d2" * 8}])[0].setdefault(
                "attributes", []).append(attribute)
        else:
            item["body"] = copy.deepcopy(value)
        if rng.random() < 0.5:
            yield JSON, dumps(doc)
        else:
            m = _message(signal)
            try:
                _parse_otlp_json(doc, m, signal)
            except json_format.ParseError:
                yield JSON, dumps(doc)
                continue
            yield PROTOBUF, m.SerializeToString()


def _parse_otlp_json(doc: dict[str, Any], msg: Any, signal: str) -> None:
    doc = copy.deepcopy(doc)
    outer, middle, leaf = _ITEM_LISTS[signal]
    for rs in doc.get(outer, []):
        for ss in rs.get(middle, []):
            for item in ss.get(leaf, []):
                for d in [item] + item.get("links", []):
                    for key in _ID_KEYS:
                        if isinstance(d.get(key), str):
                            d[key] = base64.b64encode(bytes.fromhex(d[key])).decode()
    json_format.ParseDict(doc, msg)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 2**63, 2**64 + 1, rng.randrange(-10**6, 10**6), 10**30])
    if kind == 3:
        return rng.choice([0.5, 1e308, -1e-308, float("nan"), float("inf")])
    if kind in (4, 5):
        return rng.choice(["", "x", "\u0000", "é", "traceId", "5b8efff798038103d269b633813fc60c", "NaN", "1",
                           "resourceSpans", "\U0001f600"])
    keys = ["resourceSpans", "resourceLogs", "scopeSpans", "scopeLogs", "spans", "logRecords", "resource",
            "attributes", "key", "value", "stringValue", "intValue", "arrayValue", "values", "kvlistValue",
            "traceId", "spanId", "name", "startTimeUnixNano", "body", "events", "links", "status", "code",
            "resource_spans", "scope_spans", "x"]
    if kind in (6, 7):
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def json_shapes(rng: random.Random, signal: str, n: int) -> Iterator[bytes]:
    outer, middle, leaf = _ITEM_LISTS[signal]
    for i in range(n):
        shape = i % 4
        if shape == 0:
            doc = random_json(rng)
        elif shape == 1:
            doc = {outer: random_json(rng, 1)}
        elif shape == 2:
            doc = {outer: [{middle: random_json(rng, 2)}]}
        else:
            doc = {outer: [{middle: [{leaf: [random_json(rng, 3) for _ in range(rng.randrange(1, 4))]}]}]}
        yield dumps(doc)
    for text in (b"", b" ", b"\n\t ", b"null", b"0", b'""', b"[]", b"{}", b"{", b"}", b"{}{}", b'{"a":1,}',
                 b"NaN", b"Infinity", b'{"resourceSpans": null}', b"\x00", b'{"resourceSpans": [null]}',
                 b"1" * 5000, b"[1" + b",1" * 20000 + b"]", b'{"' + b"k" * 50000 + b'": 1}',
                 b'{"resourceSpans": [], "resourceSpans": 5}'):
        yield text


# -- assembly ------------------------------------------------------------------------


def generate() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()

    def add(category: str, signal: str, content_type: str, body: bytes, encoding: str = "identity") -> None:
        assert len(body) <= MAX_BODY, (category, len(body))
        counts[category] += 1
        records.append({"id": f"{category}-{counts[category]:05d}", "category": category, "signal": signal,
                        "content_type": content_type, "encoding": encoding,
                        "body_b64": base64.b64encode(body).decode("ascii")})

    rng = random.Random(20261126)
    for _name, signal, pb in _seeds():
        msg = _message(signal)
        msg.ParseFromString(pb)
        doc = to_json_doc(msg, signal)
        js = dumps(doc)
        # Captures are larger: fewer mutations each keeps the file small.
        def k(n: int, size: int = len(pb)) -> int:
            return n if size < 4096 else n * 2 // 5 if size < 8192 else n // 5
        add("seed", signal, PROTOBUF, pb)
        add("seed", signal, JSON, js)
        for ctype, body in truncations(rng, pb, js, k(150)):
            add("truncation", signal, ctype, body)
        for ctype, body in bitflips(rng, pb, js, k(150)):
            add("bitflip", signal, ctype, body)
        for body in wrong_wire_types(rng, pb, k(140)):
            add("wire_type", signal, PROTOBUF, body)
        for body in json_wrong_types(rng, doc, k(100)):
            add("wire_type", signal, JSON, body)
        for body in huge_lengths(rng, pb, k(40)):
            add("huge_repeated", signal, PROTOBUF, body)
        for ctype, body in invalid_utf8(rng, pb, js, k(80)):
            add("invalid_utf8", signal, ctype, body)
        for ctype, body in bad_ids(rng, msg, signal, k(70)):
            add("bad_ids", signal, ctype, body)
        for ctype, body in timestamps(rng, msg, signal, k(70)):
            add("timestamps", signal, ctype, body)
        for ctype, body in attr_values(rng, msg, signal, k(300)):
            add("attr_values", signal, ctype, body)
        # A body under the other content type.
        add("cross_encoding", signal, JSON, pb)
        add("cross_encoding", signal, PROTOBUF, js)
        add("cross_encoding", signal, PROTOBUF, json.dumps(doc, indent=2).encode())
        # gzip: valid gzip around a malformed body, and broken gzip around a valid one.
        for _ in range(12):
            ctype, body = rng.choice([(PROTOBUF, pb), (JSON, js)])
            packed = gzip.compress(body, compresslevel=6, mtime=0)
            damage = rng.choice(["truncated", "flipped", "trailing", "two-members-one-bad", "of-truncated", "empty"])
            if damage == "truncated":
                out = packed[:rng.randrange(1, len(packed))]
            elif damage == "flipped":
                data = bytearray(packed)
                data[rng.randrange(10, len(data))] ^= 1 << rng.randrange(8)
                out = bytes(data)
            elif damage == "trailing":
                out = packed + b"garbage"
            elif damage == "two-members-one-bad":
                out = packed + packed[: len(packed) // 2]
            elif damage == "of-truncated":
                out = gzip.compress(body[: len(body) // 3], mtime=0)
            else:
                out = gzip.compress(b"", mtime=0)
            add("compression", signal, ctype, out, "gzip")
    for signal in ("traces", "logs"):
        for ctype, body in repeated_fields(rng, signal):
            if len(body) <= MAX_BODY:  # the largest counts would not fit: the others stand for them
                add("huge_repeated", signal, ctype, body)
        for ctype, body in deep_nesting(rng, signal):
            if len(body) <= MAX_BODY:
                add("deep_nesting", signal, ctype, body)
        for body in json_shapes(rng, signal, 400):
            add("json_shape", signal, JSON, body)
        for i in range(300):
            size = rng.choice([1, 2, 5, 16, 100, 1000, 8000])
            body = bytes(rng.getrandbits(8) for _ in range(size))
            if i % 3 == 0:  # random bytes after a plausible first tag
                body = b"\x0a" + body
            add("random_bytes", signal, PROTOBUF if i % 4 else JSON, body)
        for _ in range(40):
            source = records[rng.randrange(len(records))]
            if source["encoding"] != "identity" or source["signal"] != signal:
                continue
            body = base64.b64decode(source["body_b64"])
            add("compression", signal, source["content_type"], gzip.compress(body, mtime=0), "gzip")
    return records


def write(records: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n")
    return buffer.getvalue()


def load(path: Path = CORPUS) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args(argv)
    records = generate()
    data = write(records)
    counts = Counter(r["category"] for r in records)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if args.check:
        same = CORPUS.exists() and CORPUS.read_bytes() == data
        print(f"{len(records)} bodies ({summary}); {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    CORPUS.write_bytes(data)
    print(f"wrote {CORPUS}: {len(records)} bodies, {len(data)} bytes ({summary})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
