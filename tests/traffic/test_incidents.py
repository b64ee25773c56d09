"""Incidents of the traffic generator: each changes what it should from its start and nothing before."""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Sequence
from datetime import date

import pytest
from click.testing import CliRunner
from test_generator import RESOURCE_KEYS, SPAN_KEYS, attrs, spans_of

import agentwatch.traffic
from agentwatch.cli.traffic import parse_time, replay
from agentwatch.traffic import (
    INCIDENTS,
    GeneratedSession,
    Generator,
    GoalFailures,
    NewAgentVersion,
    NewToolError,
    OffPolicyRefund,
    Rates,
    SendResult,
    SlowIntent,
    day3_start,
    incident_from_spec,
)
from agentwatch.traffic.incidents import STEADY_GOAL_FAILURE

START = parse_time("2026-01-01T06:00:00Z")
HOUR = 3600 * 10**9
AT = START + 5 * HOUR  # incidents start at 11:00: 5 h of steady traffic before, 5 h after
UNTIL = AT + 5 * HOUR
#: All at once, on different tools and intents, so that two runs serve every test.
ALL = (NewToolError(AT, tool="lookup_order"), OffPolicyRefund(AT), NewAgentVersion(AT, unsupported_claim_rate=0.10),
       SlowIntent(AT, intent="refund", factor=2.0), GoalFailures(AT, intent="plan_change"))


def run(*incidents: object, rate: float = 250, rates: Rates | None = None, until: int = UNTIL,
        seed: int = 3) -> list[GeneratedSession]:
    gen = Generator(seed, START, rate, rates=rates, incidents=incidents)  # type: ignore[arg-type]
    return list(gen.sessions(until_ns=until))


@pytest.fixture(scope="module")
def steady() -> list[GeneratedSession]:
    return run()


@pytest.fixture(scope="module")
def incidents() -> list[GeneratedSession]:
    return run(*ALL)


def split(sessions: Sequence[GeneratedSession]) -> tuple[list[GeneratedSession], list[GeneratedSession]]:
    return [s for s in sessions if s.start_ns < AT], [s for s in sessions if s.start_ns >= AT]


def tool_spans(sessions: Sequence[GeneratedSession], tool: str) -> list[dict[str, object]]:
    out = []
    for session in sessions:
        for span in spans_of(session):
            a = attrs(span)
            if a.get("gen_ai.tool.name") == tool:
                out.append({**a, "_status": span.status.code, "_message": span.status.message})
    return out


def test_before_the_start_every_session_is_steady_traffic_byte_for_byte(
        steady: list[GeneratedSession], incidents: list[GeneratedSession]) -> None:
    changed = incidents
    assert len(steady) == len(changed)
    before = [(a, b) for a, b in zip(steady, changed, strict=True) if a.start_ns < AT]
    assert len(before) > 1000
    assert all(a.request.SerializeToString() == b.request.SerializeToString() for a, b in before)
    assert all(b.truth.incidents == () for _, b in before)
    after = [b for b in changed if b.start_ns >= AT]
    touched = {name for s in after for name in s.truth.incidents}
    assert touched == {incident.name for incident in ALL} and touched <= set(INCIDENTS)
    # No attribute exists only because this is a simulation, incidents or not.
    for session in changed:
        for rs in session.request.resource_spans:
            assert {kv.key for kv in rs.resource.attributes} <= RESOURCE_KEYS
            for ss in rs.scope_spans:
                for span in ss.spans:
                    assert {kv.key for kv in span.attributes} <= SPAN_KEYS
                    assert not span.events and not span.links


def test_new_tool_error_fails_its_tool_with_a_new_kind_from_its_start(incidents: list[GeneratedSession]) -> None:
    incident = ALL[0]
    assert isinstance(incident, NewToolError)
    before, after = split(incidents)
    assert not any(a.get("error.type") == "SchemaVersionMismatch" for s in (before, after)
                   for t in ("track_shipment", "refund_api", "get_invoice") for a in tool_spans(s, t))
    assert all(a.get("error.type") != "SchemaVersionMismatch" for a in tool_spans(before, "lookup_order"))
    calls = tool_spans(after, "lookup_order")
    new = [a for a in calls if a.get("error.type") == "SchemaVersionMismatch"]
    assert len(calls) > 800
    assert 0.16 < len(new) / len(calls) < 0.24  # 20%; sd about 1.4 points
    for a in new:
        assert a["_status"] == 2 and "gen_ai.tool.call.result" not in a
        assert a["_message"] == incident.message
    kinds = [e.kind for s in after for e in s.truth.tool_errors if e.tool == "lookup_order"]
    assert kinds.count("schema_version_mismatch") == len(new)


def test_off_policy_refund_is_exactly_one_refund_after_the_start() -> None:
    # Steady traffic refuses every out-of-window request: the incident's refund is the only violation.
    sessions = run(OffPolicyRefund(AT), rate=60, until=AT + 2 * HOUR)
    refused = [s for s in sessions if s.intent == "refund" and not s.truth.incidents
               and not tool_spans([s], "refund_api")
               and any("30-day refund window" in attrs(span).get("gen_ai.output.messages", "") for span in spans_of(s))]
    assert refused, "steady traffic has out-of-window requests, refused"
    violating = [s for s in sessions if s.truth.policy_violations]
    assert len(violating) == 1
    (session,) = violating
    first_refund_after = next(s for s in sessions if s.start_ns >= AT and s.intent == "refund")
    assert session is first_refund_after and session.truth.incidents == ("off_policy_refund",)
    assert [s for s in sessions if s.truth.incidents] == [session]
    order = json.loads(tool_spans([session], "lookup_order")[0]["gen_ai.tool.call.result"])  # type: ignore[arg-type]
    refunds = tool_spans([session], "refund_api")
    assert len(refunds) == 1 and refunds[0]["_status"] == 0 and "gen_ai.tool.call.result" in refunds[0]
    today = date.fromisoformat("2026-01-01")
    assert (today - date.fromisoformat(order["delivered_on"])).days > 30


def test_new_agent_version_switches_the_version_and_raises_unsupported_claims(
        incidents: list[GeneratedSession]) -> None:
    before, after = split(incidents)

    def versions(sessions: list[GeneratedSession]) -> set[str]:
        return {attrs(rs.resource)["service.version"] for s in sessions for rs in s.request.resource_spans}

    assert versions(before) == {"1.0.0"} and versions(after) == {"1.1.0"}

    def share(sessions: list[GeneratedSession]) -> float:
        return sum(bool(s.truth.unsupported_claims) for s in sessions) / len(sessions)

    assert len(after) > 1500
    assert 0.025 < share(before) < 0.065
    assert 0.075 < share(after) < 0.12  # about 10%, 8-11% by seed and window


def _chat_ms(sessions: Sequence[GeneratedSession], intent: str) -> float:
    return statistics.median(
        (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        for s in sessions if s.intent == intent for span in spans_of(s) if span.name.startswith("chat "))


def test_slow_intent_doubles_the_latency_of_that_intent_only(incidents: list[GeneratedSession]) -> None:
    before, after = split(incidents)
    assert 1.8 < _chat_ms(after, "refund") / _chat_ms(before, "refund") < 2.2
    for other in ("billing", "order_status", "policy_question"):
        assert 0.9 < _chat_ms(after, other) / _chat_ms(before, other) < 1.1
    assert {s.truth.conditions.latency_factor for s in after if s.intent == "refund"} == {2.0}
    assert {s.truth.conditions.latency_factor for s in after if s.intent != "refund"} == {1.0}
    refund_tool_ms = [(span.end_time_unix_nano - span.start_time_unix_nano) for s in after if s.intent == "refund"
                      for span in spans_of(s) if span.name == "execute_tool lookup_order"]
    assert statistics.median(refund_tool_ms) / 1e6 > 1.6 * 90


def test_goal_failures_in_one_intent_from_the_start(incidents: list[GeneratedSession]) -> None:
    before, after = split(incidents)

    def share(sessions: list[GeneratedSession], intent: str) -> float:
        of = [s for s in sessions if s.intent == intent]
        return sum(s.truth.goal_failed for s in of) / len(of)

    assert ALL[-1] == GoalFailures(AT, intent="plan_change", increase=0.25)
    assert share(before, "plan_change") < 0.1
    # 3.6% + 25 points = 28.6%; about 230 sessions, sd 3 points.
    target = STEADY_GOAL_FAILURE["plan_change"] + 0.25
    assert target - 0.075 < share(after, "plan_change") < target + 0.075
    assert share(after, "billing") < 0.1
    gave_up = [s for s in after if s.intent == "plan_change" and s.truth.goal_failed and not s.truth.tool_calls]
    assert len(gave_up) > 50
    for session in gave_up:
        assert not tool_spans([session], "change_plan")
        chats = [attrs(span) for span in spans_of(session) if span.name.startswith("chat ")]
        answer = json.loads(chats[0]["gen_ai.output.messages"])[0]["parts"][0]["content"]
        assert "sorry" in answer.lower()


def test_goal_failures_adds_its_increase_to_the_steady_rate_or_takes_a_rate() -> None:
    steady = GoalFailures(AT, intent="plan_change")
    assert steady.increase == 0.25 and steady.rate is None
    assert steady.target == pytest.approx(STEADY_GOAL_FAILURE["plan_change"] + 0.25)
    assert GoalFailures(AT, intent="refund", increase=0.1).target == pytest.approx(STEADY_GOAL_FAILURE["refund"] + 0.1)
    assert GoalFailures(AT, intent="refund", rate=0.35).target == 0.35
    generator = Generator(1, START)
    conditions = generator.conditions
    base = STEADY_GOAL_FAILURE["plan_change"]
    for unbound in (steady, GoalFailures(AT, intent="plan_change", rate=0.35)):
        assert unbound.give_up + (1 - unbound.give_up) * base == pytest.approx(unbound.target)  # give up, or fail
        incident = unbound.bind(generator)
        # Error diffusion over the intent's sessions in arrival order: the share that gives up is exact.
        planned = itertools.takewhile(lambda p: p[1] < AT + 86400 * 10**9, generator.planned())
        day = [start for _, start, intent in planned if start >= AT and intent == "plan_change"]
        picked = [start for start in day if start in incident.session_starts]
        assert abs(len(picked) - incident.give_up * len(day)) <= 1
        first = min(incident.session_starts)
        assert incident.adjust(conditions, start_ns=first, intent="plan_change").give_up == 1.0
        other = next(start for start in day if start not in incident.session_starts)
        assert incident.adjust(conditions, start_ns=other, intent="plan_change") == conditions
        assert incident.adjust(conditions, start_ns=AT - 1, intent="plan_change") == conditions
        assert incident.adjust(conditions, start_ns=first, intent="billing") == conditions
    with pytest.raises(ValueError, match="increase must be in"):
        GoalFailures(AT, increase=0.0)
    with pytest.raises(ValueError, match="increase must be in"):
        GoalFailures(AT, increase=0.99)
    with pytest.raises(ValueError, match="rate must be in"):
        GoalFailures(AT, rate=1.5)
    with pytest.raises(ValueError, match="intent must be one with tools"):
        GoalFailures(AT, intent="policy_question")


def test_incident_specs_and_the_default_start() -> None:
    start = parse_time("2026-01-01T00:00:00Z")
    assert day3_start(start) == parse_time("2026-01-03T10:00:00Z")
    assert day3_start(parse_time("2026-01-01T17:30:00Z")) == parse_time("2026-01-03T10:00:00Z")
    assert incident_from_spec("new_tool_error", start) == NewToolError(parse_time("2026-01-03T10:00:00Z"))
    assert incident_from_spec("slow_intent@2026-01-02T06:00:00Z").start_ns == parse_time("2026-01-02T06:00:00Z")
    with pytest.raises(ValueError, match="unknown incident"):
        incident_from_spec("meteor_strike", start)
    with pytest.raises(ValueError, match="expected NAME@"):
        incident_from_spec("new_tool_error@yesterday", start)


def test_replay_takes_incidents(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[GeneratedSession] = []

    def fake_send(sessions, url, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(sessions)
        return SendResult(len(seen), len(seen), 0, 0, 0, 0.0)

    monkeypatch.setattr(agentwatch.traffic, "send", fake_send)
    args = ["--start", "2026-01-03T09:00:00Z", "--duration", "2h", "--rate", "60"]
    result = CliRunner().invoke(replay, [*args, "--incident", "new_agent_version@2026-01-03T10:00:00Z",
                                         "--incident", "new_tool_error"])  # default: 2026-01-05T10:00:00Z
    assert result.exit_code == 0, result.output
    assert {s.truth.conditions.agent_version for s in seen if s.start_ns < parse_time("2026-01-03T10:00:00Z")} \
        == {"1.0.0"}
    assert {s.truth.conditions.agent_version for s in seen if s.start_ns >= parse_time("2026-01-03T10:00:00Z")} \
        == {"1.1.0"}
    assert not any("new_tool_error" in s.truth.incidents for s in seen)
    bad = CliRunner().invoke(replay, [*args, "--incident", "meteor_strike"])
    assert bad.exit_code == 2 and "unknown incident" in bad.output
