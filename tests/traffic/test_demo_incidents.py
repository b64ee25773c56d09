"""The demo's two new incidents on the wire, and what the example configuration's evaluators make of them.

Sessions go through the server's decoder and normalizer to a ``SessionView`` and are scored by the
evaluators of ``examples/support-agent/agentwatch.yaml``; the truth is used only to pick sessions and
to compare, never by an evaluator.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agentwatch.evaluate.build import build
from agentwatch.evaluate.catalogue import load_catalogue
from agentwatch.evaluate.session import SessionView
from agentwatch.ingest.decode import traces_from_message
from agentwatch.normalize import normalize
from agentwatch.sessions.summary import SPAN_COLUMNS, summarize
from agentwatch.settings import load_settings
from agentwatch.traffic import ExpiredAuthToken, GeneratedSession, Generator, ToolSchemaChange
from agentwatch.traffic.demo import SCENARIOS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-agent" / "agentwatch.yaml"
START = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
HOUR = 3600 * 10**9


def view_of(session: GeneratedSession) -> SessionView:
    decoded = traces_from_message(session.request)
    assert not decoded.errors, decoded.errors
    spans = [normalize(raw) for raw in decoded.spans]
    summary = summarize([{c: getattr(s, c) for c in SPAN_COLUMNS} for s in spans])
    assert summary is not None
    return SessionView.from_spans({**summary.as_row(), "session_id": session.session_id}, spans)


@pytest.fixture(scope="module")
def evaluators() -> dict[str, Any]:
    settings = load_settings(EXAMPLE)
    catalogue = load_catalogue(settings.sections, str(EXAMPLE))
    return {spec.name: build(spec) for spec in catalogue.specs}


def score(evaluator: Any, view: SessionView) -> Any:
    return asyncio.run(evaluator.evaluate(view))


def tool_spans(session: GeneratedSession, tool: str) -> list[Any]:
    found = []
    for resource_spans in session.request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.name == f"execute_tool {tool}":
                    found.append(span)
    return found


def result_of(span: Any) -> dict[str, Any]:
    value = next(kv.value.string_value for kv in span.attributes if kv.key == "gen_ai.tool.call.result")
    parsed: dict[str, Any] = json.loads(value)
    return parsed


def test_an_expired_token_is_a_401_body_on_a_call_that_reports_success_and_the_agent_confirms(
        evaluators: dict[str, Any]) -> None:
    incident = ExpiredAuthToken(START + HOUR)
    sessions = list(Generator(3, START, 120, incidents=[incident]).sessions(until_ns=START + 3 * HOUR))
    before = [s for s in sessions if s.start_ns < START + HOUR and tool_spans(s, "refund_api")]
    after = [s for s in sessions if s.start_ns >= START + HOUR and tool_spans(s, "refund_api")]
    assert len(after) >= 10 and before
    for session in after:
        [span] = tool_spans(session, "refund_api")
        assert span.status.code == 0 and result_of(span)["status"] == 401  # UNSET: the client raised nothing
        assert session.truth.goal_failed and "auth_token_expiry" in session.truth.incidents
        view = view_of(session)
        assert any("has been issued" in turn.answer for turn in view.turns)
        tool_use = score(evaluators["tool_use"], view)
        assert tool_use.score < 1.0 and "refund_api" in (tool_use.reason or "")
        assert score(evaluators["goal_completion_heuristic"], view).score < 1.0
    # Before the start: the same seed's steady traffic, the refund goes through.
    assert all(result_of(tool_spans(s, "refund_api")[0]).get("status") == "refunded"
               for s in before if not s.truth.tool_errors)


def test_a_schema_change_renames_the_lookup_result_and_the_example_rules_notice(evaluators: dict[str, Any]) -> None:
    incident = ToolSchemaChange(START + HOUR)
    sessions = list(Generator(4, START, 120, incidents=[incident]).sessions(until_ns=START + 4 * HOUR))
    changed = [s for s in sessions if s.start_ns >= START + HOUR and tool_spans(s, "lookup_order")
               and not s.truth.tool_errors]
    steady = [s for s in sessions if s.start_ns < START + HOUR and tool_spans(s, "lookup_order")
              and not s.truth.tool_errors]
    assert len(changed) >= 20 and steady
    for session in changed:
        result = result_of(tool_spans(session, "lookup_order")[0])
        assert "order_total" in result and "total" not in result and "delivered_on" not in result
        view = view_of(session)
        schema = score(evaluators["order_schema"], view)
        assert schema.score < 1.0 and "'total' is a required property" in (schema.reason or "")
        if tool_spans(session, "refund_api"):
            policy = score(evaluators["refund_policy"], view)
            assert policy.is_error, policy  # on_missing: error: nothing to check the refund against
    for session in steady:
        assert score(evaluators["order_schema"], view_of(session)).score == 1.0
    assert any(tool_spans(s, "refund_api") for s in changed)


def test_the_new_incidents_add_no_attribute_a_real_instrumentation_would_not_send() -> None:
    from test_generator import RESOURCE_KEYS, SPAN_KEYS

    sessions = Generator(8, START, 250, incidents=[ExpiredAuthToken(START), ToolSchemaChange(START)]).sessions(
        until_ns=START + HOUR)
    touched = set()
    for session in sessions:
        touched |= set(session.truth.incidents)
        for rs in session.request.resource_spans:
            assert {kv.key for kv in rs.resource.attributes} <= RESOURCE_KEYS
            for ss in rs.scope_spans:
                for span in ss.spans:
                    assert {kv.key for kv in span.attributes} <= SPAN_KEYS
    assert touched == {"auth_token_expiry", "tool_schema_change"}


def test_no_incident_changes_steady_traffic_before_its_start() -> None:
    plain = list(Generator(5, START, 120).sessions(until_ns=START + 2 * HOUR))
    with_both = list(Generator(5, START, 120, incidents=[ExpiredAuthToken(START + 2 * HOUR),
                                                         ToolSchemaChange(START + 2 * HOUR)])
                     .sessions(until_ns=START + 2 * HOUR))
    assert [s.request.SerializeToString() for s in plain] == [s.request.SerializeToString() for s in with_both]


def test_every_scenario_makes_its_incidents_before_now() -> None:
    now = START + 3 * 86400 * 10**9
    for scenario in SCENARIOS.values():
        incidents = scenario.make(now)
        assert len(incidents) == len(scenario.incidents)
        assert all(now - 6 * HOUR <= i.start_ns < now for i in incidents)
        assert bool(scenario.expected) == bool(incidents), scenario.name


def test_the_example_judges_score_against_an_endpoint_when_one_is_configured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``requires_env`` loads them only with ``AGENTWATCH_JUDGE_BASE_URL``; then they ask that endpoint."""
    from agentwatch.testing.judge import FakeJudgeServer, Reply

    session = next(iter(Generator(6, START, 120).sessions(count=1)))
    with FakeJudgeServer(default=Reply.verdict(0.25, "the refund was not confirmed")) as server:
        monkeypatch.setenv("AGENTWATCH_JUDGE_BASE_URL", server.base_url)
        catalogue = load_catalogue(load_settings(EXAMPLE).sections, str(EXAMPLE))
        judges = {spec.name: build(spec) for spec in catalogue.specs if spec.kind == "llm"}
        assert set(judges) == {"goal_completion_judge", "tone_judge"}
        results = {name: score(judge, view_of(session)) for name, judge in judges.items()}
        assert all(r.status == "ok" and r.score == 0.25 for r in results.values()), results
        prompts = [r.json["messages"][-1]["content"] for r in server.requests]
        assert len(prompts) == 2 and any("Rate the tone" in p for p in prompts)
    monkeypatch.delenv("AGENTWATCH_JUDGE_BASE_URL")
    assert not [s for s in load_catalogue(load_settings(EXAMPLE).sections, str(EXAMPLE)).specs if s.kind == "llm"]


@pytest.mark.parametrize(("value", "message"), [
    ("not a name", "key evaluators[0].requires_env: expected the name of an environment variable"),
    (42, "key evaluators[0].requires_env: expected the name of an environment variable"),
])
def test_requires_env_must_name_a_variable(tmp_path: Path, value: object, message: str) -> None:
    import yaml

    from agentwatch.errors import ConfigError

    path = tmp_path / "agentwatch.yaml"
    path.write_text(yaml.safe_dump({"evaluators": [{"name": "j", "kind": "llm", "requires_env": value,
                                                    "params": {"base_url": "http://127.0.0.1:9", "model": "m"}}]}))
    with pytest.raises(ConfigError, match=r"agentwatch.yaml, line \d+, " + re.escape(message)):
        load_catalogue(load_settings(path).sections, str(path))
