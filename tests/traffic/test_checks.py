"""goal_completion, the simulated shop's Python evaluator: from the transcript alone, it agrees with the truth."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
import yaml

from agentwatch.evaluate.build import build
from agentwatch.evaluate.catalogue import load_catalogue
from agentwatch.evaluate.session import SessionView
from agentwatch.ingest.decode import traces_from_message
from agentwatch.normalize import normalize
from agentwatch.sessions.summary import SPAN_COLUMNS, summarize
from agentwatch.testing import make_span, traces_request
from agentwatch.traffic import GeneratedSession, Generator, GoalFailures
from agentwatch.traffic.checks import GOAL_TOOLS, goal_completion
from agentwatch.traffic.incidents import TOOLS_OF_INTENT

START = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
HOUR = 3600 * 10**9
MS = 1_000_000


def view_of(request: Any, session_id: str = "sess-1") -> SessionView:
    """An OTLP request -> decoder -> normalizer -> SessionView, as the server reads it."""
    decoded = traces_from_message(request)
    assert not decoded.errors, decoded.errors
    spans = [normalize(raw) for raw in decoded.spans]
    summary = summarize([{c: getattr(s, c) for c in SPAN_COLUMNS} for s in spans])
    assert summary is not None
    return SessionView.from_spans({**summary.as_row(), "session_id": session_id}, spans)


def generated_view(session: GeneratedSession) -> SessionView:
    return view_of(session.request, session.session_id)


# --------------------------------------------------------------------------- hand-made sessions


def session(intent: str, *steps: tuple[str, Any], trace: str = "b1") -> SessionView:
    """One turn: ``("tool", (name, args, result or None, error or None))`` and ``("answer", text)`` steps in order."""
    spans = [make_span(trace, "1", name="invoke_agent support", start_ns=START, duration_ms=10_000, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "sess-1", "agentwatch.intent": intent})]
    user = [{"role": "user", "parts": [{"type": "text", "content": "Hi, I need help."}]}]
    for i, (kind, step) in enumerate(steps):
        span, at = f"{i + 16:x}", START + (i + 1) * 100 * MS
        if kind == "answer":
            spans.append(make_span(trace, span, parent="1", name="chat gpt-4o-mini", start_ns=at, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(user),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": step}]}])}))
            continue
        name, args, result, error = step
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                                 "gen_ai.tool.call.arguments": json.dumps(args)}
        if result is not None:
            attrs["gen_ai.tool.call.result"] = json.dumps(result)
        if error:
            attrs["error.type"] = error
        spans.append(make_span(trace, span, parent="1", name=f"execute_tool {name}", start_ns=at, attributes=attrs,
                               error=error))
    return view_of(traces_request(spans))


ORDER = {"order_id": "A-1", "status": "delivered", "delivered_on": "2025-12-20", "total": 42.5}


def test_a_confirmed_refund_passes() -> None:
    view = session("refund", ("tool", ("lookup_order", {"order_id": "A-1"}, ORDER, None)),
                   ("tool", ("refund_api", {"order_id": "A-1", "amount": 42.5}, {"status": "refunded"}, None)),
                   ("answer", "Done! I've refunded $42.50 for order A-1."))
    assert goal_completion(view) == (1.0, "refund_api succeeded (span 0000000000000011)")


def test_a_masked_failure_fails() -> None:
    """The result is an error with status OK, and the agent confirmed the refund anyway."""
    view = session("refund", ("tool", ("lookup_order", {"order_id": "A-1"}, ORDER, None)),
                   ("tool", ("refund_api", {"order_id": "A-1"}, {"error": "token expired"}, None)),
                   ("answer", "Your refund of $42.50 for order A-1 has been issued."))
    assert goal_completion(view) == (
        0.0, "refund_api returned an error (result has 'error': token expired) (span 0000000000000011), yet the agent "
             "answered 'Your refund of $42.50 for order A-1 has been issued.'")


@pytest.mark.parametrize("result", [{"status": "failed"}, {"status": "declined", "reason": "card expired"},
                                    {"status": 503}, "Error: payments service unavailable"])
def test_error_shaped_action_results_are_no_success(result: Any) -> None:
    view = session("plan_change", ("tool", ("change_plan", {"plan": "Pro"}, result, None)),
                   ("answer", "Your plan has been changed to Pro."))
    score, reason = goal_completion(view)
    assert score == 0.0 and reason.startswith("change_plan returned an error (")


def test_the_apology_fails_even_after_the_customer_writes_again() -> None:
    apology = "Sorry, something went wrong on our side while contacting the payments system."
    view = session("refund", ("tool", ("lookup_order", {"order_id": "A-1"}, ORDER, None)),
                   ("tool", ("refund_api", {"order_id": "A-1"}, None, "503")), ("answer", apology))
    assert goal_completion(view) == (0.0, "the agent apologised that a system could not be reached (turn 0): "
                                          f"{apology!r}")
    # Given up before any tool call: the action tool is never called.
    view = session("cancel_subscription", ("answer", "I'm sorry, I couldn't reach our subscription system just now."))
    assert goal_completion(view)[1].startswith("the agent apologised that a system could not be reached (turn 0)")
    # No apology, no call: still not carried out.
    view = session("billing", ("answer", "Your invoice is on its way."))
    assert goal_completion(view) == (0.0, "get_invoice was never called")
    view = session("billing", ("tool", ("get_invoice", {}, None, "timeout")), ("answer", "Let me know if I can help."))
    assert goal_completion(view)[1].startswith("get_invoice never succeeded: 1 failed call(s), the last: timeout")


def test_a_refusal_under_policy_passes() -> None:
    late = {**ORDER, "delivered_on": "2025-10-01"}
    view = session("refund", ("tool", ("lookup_order", {"order_id": "A-1"}, late, None)),
                   ("answer", "I'm sorry, Ana: order A-1 was delivered on 2025-10-01, which is outside our 30-day refund "
                              "window, so I can't refund it."))
    score, reason = goal_completion(view)
    assert score == 1.0 and reason.startswith("refused under policy (turn 0): \"I'm sorry, Ana: order A-1")


def test_order_status_without_the_latest_scan_and_policy_questions_pass() -> None:
    shipped = {**ORDER, "status": "shipped", "tracking_number": "1Z9"}
    view = session("order_status", ("tool", ("lookup_order", {"order_id": "A-1"}, shipped, None)),
                   ("tool", ("track_shipment", {"tracking_number": "1Z9"}, None, "timeout")),
                   ("answer", "Order A-1 shipped on 2025-12-30; I couldn't get the latest scan from the carrier just "
                              "now."))
    assert goal_completion(view) == (1.0, "lookup_order succeeded (span 0000000000000010)")
    view = session("policy_question", ("answer", "Express delivery takes 1-2 business days and costs $12.00."))
    assert goal_completion(view) == (1.0, "answered: 'Express delivery takes 1-2 business days and costs $12.00.'")
    assert goal_completion(session("policy_question")) == (0.0, "the agent never answered")


def test_an_unknown_intent_is_an_evaluation_error_through_the_catalogue() -> None:
    assert set(GOAL_TOOLS) == set(TOOLS_OF_INTENT)
    with pytest.raises(ValueError, match="no goal known for intent 'flight_booking'"):
        goal_completion(session("flight_booking", ("answer", "Booked.")))
    catalogue = load_catalogue(yaml.safe_load("""
evaluators:
  - name: goal_completion
    kind: python
    function: agentwatch.traffic.checks:goal_completion
    threshold: 1.0
"""))
    evaluator = build(catalogue.specs[0])
    result = asyncio.run(evaluator.evaluate(session("flight_booking", ("answer", "Booked."))))
    assert result.is_error and "no goal known for intent 'flight_booking'" in (result.error or "")
    result = asyncio.run(evaluator.evaluate(session("policy_question", ("answer", "Basic is $9.99."))))
    assert (result.status, result.score) == ("ok", 1.0)


# --------------------------------------------------------------------------- generated traffic


def test_goal_completion_agrees_with_the_truth_on_generated_traffic() -> None:
    """Steady traffic (seeds 1 and 2, default rates) and traffic with ``GoalFailures`` in every intent with tools.

    Measured over 2 x 7 days of steady traffic (40,071 sessions): no disagreement, and per-intent failure rates
    equal to ``STEADY_GOAL_FAILURE`` (order_status 1.9%, refund 3.2%, billing 1.9%, plan_change 3.6%,
    cancel_subscription 3.5%, policy_question 0%)."""
    confusion: Counter[tuple[bool, bool]] = Counter()
    kinds: Counter[str] = Counter()
    steady = [s for seed in (1, 2) for s in Generator(seed, START + 9 * HOUR).sessions(count=750)]
    incident = [GoalFailures(START, intent=intent) for intent, tools in TOOLS_OF_INTENT.items() if tools]
    failing = list(Generator(3, START + 9 * HOUR, incidents=incident).sessions(count=300))
    for generated in steady + failing:
        score, reason = goal_completion(generated_view(generated))
        confusion[(generated.truth.goal_failed, score == 0.0)] += 1
        if score == 0.0:
            kinds[reason.split(" (")[0].split(" returned an error")[0]] += 1
    agree = confusion[(True, True)] + confusion[(False, False)]
    assert agree / sum(confusion.values()) >= 0.97, confusion
    assert confusion[(True, True)] >= 60 and confusion[(False, False)] >= 1500, confusion
    # Every shape of failure is in there: apologies (tool errors, giving up) and masked failures.
    assert kinds["the agent apologised that a system could not be reached"] >= 50, kinds
    assert sum(n for kind, n in kinds.items() if kind in GOAL_TOOLS["refund"] + GOAL_TOOLS["plan_change"]
               + GOAL_TOOLS["cancel_subscription"]) >= 1, kinds
