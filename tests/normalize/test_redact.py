"""Redaction at ingest: the redactor itself, its config section, and the captures end to end."""

from __future__ import annotations

import hashlib
import json
import pickle
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agentwatch.errors import ConfigError
from agentwatch.normalize import NormalizeOptions
from agentwatch.normalize.redact import NO_REDACTION, Redactor, email_mark, luhn_valid
from agentwatch.settings import load_file
from agentwatch.store.statements import dumps
from agentwatch.testing import ServerProcess

SSN = ("ssn", r"\b\d{3}-\d{2}-\d{4}\b")
R = Redactor(patterns=(SSN,))


def _mark(address: str) -> str:
    return f"[email:{hashlib.sha256(address.lower().encode()).hexdigest()[:8]}]"


# -- e-mail addresses ------------------------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "jane@example.com", "Jane.Roe@Example.COM", "jane.roe+tag@mail.example.co.uk", "j_r-99%x@sub-1.example.io",
    "a@b.cd", "first.last@xn--exmple-cua.org", "1234@numbers.net",
])
@pytest.mark.parametrize("frame", ["{}", "mail {} now", "<{}>", "({}).", "to:{},cc", "'{}'", "mailto:{}"])
def test_emails_are_replaced_by_their_deterministic_mark(address: str, frame: str) -> None:
    out = R.text(frame.format(address))
    assert out == frame.format(_mark(address))
    assert email_mark(address) == email_mark(address.upper()) == _mark(address)


@pytest.mark.parametrize("text", ["a@b", "user@localhost", "@handle", "x @ y.com", "price 3@4.5", "no at sign"])
def test_what_is_not_an_email_survives(text: str) -> None:
    assert R.text(text) == text


def test_email_right_after_an_escape_in_json_text() -> None:
    for prefix in ["\n", "\x01", "\\", "\\\n", "\t\"", "é"]:
        value = {"k": prefix + "jane@example.com"}
        out = R.json_text(dumps(value))
        assert json.loads(out) == {"k": prefix + _mark("jane@example.com")}


# -- card numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("number", [
    "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "5500 0000 0000 0004",
    "378282246310005", "3782 822463 10005", "6011111111111117", "4222222222222",
])
def test_luhn_valid_cards_are_replaced_with_the_last_four(number: str) -> None:
    digits = number.replace(" ", "").replace("-", "")
    assert luhn_valid(digits)
    assert R.text(f"card {number}, thanks") == f"card [card:****{digits[-4:]}], thanks"
    assert R.text(number) == f"[card:****{digits[-4:]}]"


@pytest.mark.parametrize("text", [
    "order A-1001", "1234567890123", "4111111111111112", "4111 1111 1111 1112", "41111111111111110000",
    "4111  1111  1111  1111", "phone +1 555 0100", "2026-11-26", "v1.2.3", "12345678901234567890123",
])
def test_numbers_that_are_not_cards_survive(text: str) -> None:
    assert R.text(text) == text


def test_card_among_other_digits() -> None:
    assert R.text("4111 1111 1111 1111 2024") == "[card:****1111] 2024"
    assert R.text("ref 12 4111 1111 1111 1111") == "ref 12 [card:****1111]"
    assert R.text("x:4111111111111111,y") == "x:[card:****1111],y"


def test_json_numbers_are_not_cards() -> None:
    """A timestamp or id sent as a number keeps its value; the same digits in a string are a card."""
    text = dumps({"time_ns": 4111111111111111, "f": 0.4111111111111111, "neg": -4111111111111111,
                  "list": [4111111111111111], "s": "4111111111111111"})
    out = json.loads(R.json_text(text))
    assert out == {"time_ns": 4111111111111111, "f": 0.4111111111111111, "neg": -4111111111111111,
                   "list": [4111111111111111], "s": "[card:****1111]"}


# -- configured patterns ---------------------------------------------------------------------------

def test_configured_pattern_mark() -> None:
    assert R.text("ssn 123-45-6789.") == "ssn [redacted:ssn]."
    assert R.text("not 1234-56-789") == "not 1234-56-789"
    r = Redactor(emails=False, cards=False, patterns=(("secret", r"sk-[A-Za-z0-9]{8,}"),))
    assert r.text("key sk-abcdef123456 jane@example.com") == "key [redacted:secret] jane@example.com"


def test_pattern_matches_within_string_values_only() -> None:
    r = Redactor(emails=False, cards=False, patterns=(("any", r'[a-z]+":"[a-z]+'), ("num", r"\d{3}"),
                                                       ("esc", r"n[a-z]+")))
    text = dumps({"key": "value", "n": 12345, "s": "a\nbcd 123"})
    out = json.loads(r.json_text(text))
    # a match across a quote is skipped, a number literal is not rewritten, a match inside \n is skipped
    assert out == {"key": "value", "n": 12345, "s": "a\nbcd [redacted:num]"}


def test_patterns_see_escaped_characters_as_separators() -> None:
    """A newline or quote inside a value ends a match and counts as a word boundary."""
    value = {"s": "line\n123-45-6789\tx \"123-45-6789\" 12\n3-45-6789"}
    out = json.loads(R.json_text(dumps(value)))
    assert out == {"s": "line\n[redacted:ssn]\tx \"[redacted:ssn]\" 12\n3-45-6789"}


def test_everything_off() -> None:
    r = Redactor(emails=False, cards=False)
    assert not r.active
    assert r.text("jane@example.com 4111111111111111") == "jane@example.com 4111111111111111"


def test_value_returns_the_same_object_when_nothing_matches() -> None:
    value = {"a": ["b", 1, {"c": "d"}]}
    assert R.value(value) is value
    assert R.value({"a": ["jane@example.com"]}) == {"a": [_mark("jane@example.com")]}
    assert R.value(None) is None
    assert R.value({"nan": float("nan"), "e": "jane@example.com"})["e"] == _mark("jane@example.com")


def test_columns() -> None:
    row = {"user_id": "Jane@Example.com", "name": "chat", "intent": None, "_session": "s-4111111111111111"}
    R.columns(row, ("user_id", "name", "intent", "_session"))
    assert row == {"user_id": _mark("jane@example.com"), "name": "chat", "intent": None,
                   "_session": "s-[card:****1111]"}


def test_options_are_picklable() -> None:
    options = NormalizeOptions(redaction=R)
    again = pickle.loads(pickle.dumps(options))
    assert again.redaction == R
    assert again.redaction.text("123-45-6789") == "[redacted:ssn]"
    assert NormalizeOptions().redaction == Redactor(emails=True, cards=True)
    assert pickle.loads(pickle.dumps(NO_REDACTION)) == NO_REDACTION


# -- JSON validity under random text -------------------------------------------------------------

PLANTED = ["jane.roe@example.com", "4111 1111 1111 1111", "5500-0000-0000-0004", "123-45-6789"]
SEPARATORS = [" ", "\n", "\t", "\x01", "\x1f", '"', "\\", ",", ":", "\u2028", "/"]


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.tuples(st.text(max_size=30), st.sampled_from(PLANTED), st.sampled_from(SEPARATORS)),
                    min_size=1, max_size=5),
    tail=st.text(max_size=30),
    number=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_redacted_json_stays_valid_and_holds_no_planted_value(pieces: list[tuple[str, str, str]], tail: str,
                                                               number: int) -> None:
    text = "".join(f"{before}{sep}{planted} " for before, planted, sep in pieces) + tail
    value = {"msg": text, "nested": [{"args": text}, number, 1.5, None, True], text[:20]: number}
    out = R.json_text(dumps(value))
    parsed = json.loads(out)  # valid JSON
    assert parsed["nested"][1] == number, "numbers are never rewritten"
    flat = json.dumps(parsed, ensure_ascii=False)
    for planted in PLANTED:
        if planted in text:
            assert planted not in flat
    assert "[email:" in flat or "example.com" not in text
    assert R.text(text.replace("\x00", "\ufffd")) == parsed["msg"], "a string alone and inside JSON alike"


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20))
def test_any_json_value_stays_valid(value: Any) -> None:
    r = Redactor(patterns=(SSN, ("word", r"[a-z]{3}"), ("digits", r"[0-9]+")))
    out = r.json_text(dumps(value))
    json.loads(out)


# -- the config section ----------------------------------------------------------------------------

def _section(tmp_path: Path, body: str) -> tuple[Any, str]:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return load_file(path)["sections"].get("redaction"), str(path)


def test_section_parses(tmp_path: Path) -> None:
    section, where = _section(tmp_path, r"""
        project: p
        redaction:
          emails: true
          cards: false
          patterns:
            - {name: ssn, regex: '\b\d{3}-\d{2}-\d{4}\b'}
            - name: api-key
              regex: 'sk-[A-Za-z0-9]{20,}'
        """)
    r = Redactor.from_section(section, where)
    assert (r.emails, r.cards) == (True, False)
    assert [n for n, _ in r.patterns] == ["ssn", "api-key"]
    assert Redactor.from_section(None) == Redactor()


@pytest.mark.parametrize(("body", "line", "key", "message"), [
    ("redaction:\n  emails: yes please\n", 2, "redaction.emails", "expected true or false"),
    ("redaction:\n  phones: true\n", 2, "redaction.phones", "unknown setting"),
    ("redaction:\n  patterns: ssn\n", 2, "redaction.patterns", "expected a list"),
    ("redaction:\n  patterns:\n    - name: ssn\n      regex: '(\\d{3}'\n", 4, "redaction.patterns[0].regex",
     "not a valid regular expression: missing ), unterminated subpattern"),
    ("redaction:\n  patterns:\n    - {name: ok, regex: a}\n    - {name: 'bad\"name', regex: b}\n", 4,
     "redaction.patterns[1].name", "expected a name"),
    ("redaction:\n  patterns:\n    - {name: x, regex: 'a*'}\n", 3, "redaction.patterns[0].regex",
     "matches the empty string"),
    ("redaction:\n  patterns:\n    - {name: x, regex: a}\n    - {name: x, regex: b}\n", 4,
     "redaction.patterns[1].name", "defined twice"),
    ("redaction:\n  patterns:\n    - {name: x, regex: a, flags: i}\n", 3, "redaction.patterns[0].flags",
     "unknown setting"),
    ("redaction: [1]\n", None, "redaction", "expected a mapping"),
])
def test_section_errors_name_file_line_and_key(tmp_path: Path, body: str, line: int | None, key: str,
                                               message: str) -> None:
    section, where = _section(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        Redactor.from_section(section, where)
    text = str(info.value)
    assert text.startswith(where)
    if line is not None:
        assert f"line {line}," in text
    assert f"key {key}:" in text
    assert message in text


# -- end to end on the captures --------------------------------------------------------------------

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "otlp-captures"
RUNS = ["otel-genai", "otel-genai-events", "otel-genai-grpc", "otel-genai-legacy", "openinference", "openllmetry"]
EMAIL = "Jane.Roe@Example.com"
CARD = "4111 1111 1111 1111"
CARD_DASHED = "5500-0000-0000-0004"
SSN_VALUE = "123-45-6789"
NOT_A_CARD = "4111111111111112"  # fails Luhn: an order number
PLANT = f"contact {EMAIL}, card {CARD} or {CARD_DASHED}, ssn {SSN_VALUE}, order {NOT_A_CARD}"
LEAKS = [EMAIL.lower(), "4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "5500000000000004",
         SSN_VALUE]


class Planter:
    def __init__(self) -> None:
        self.where: list[str] = []

    def json_value(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            out = {k: self.json_value(v, f"{path}.{k}") for k, v in value.items()}
            out["planted_note"] = PLANT
            self.where.append(path + ".planted_note")
            return out
        if isinstance(value, list):
            return [self.json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and len(value) >= 12:
            self.where.append(path)
            return f"{value} {PLANT}"
        return value

    def any_value(self, value: AnyValue, path: str) -> None:
        kind = value.WhichOneof("value")
        if kind == "string_value":
            text = value.string_value
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)):
                value.string_value = json.dumps(self.json_value(parsed, path))
            elif len(text) >= 20:
                value.string_value = f"{text} {PLANT}"
                self.where.append(path)
        elif kind == "array_value":
            for i, item in enumerate(value.array_value.values):
                self.any_value(item, f"{path}[{i}]")
        elif kind == "kvlist_value":
            self.attributes(value.kvlist_value.values, path)

    def attributes(self, attributes: Any, path: str) -> None:
        for kv in attributes:
            self.any_value(kv.value, f"{path}.{kv.key}")


def _plant_traces(data: bytes, planter: Planter) -> bytes:
    request = ExportTraceServiceRequest.FromString(data)
    for rs in request.resource_spans:
        rs.resource.attributes.append(KeyValue(key="owner.contact", value=AnyValue(string_value=EMAIL)))
        for ss in rs.scope_spans:
            for span in ss.spans:
                planter.attributes(span.attributes, span.name)
                span.attributes.append(KeyValue(key="user.id", value=AnyValue(string_value=EMAIL)))
                span.status.message = f"failed for {EMAIL}" if span.status.code == 2 else span.status.message
                for event in span.events:
                    planter.attributes(event.attributes, f"{span.name}/event {event.name}")
    return request.SerializeToString()


def _plant_logs(data: bytes, planter: Planter) -> bytes:
    request = ExportLogsServiceRequest.FromString(data)
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for record in sl.log_records:
                planter.attributes(record.attributes, f"log {record.event_name}")
                if record.body.WhichOneof("value") is None:
                    record.body.string_value = f"log body: {PLANT}"
                    planter.where.append(f"log {record.event_name}.body")
                else:
                    planter.any_value(record.body, f"log {record.event_name}.body")
    return request.SerializeToString()


def _all_text(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        parts = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    parts.append(str(value))
        return "\n".join(parts)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def redacting_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not CAPTURES.exists():
        pytest.fail(f"the OTLP captures are expected at {CAPTURES}")
    tmp = tmp_path_factory.mktemp("redact")
    config = tmp / "agentwatch.yaml"
    config.write_text("redaction:\n  patterns:\n    - {name: ssn, regex: '\\b\\d{3}-\\d{2}-\\d{4}\\b'}\n",
                      encoding="utf-8")
    yield tmp, config


@pytest.mark.parametrize("run", RUNS)
def test_planted_values_never_reach_the_database(redacting_server: Any, run: str) -> None:
    tmp, config = redacting_server
    db = tmp / f"{run}.db"
    planter = Planter()
    files = sorted(p for p in (CAPTURES / run).glob("*.pb"))
    assert files
    with ServerProcess(f"sqlite:///{db}", config=config, cwd=tmp, grpc=False) as server:
        for path in files:
            signal = "logs" if "logs" in path.name else "traces"
            plant = _plant_logs if signal == "logs" else _plant_traces
            body = plant(path.read_bytes(), planter)
            response = httpx.post(f"{server.url}/v1/{signal}", content=body,
                                  headers={"content-type": "application/x-protobuf"}, timeout=30)
            assert response.status_code == 200, response.text
        assert httpx.post(f"{server.url}/api/v1/admin/flush", timeout=60).status_code == 200
        stored = _all_text(db)

    where = " | ".join(planter.where)
    assert len(planter.where) >= 3, where
    assert any(w in where.lower() for w in ("message", "prompt", "content", "completion", "input")), where
    assert any(w in where.lower() for w in ("argument", "parameter", "input", "arguments")), where
    if any("logs" in p.name for p in files):
        assert ".body" in where
    lowered = stored.lower()
    for leak in LEAKS:
        assert leak.lower() not in lowered, f"{leak!r} was stored ({run})"
    assert _mark(EMAIL) in stored
    assert "[card:****1111]" in stored and "[card:****0004]" in stored
    assert "[redacted:ssn]" in stored
    assert NOT_A_CARD in stored, "a number failing Luhn survives"
    assert "A-1001" in stored, "order ids survive"
    # the user id column holds the deterministic mark, so sessions still group by user
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        users = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM spans")}
    finally:
        conn.close()
    assert users == {_mark(EMAIL)}
