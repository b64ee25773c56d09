"""The traffic generator: determinism, daily cycle, wire conventions, injected noise; sender and replay."""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.cli.traffic import parse_time, replay
from agentwatch.ingest.decode import decode_traces
from agentwatch.normalize import normalize
from agentwatch.normalize.attributes import any_value
from agentwatch.testing import ServerProcess
from agentwatch.traffic import (
    INTENTS,
    Conditions,
    DailyCycle,
    GeneratedSession,
    Generator,
    Rates,
    SendError,
    send,
)

START = parse_time("2026-01-01T00:00:00Z")
HOUR = 3600 * 10**9

#: Every attribute a real OTel GenAI instrumentation (plus the SDK resource and our SDK helper's intent) emits.
RESOURCE_KEYS = {
    "service.name", "service.version", "service.instance.id", "deployment.environment.name",
    "telemetry.sdk.language", "telemetry.sdk.name", "telemetry.sdk.version",
}
SPAN_KEYS = {
    "gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.agent.description", "gen_ai.conversation.id",
    "user.id", "agentwatch.intent",
    "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.request.temperature", "gen_ai.response.model",
    "gen_ai.response.id", "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.input.messages", "gen_ai.output.messages",
    "openai.response.system_fingerprint", "server.address", "server.port",
    "gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.tool.type", "gen_ai.tool.description",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "error.type",
    "gen_ai.data_source.id", "gen_ai.retrieval.query.text", "gen_ai.retrieval.documents", "gen_ai.retrieval.top_k",
}


def spans_of(session: GeneratedSession) -> list[Span]:
    return [span for rs in session.request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def attrs(span: Span) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in span.attributes}


def test_same_seed_and_start_give_the_same_bytes() -> None:
    def body(seed: int, start: int = START) -> list[bytes]:
        return [s.request.SerializeToString() for s in Generator(seed, start).sessions(count=40)]

    first = body(7)
    assert first == body(7)
    assert first != body(8)
    assert first != body(7, START + HOUR)
    gen = Generator(7, START)
    assert [s.truth for s in gen.sessions(count=40)] == [s.truth for s in gen.sessions(count=40)]


def test_daily_cycle_has_mean_one_and_shapes_arrivals() -> None:
    cycle = DailyCycle()
    factors = [cycle.factor(START + minute * 60 * 10**9) for minute in range(24 * 60)]
    assert sum(factors) / len(factors) == pytest.approx(1.0, abs=1e-3)
    assert min(factors) == pytest.approx(0.3, abs=1e-3) and max(factors) == pytest.approx(1.6, abs=1e-3)

    starts: list[int] = []
    for start in Generator(3, START, 120).arrivals():
        if start >= START + 24 * HOUR:
            break
        starts.append(start)
    hours = Counter((s - START) // HOUR for s in starts)
    night = sum(hours[h] for h in range(0, 6))
    midday = sum(hours[h] for h in range(10, 16))
    # Expected about 6 * 120 * 0.37 = 270 at night and 6 * 120 * 1.5 = 1080 at midday; Poisson sd < 35.
    assert midday > 2.5 * night
    assert abs(len(starts) - 24 * 120) < 5 * (24 * 120) ** 0.5


def test_requests_decode_and_normalize_into_sessions() -> None:
    kinds: Counter[str] = Counter()
    intents = set()
    for session in Generator(11, START + 12 * HOUR).sessions(count=150):
        decoded = decode_traces(session.request.SerializeToString(), "protobuf")
        assert decoded.rejected_spans == 0 and not decoded.errors
        spans = {(raw.trace_id, raw.span_id): normalize(raw) for raw in decoded.spans}
        assert {raw.trace_id for raw in decoded.spans} == set(session.truth.trace_ids)
        roots = [s for s in spans.values() if s.parent_span_id is None]
        assert len(roots) == len(session.truth.trace_ids)
        for span in spans.values():
            kinds[span.kind] += 1
            node = span
            while node.session_id is None and node.parent_span_id is not None:
                node = spans[(node.trace_id, node.parent_span_id)]
            assert node.session_id == session.session_id, "every span reaches the session id"
            assert span.agent_version == "1.0.0" and span.service == "support-agent"
            if span.kind == "llm":
                assert span.session_id == session.session_id and span.tokens_in and span.tokens_out
                assert span.output_text or span.output_messages[0]["parts"][0]["type"] == "tool_call"
            if span.kind == "retrieval":
                assert span.retrieved_documents and all(d["content"] for d in span.retrieved_documents)
            if span.kind == "tool":
                assert span.tool_name and span.tool_call_id and span.tool_args is not None
            if span.kind == "guardrail":  # the output screen runs while an answer streams, and passes
                answers = [s for s in spans.values() if s.kind == "llm" and s.trace_id == span.trace_id
                           and (s.start_ns, s.end_ns) == (span.start_ns, span.end_ns) and s.output_text]
                assert span.name == "apply_guardrail output_screen" and span.success and answers
        for root in roots:
            assert root.kind == "agent" and root.intent == session.intent and root.user_id
            assert session.start_ns <= root.start_ns and root.end_ns <= session.end_ns
        intents.add(session.intent)
    assert set(kinds) == {"agent", "llm", "tool", "retrieval", "guardrail"}
    assert intents == {name for name, _ in INTENTS}


def test_wire_carries_only_real_instrumentation_attributes() -> None:
    resource_keys: set[str] = set()
    span_keys: set[str] = set()
    rates = Rates(tool_error=0.3, unsupported_claim=0.5, out_of_policy=0.5, policy_violation=0.5)
    for session in Generator(5, START, rates=rates).sessions(count=300):
        for rs in session.request.resource_spans:
            resource_keys.update(kv.key for kv in rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    span_keys.update(kv.key for kv in span.attributes)
                    assert not span.events and not span.links
    assert resource_keys <= RESOURCE_KEYS, resource_keys - RESOURCE_KEYS
    assert span_keys <= SPAN_KEYS, span_keys - SPAN_KEYS


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _amounts(texts: list[str]) -> set[Decimal]:
    return {Decimal(n).quantize(Decimal("0.01")) for text in texts for n in _NUMBER.findall(text)}


def _turn_evidence(chat: Span) -> list[str]:
    """What the model had in this turn: its system prompt (this turn's articles) and tool results since the user."""
    messages = json.loads(attrs(chat)["gen_ai.input.messages"])
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    texts = [p["content"] for p in messages[0]["parts"]]
    texts += [p["response"] for m in messages[last_user:] for p in m["parts"] if p["type"] == "tool_call_response"]
    return texts


def _supported(kind: str, text: str, evidence: list[str]) -> bool:
    if kind == "amount":
        return Decimal(text.lstrip("$")).quantize(Decimal("0.01")) in _amounts(evidence)
    return any(text in e for e in evidence)


def test_unsupported_claims_are_in_the_answer_and_in_no_evidence_of_the_turn() -> None:
    gen = Generator(9, START, rates=Rates(unsupported_claim=0.3))
    claim_spans: list[str] = []
    for session in gen.sessions(count=300):
        spans = {span.span_id.hex(): span for span in spans_of(session)}
        one_trace_per_turn = len(session.truth.trace_ids) == session.truth.turns
        for claim in session.truth.unsupported_claims:
            claim_spans.append(claim.span_id)
            chat = spans[claim.span_id]
            output = json.loads(attrs(chat)["gen_ai.output.messages"])
            answer = " ".join(p["content"] for m in output for p in m["parts"] if p["type"] == "text")
            assert claim.text in answer and claim.replaced not in answer
            evidence = _turn_evidence(chat)
            if one_trace_per_turn:  # the turn is the trace: every tool result and document in it
                for span in spans.values():
                    a = attrs(span)
                    if span.trace_id == chat.trace_id:
                        evidence += [a.get("gen_ai.tool.call.result", ""), a.get("gen_ai.retrieval.documents", "")]
            assert not _supported(claim.kind, claim.text, evidence), claim
            assert _supported(claim.kind, claim.replaced, evidence), claim
    assert len(claim_spans) >= 30 and len(set(claim_spans)) == len(claim_spans), "at most one claim per answer"


def test_tool_error_rate_matches_the_configured_one_and_the_wire() -> None:
    truth_errors = silent = 0
    tool_spans = error_spans = error_shaped = 0
    for session in Generator(13, START, rates=Rates(tool_error=0.1)).sessions(count=1200):
        truth_errors += len(session.truth.tool_errors)
        silent += sum(e.silent for e in session.truth.tool_errors)
        for span in spans_of(session):
            a = attrs(span)
            if a["gen_ai.operation.name"] != "execute_tool":
                continue
            tool_spans += 1
            if span.status.code == Status.STATUS_CODE_ERROR:
                error_spans += 1
                assert a["error.type"] in {"timeout", "503", "rate_limited", "expired_token"}
                assert "gen_ai.tool.call.result" not in a
            elif '"error"' in a["gen_ai.tool.call.result"]:
                error_shaped += 1
                assert "error.type" not in a
        assert session.truth.tool_calls == sum(
            attrs(s)["gen_ai.operation.name"] == "execute_tool" for s in spans_of(session))
    assert abs(truth_errors / tool_spans - 0.1) < 0.025, truth_errors / tool_spans
    assert error_spans == truth_errors - silent and error_shaped == silent
    assert 0.15 < silent / truth_errors < 0.45


def test_policy_violations_refund_orders_outside_the_window() -> None:
    rates = Rates(out_of_policy=0.5, policy_violation=0.5)
    found = 0
    for session in Generator(17, START, rates=rates).sessions(count=300):
        spans = {span.span_id.hex(): span for span in spans_of(session)}
        for violation in session.truth.policy_violations:
            found += 1
            refund = spans[violation.span_id]
            assert attrs(refund)["gen_ai.tool.name"] == "refund_api"
            assert refund.status.code != Status.STATUS_CODE_ERROR  # a refund call that failed refunded nothing
            lookups = [attrs(s) for s in spans.values() if attrs(s).get("gen_ai.tool.name") == "lookup_order"
                       and s.trace_id == refund.trace_id and "gen_ai.tool.call.result" in attrs(s)]
            delivered = json.loads(lookups[-1]["gen_ai.tool.call.result"])["delivered_on"]
            assert (parse_time(delivered) - session.start_ns) < -30 * 24 * HOUR
    assert found >= 5
    # Steady traffic refuses every out-of-window request.
    assert Rates().policy_violation == 0.0
    assert not any(s.truth.policy_violations for s in Generator(17, START, rates=Rates(out_of_policy=0.5))
                   .sessions(count=300))


@dataclasses.dataclass(frozen=True)
class NewVersionAfter:
    at_ns: int

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if start_ns < self.at_ns:
            return conditions
        return dataclasses.replace(conditions, agent_version="2.0.0",
                                   rates=dataclasses.replace(conditions.rates, tool_error=0.5))


def test_incidents_adjust_conditions_without_moving_arrivals() -> None:
    base = list(Generator(21, START).sessions(until_ns=START + 2 * HOUR))
    shifted = list(Generator(21, START, incidents=[NewVersionAfter(START + HOUR)]).sessions(until_ns=START + 2 * HOUR))
    assert [s.start_ns for s in base] == [s.start_ns for s in shifted]
    assert [s.session_id for s in base] == [s.session_id for s in shifted]
    for session in shifted:
        version = {kv.key: any_value(kv.value) for kv in session.request.resource_spans[0].resource.attributes}
        expected = "2.0.0" if session.start_ns >= START + HOUR else "1.0.0"
        assert version["service.version"] == expected == session.truth.conditions.agent_version
    late_errors = sum(len(s.truth.tool_errors) for s in shifted if s.start_ns >= START + HOUR)
    assert late_errors > sum(len(s.truth.tool_errors) for s in base if s.start_ns >= START + HOUR)


class _Flaky(http.server.BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.headers.get("Content-Type", ""))
        status, headers, body = type(self).answers.pop(0) if type(self).answers else (200, {}, b"")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Flaky.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_send_retries_429_and_503_then_stops_on_400(flaky: str) -> None:
    sessions = list(Generator(1, START).sessions(count=2))
    _Flaky.answers = [(429, {"Retry-After": "0"}, b""), (503, {"Retry-After": "0"}, b"")]
    result = send(sessions, flaky, concurrency=1)
    assert (result.sessions, result.requests, result.retries) == (2, 2, 2)
    assert result.spans == sum(len(spans_of(s)) for s in sessions)
    assert set(_Flaky.seen) == {"application/x-protobuf"}
    _Flaky.answers = [(400, {"Content-Type": "application/json"}, b'{"message": "body is not OTLP"}')]
    with pytest.raises(SendError, match="400: body is not OTLP"):
        send(sessions[:1], flaky)


def test_replay_one_hour_into_a_server(tmp_path: Path) -> None:
    start = "2026-01-01T12:00:00Z"
    expected = list(Generator(4, parse_time(start), 120).sessions(until_ns=parse_time(start) + HOUR))
    with ServerProcess("sqlite:///" + str(tmp_path / "a.db"), cwd=tmp_path, grpc=False) as server:
        result = CliRunner().invoke(replay, ["--url", server.url, "--seed", "4", "--start", start,
                                             "--duration", "1h", "--rate", "120", "--per-request", "7", "--flush"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        spans = sum(len(ss.spans) for s in expected for rs in s.request.resource_spans for ss in rs.scope_spans)
        requests = -(-len(expected) // 7)  # seven sessions a request, the last one fewer
        assert result.output.startswith(f"sent {len(expected)} sessions, {spans} spans in {requests} requests ")
        items = httpx.get(server.url + "/api/v1/sessions", params={"limit": 1000}).json()["items"]
    assert 130 < len(expected) < 260  # about 1.55 x 120 around the 13:00 peak
    by_id = {item["session_id"]: item for item in items}
    assert set(by_id) == {s.session_id for s in expected}
    for session in expected:
        item = by_id[session.session_id]
        assert item["complete"] and item["intent"] == session.intent and item["agent_version"] == "1.0.0"
        assert item["tool_calls"] == session.truth.tool_calls
        assert item["tool_errors"] == sum(not e.silent for e in session.truth.tool_errors)
        assert item["turns"] == len(session.truth.trace_ids) and item["llm_calls"] > 0
