"""The built-in rules, on sessions built from GenAI spans the way the server reads them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules import (
    RULES,
    AnswerPattern,
    Budget,
    Confirmation,
    DateWindow,
    NumericBound,
    RequiredTool,
    ToolAllowlist,
    ToolError,
    ToolSchema,
    make_rule,
)
from agentwatch.evaluate.session import SessionView
from agentwatch.ingest.decode import traces_from_message
from agentwatch.normalize import normalize
from agentwatch.sessions.summary import SPAN_COLUMNS, summarize
from agentwatch.testing import make_span, traces_request
from agentwatch.traffic import Generator, Rates

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CAPTURE = DATA / "otlp-captures" / "otel-genai" / "0001-traces.pb"
TAU_BENCH = DATA / "tau-bench" / "gpt-4o-airline-dev.json"
T0 = 1_767_225_600_000_000_000
MS = 1_000_000


def view_of(spans: list[Span] | ExportTraceServiceRequest) -> SessionView:
    request = traces_request(spans) if isinstance(spans, list) else spans
    decoded = traces_from_message(request)
    assert not decoded.errors, decoded.errors
    normalized = [normalize(raw) for raw in decoded.spans]
    summary = summarize([{c: getattr(s, c) for c in SPAN_COLUMNS} for s in normalized])
    assert summary is not None
    return SessionView.from_spans({**summary.as_row(), "session_id": "sess-1"}, normalized)


def run(rule: Any, view: SessionView) -> EvalResult:
    result: EvalResult = asyncio.run(rule.evaluate(view))
    return result


def msg(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def call_msg(name: str, call_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}]}


def agent(span: str = "1", *, intent: str | None = "refund", trace: str = "a1", start: int = T0,
          duration_ms: int = 5000) -> Span:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
                             "gen_ai.conversation.id": "sess-1"}
    if intent:
        attrs["agentwatch.intent"] = intent
    return make_span(trace, span, name="invoke_agent support", start_ns=start, duration_ms=duration_ms, attributes=attrs)


def chat(span: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], *, at_ms: int, parent: str = "1",
         trace: str = "a1", duration_ms: int = 10, cost: float | None = None) -> Span:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                             "gen_ai.input.messages": json.dumps(inputs), "gen_ai.output.messages": json.dumps(outputs)}
    if cost is not None:
        attrs["llm.cost.total"] = cost
    return make_span(trace, span, parent=parent, name="chat gpt-4o-mini", start_ns=T0 + at_ms * MS,
                     duration_ms=duration_ms, attributes=attrs)


def tool(span: str, name: str, *, at_ms: int, args: Any = None, result: Any = None, error: str | None = None,
         error_type: str | None = None, call_id: str | None = None, parent: str = "1", trace: str = "a1",
         duration_ms: int = 10) -> Span:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    if call_id:
        attrs["gen_ai.tool.call.id"] = call_id
    if args is not None:
        attrs["gen_ai.tool.call.arguments"] = args if isinstance(args, str) else json.dumps(args)
    if result is not None:
        attrs["gen_ai.tool.call.result"] = result if isinstance(result, str) else json.dumps(result)
    if error_type:
        attrs["error.type"] = error_type
    return make_span(trace, span, parent=parent, name=f"execute_tool {name}", start_ns=T0 + at_ms * MS,
                     duration_ms=duration_ms, attributes=attrs, error=error)


def tools_session(*calls: tuple[str, Any, Any], intent: str | None = "refund") -> SessionView:
    """A root with one successful tool call per ``(name, args, result)``, 100 ms apart."""
    spans = [agent(intent=intent)]
    for i, (name, args, result) in enumerate(calls):
        spans.append(tool(f"{i + 16:x}", name, at_ms=100 * (i + 1), args=args, result=result))
    return view_of(spans)


def span_id(n: str) -> str:
    return n.rjust(16, "0")


def raises(cls: Any, params: Any) -> str:
    with pytest.raises(ValueError) as info:
        cls(params)
    return str(info.value)


# --------------------------------------------------------------------------- registry


def test_registry_names_every_rule() -> None:
    assert sorted(RULES) == ["answer_pattern", "budget", "call_limit", "confirmation", "date_window",
                             "grounded_arguments", "numeric_bound", "required_tool", "tool_allowlist", "tool_error",
                             "tool_schema"]
    assert all(cls.name == name for name, cls in RULES.items())
    assert isinstance(make_rule("budget", {"max_turns": 3}), Budget)


def test_unknown_rule() -> None:
    with pytest.raises(ValueError) as info:
        make_rule("tool_eror", {})
    assert str(info.value) == ("unknown rule 'tool_eror' (known: answer_pattern, budget, call_limit, confirmation, "
                               "date_window, grounded_arguments, numeric_bound, required_tool, tool_allowlist, "
                               "tool_error, tool_schema)")


@pytest.mark.parametrize(("name", "params", "message"), [
    ("tool_error", [], "rule 'tool_error': params must be a mapping, got list"),
    ("tool_error", {"tool": ["x"]}, "rule 'tool_error': unknown parameter 'tool' (known: error_keys, patterns, tools)"),
    ("budget", {"max_turn": 3}, "rule 'budget': unknown parameter 'max_turn' (known: max_cost_usd, max_latency_ms, max_tool_calls, max_turns)"),
])
def test_params_are_checked_at_construction(name: str, params: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        make_rule(name, params)
    assert str(info.value) == message


# --------------------------------------------------------------------------- tool_error


def test_tool_error_passes_successful_calls() -> None:
    view = tools_session(("lookup_order", {"order_id": "A-1"}, {"status": "shipped", "errors": [], "timeout": 30}))
    result = run(ToolError(), view)
    assert (result.status, result.score, result.reason) == ("ok", 1.0, "1 tool call(s) succeeded")


def test_tool_error_span_error() -> None:
    view = view_of([agent(), tool("3", "lookup_order", at_ms=100, error="order service timed out", error_type="timeout")])
    result = run(ToolError(), view)
    assert result.score == 0.0
    assert result.reason == f"tool lookup_order failed: timeout: order service timed out (span {span_id('3')})"


def test_tool_error_result_that_looks_like_success() -> None:
    """Status UNSET, no error.type: only the result says it failed."""
    view = view_of([agent(), tool("3", "lookup_order", at_ms=100, args={"order_id": "A-1"},
                                  result={"error": "token expired"})])
    assert view.tool_calls[0].success, "the span itself claims success"
    result = run(ToolError(), view)
    assert result.score == 0.0
    assert result.reason == f"tool lookup_order failed: result has 'error': token expired (span {span_id('3')})"


@pytest.mark.parametrize(("result", "pattern"), [
    ("Error: flight HAT030 not available on date 2024-05-13", r"^\s*(?:error|exception|fatal)\b"),  # tau-bench style
    ({"status": "denied", "message": "Unauthorized"}, r"\bunauthori[sz]ed\b"),
    ({"status": 401, "message": "Unauthorized"}, "status"),
    ({"message": "Rate limit exceeded, retry later"}, r"\brate[- ]?limit(?:ed)?\b"),
    ("upstream request timed out", r"\btimed out\b"),
    ("HTTP 503 Service Unavailable", r"\bservice unavailable\b"),
    ({"detail": "the access token has expired"}, r"\btoken (?:has |is )?(?:expired|invalid|revoked)\b"),
    ({"errors": [{"code": "E42"}]}, None),
])
def test_tool_error_shaped_results(result: Any, pattern: str | None) -> None:
    outcome = run(ToolError(), tools_session(("lookup_order", {}, result)))
    assert outcome.score == 0.0
    if pattern is None:
        assert "result has 'errors': [{\"code\": \"E42\"}]" in outcome.reason
    elif pattern == "status":
        assert "result has 'status': 401" in outcome.reason
    else:
        assert f"result matches {pattern!r}" in outcome.reason


def test_tool_error_only_the_tools_asked_for() -> None:
    view = tools_session(("weather", {}, {"error": "no data"}), ("lookup_order", {}, {"status": "ok"}))
    assert run(ToolError({"tools": ["lookup_*"]}), view).score == 1.0
    assert run(ToolError({"tools": ["weather"]}), view).score == 0.0
    assert run(ToolError({"tools": ["refund_api"]}), view).reason == "none of the tools was called"


def test_tool_error_custom_patterns_and_keys() -> None:
    view = tools_session(("lookup_order", {}, {"problem": "card declined"}))
    assert run(ToolError(), view).score == 1.0
    assert run(ToolError({"patterns": ["declined"]}), view).score == 0.0
    assert run(ToolError({"error_keys": ["problem"]}), view).score == 0.0


def test_tool_error_no_calls() -> None:
    assert run(ToolError(), view_of([agent()])).reason == "no tool calls"


def test_tool_error_lists_several_failures_with_a_cap() -> None:
    view = tools_session(*[("lookup_order", {}, {"error": f"e{i}"}) for i in range(7)])
    reason = run(ToolError(), view).reason
    assert reason.count("tool lookup_order failed") == 5 and reason.endswith("; and 2 more")


@pytest.mark.parametrize(("params", "message"), [
    ({"patterns": ["(unclosed"]},
     "rule 'tool_error': parameter 'patterns' has an invalid regular expression '(unclosed': missing ), unterminated subpattern at position 0"),
    ({"tools": "lookup_order"}, "rule 'tool_error': parameter 'tools' must be a non-empty list of non-empty strings, got 'lookup_order'"),
    ({"tools": []}, "rule 'tool_error': parameter 'tools' must be a non-empty list of non-empty strings, got []"),
])
def test_tool_error_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(ToolError, params) == message


# --------------------------------------------------------------------------- tool_allowlist

ALLOWED = {"allowed": {"refund": ["lookup_order", "refund_*"], "billing": ["lookup_invoice"]}}


def test_allowlist_passes_allowed_tools_with_patterns() -> None:
    view = tools_session(("lookup_order", {}, {}), ("refund_api", {}, {}))
    result = run(ToolAllowlist(ALLOWED), view)
    assert (result.score, result.reason) == (1.0, "2 tool call(s) allowed for intent 'refund'")


def test_allowlist_fails_a_tool_outside_the_intents_set() -> None:
    view = tools_session(("lookup_order", {}, {}), ("delete_account", {}, {}))
    result = run(ToolAllowlist(ALLOWED), view)
    assert result.score == 0.0
    assert result.reason == (f"tool delete_account is not allowed for intent 'refund' (span {span_id('11')}) "
                             "(allowed: lookup_order, refund_*)")


def test_allowlist_default_set_for_unknown_or_missing_intent() -> None:
    params = {**ALLOWED, "default": ["lookup_order"]}
    assert run(ToolAllowlist(params), tools_session(("lookup_order", {}, {}), intent="shipping")).score == 1.0
    result = run(ToolAllowlist(params), tools_session(("refund_api", {}, {}), intent=None))
    assert result.score == 0.0 and "not allowed for intent None (default set)" in result.reason


def test_allowlist_without_a_set_for_the_intent_is_an_evaluation_failure() -> None:
    result = run(ToolAllowlist(ALLOWED), tools_session(("lookup_order", {}, {}), intent="shipping"))
    assert result.is_error and result.score is None
    assert result.error == "rule 'tool_allowlist': no allowed tools for intent 'shipping' and no 'default'"
    assert run(ToolAllowlist(ALLOWED), view_of([agent(intent="shipping")])).score == 1.0


@pytest.mark.parametrize(("params", "message"), [
    ({}, "rule 'tool_allowlist': parameter 'allowed' is required"),
    ({"allowed": ["lookup_order"]}, "rule 'tool_allowlist': parameter 'allowed' must be a non-empty mapping, got ['lookup_order']"),
    ({"allowed": {"refund": "lookup_order"}},
     "rule 'tool_allowlist': parameter 'allowed.refund' must be a list of non-empty strings, got 'lookup_order'"),
])
def test_allowlist_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(ToolAllowlist, params) == message


# --------------------------------------------------------------------------- required_tool


def test_required_tool() -> None:
    view = tools_session(("lookup_order", {}, {}))
    assert run(RequiredTool({"tools": ["lookup_order"]}), view).reason == "called lookup_order"
    result = run(RequiredTool({"tools": ["lookup_order", "refund_api"]}), view)
    assert (result.score, result.reason) == (0.0, "required tool refund_api was not called")


def test_required_tool_only_for_some_intents() -> None:
    view = tools_session(("lookup_order", {}, {}), intent="refund")
    result = run(RequiredTool({"tools": ["verify_identity"], "when_intent": "account_change"}), view)
    assert (result.score, result.reason) == (1.0, "not applicable: intent 'refund' is not in when_intent")
    assert run(RequiredTool({"tools": ["verify_identity"], "when_intent": ["refund"]}), view).score == 0.0


def test_required_tool_require_success() -> None:
    view = view_of([agent(), tool("3", "verify_identity", at_ms=100, error="denied", error_type="auth")])
    assert run(RequiredTool({"tools": ["verify_identity"]}), view).score == 1.0
    result = run(RequiredTool({"tools": ["verify_identity"], "require_success": True}), view)
    assert (result.score, result.reason) == (0.0, "required tool verify_identity never succeeded (1 failed call(s))")


@pytest.mark.parametrize(("params", "message"), [
    ({}, "rule 'required_tool': parameter 'tools' is required"),
    ({"tools": ["a"], "when_intent": 3}, "rule 'required_tool': parameter 'when_intent' must be a non-empty list of non-empty strings, got 3"),
    ({"tools": ["a"], "require_success": "yes"}, "rule 'required_tool': parameter 'require_success' must be true or false, got 'yes'"),
])
def test_required_tool_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(RequiredTool, params) == message


# --------------------------------------------------------------------------- answer_pattern


def answers_session(*answers: str) -> SessionView:
    """One trace per answer (one turn each), the user asking "question N"."""
    spans = []
    for i, answer in enumerate(answers):
        trace = f"b{i + 1}"
        spans.append(agent("1", trace=trace, start=T0 + i * 10_000 * MS))
        spans.append(chat("2", [msg("user", f"question {i}")], [msg("assistant", answer)], trace=trace,
                          at_ms=i * 10_000 + 100))
    return view_of(spans)


def test_answer_pattern_forbidden_in_any_turn() -> None:
    view = answers_session("Refund issued for A-1001.", "We GUARANTEE delivery tomorrow.")
    rule = AnswerPattern({"forbidden": [r"\bguarantee", r"\bSSN\b"], "flags": ["IGNORECASE"]})
    result = run(rule, view)
    assert (result.score, result.reason) == (0.0, r"turn 1 answer contains forbidden '\\bguarantee': 'GUARANTEE'")
    assert run(AnswerPattern({"forbidden": [r"\bguarantee"]}), view).score == 1.0, "case-sensitive without the flag"


def test_answer_pattern_required_any_turn_or_final() -> None:
    view = answers_session("Your order A-1001 is found.", "Anything else?")
    assert run(AnswerPattern({"required": [r"A-\d{4}"]}), view).score == 1.0
    result = run(AnswerPattern({"required": [r"A-\d{4}"], "scope": "final"}), view)
    assert (result.score, result.reason) == (0.0, r"required 'A-\\d{4}' not found in the final answer")


def test_answer_pattern_without_answers() -> None:
    assert run(AnswerPattern({"required": ["x"]}), view_of([agent()])).score == 0.0
    assert run(AnswerPattern({"forbidden": ["x"]}), view_of([agent()])).score == 1.0


@pytest.mark.parametrize(("params", "message"), [
    ({}, "rule 'answer_pattern': give 'forbidden' or 'required' patterns"),
    ({"forbidden": ["[a-"]},
     "rule 'answer_pattern': parameter 'forbidden' has an invalid regular expression '[a-': unterminated character set at position 0"),
    ({"forbidden": ["x"], "flags": ["CASELESS"]},
     "rule 'answer_pattern': parameter 'flags' must be a list of regex flags (IGNORECASE, MULTILINE, DOTALL, VERBOSE), got ['CASELESS']"),
    ({"required": ["x"], "scope": "last"}, "rule 'answer_pattern': parameter 'scope' must be one of 'all_turns', 'final', got 'last'"),
])
def test_answer_pattern_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(AnswerPattern, params) == message


# --------------------------------------------------------------------------- tool_schema

REFUND_SCHEMA = {
    "tool": "refund_api",
    "arguments_schema": {"type": "object", "required": ["order_id", "amount"],
                         "properties": {"order_id": {"type": "string", "pattern": "^A-\\d+$"},
                                        "amount": {"type": "number", "exclusiveMinimum": 0}}},
    "result_schema": {"type": "object", "required": ["status"],
                      "properties": {"status": {"enum": ["refunded", "pending"]}}},
}


def test_tool_schema_passes_valid_calls() -> None:
    view = tools_session(("refund_api", '{"order_id": "A-1001", "amount": 42.5}', '{"status": "refunded"}'))
    result = run(ToolSchema(REFUND_SCHEMA), view)
    assert (result.score, result.reason) == (1.0, "1 call(s) of refund_api match the schema")


def test_tool_schema_reports_each_violation() -> None:
    view = tools_session(("refund_api", {"order_id": "1001", "amount": "lots"}, {"status": "approved"}))
    result = run(ToolSchema(REFUND_SCHEMA), view)
    assert result.score == 0.0
    assert result.reason == (
        f"tool refund_api arguments: amount: 'lots' is not of type 'number' (span {span_id('10')}); "
        f"tool refund_api arguments: order_id: '1001' does not match '^A-\\\\d+$' (span {span_id('10')}); "
        f"tool refund_api result: status: 'approved' is not one of ['refunded', 'pending'] (span {span_id('10')})")


def test_tool_schema_skips_the_result_of_a_failed_call_and_other_tools() -> None:
    view = view_of([agent(), tool("3", "refund_api", at_ms=100, args={"order_id": "A-1", "amount": 1}, error="boom"),
                    tool("4", "lookup_order", at_ms=200, args={"x": "y"}, result={"status": "weird"})])
    assert run(ToolSchema(REFUND_SCHEMA), view).score == 1.0


def test_tool_schema_missing_content_is_an_evaluation_failure() -> None:
    view = view_of([agent(), tool("3", "refund_api", at_ms=100)])
    result = run(ToolSchema(REFUND_SCHEMA), view)
    assert result.is_error
    assert result.error == (f"rule 'tool_schema': no arguments recorded for tool refund_api (span {span_id('3')}); "
                            "is message content capture on?")


@pytest.mark.parametrize(("params", "message"), [
    ({"arguments_schema": {"type": "object"}}, "rule 'tool_schema': parameter 'tool' is required"),
    ({"tool": "refund_api"}, "rule 'tool_schema': give 'arguments_schema' or 'result_schema'"),
    ({"tool": "refund_api", "arguments_schema": {"type": "nonsense"}},
     "rule 'tool_schema': parameter 'arguments_schema' is not a valid JSON Schema: 'nonsense' is not valid under any of the given schemas"),
    ({"tool": "refund_api", "result_schema": "object"},
     "rule 'tool_schema': parameter 'result_schema' must be a non-empty mapping, got 'object'"),
])
def test_tool_schema_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(ToolSchema, params) == message


# --------------------------------------------------------------------------- numeric_bound

BOUND_FROM_LOOKUP = {"tool": "refund_api", "field": "amount",
                     "max_from": {"tool": "lookup_order", "field": "order.total", "match": ["order_id"]}}


@pytest.mark.parametrize(("amount", "score"), [(42.5, 1.0), ("99.90", 1.0), (99.91, 0.0), ("$120", 0.0)])
def test_numeric_bound_against_the_order_total(amount: Any, score: float) -> None:
    view = tools_session(("lookup_order", {"order_id": "A-1"}, {"order": {"total": "99.90"}}),
                         ("refund_api", {"order_id": "A-1", "amount": amount}, {"status": "refunded"}))
    result = run(NumericBound(BOUND_FROM_LOOKUP), view)
    assert result.score == score
    if score == 0.0:
        value = "99.91" if amount == 99.91 else "120"
        assert result.reason == (f"refund_api.amount = {value} > 99.90 (lookup_order.order.total, span {span_id('10')}) "
                                 f"(span {span_id('11')})")


def test_numeric_bound_uses_the_latest_matching_lookup_before_the_call() -> None:
    view = tools_session(("lookup_order", {"order_id": "A-2"}, {"order": {"total": 500}}),
                         ("lookup_order", {"order_id": "A-1"}, {"order": {"total": 50}}),
                         ("refund_api", {"order_id": "A-1", "amount": 80}, {}),
                         ("lookup_order", {"order_id": "A-1"}, {"order": {"total": 1000}}))
    result = run(NumericBound(BOUND_FROM_LOOKUP), view)
    assert result.score == 0.0 and "> 50 (lookup_order.order.total" in result.reason


NO_LOOKUP = ("refund_api.amount = 80 has no bound: no successful lookup_order call with the same order_id before it "
             f"(span {span_id('11')})")


@pytest.mark.parametrize(("on_missing", "expected"), [
    ("fail", ("ok", 0.0, NO_LOOKUP, None)),
    ("pass", ("ok", 1.0, "1 call(s) of refund_api within bounds (1 without a bound, on_missing: pass)", None)),
    ("error", ("error", None, "", f"rule 'numeric_bound': {NO_LOOKUP}")),
])
def test_numeric_bound_without_a_lookup(on_missing: str, expected: tuple[Any, ...]) -> None:
    """The only lookup is of another order: the refund of A-1 has no total to compare with."""
    view = tools_session(("lookup_order", {"order_id": "A-2"}, {"order": {"total": 500}}),
                         ("refund_api", {"order_id": "A-1", "amount": 80}, {}))
    result = run(NumericBound({**BOUND_FROM_LOOKUP, "on_missing": on_missing}), view)
    assert (result.status, result.score, result.reason, result.error) == expected


def test_numeric_bound_fixed_max_min_and_max_field() -> None:
    view = tools_session(("refund_api", {"amount": 120, "limit": 100}, {}), ("refund_api", {"amount": -5, "limit": 100}, {}))
    result = run(NumericBound({"tool": "refund_api", "field": "amount", "max": 100, "min": 0}), view)
    assert result.reason == (f"refund_api.amount = 120 > 100 (max) (span {span_id('10')}); "
                             f"refund_api.amount = -5 < 0 (min) (span {span_id('11')})")
    result = run(NumericBound({"tool": "refund_api", "field": "amount", "max_field": "limit"}), view)
    assert result.reason == f"refund_api.amount = 120 > 100 (refund_api.limit) (span {span_id('10')})"


def test_numeric_bound_nested_paths_and_not_called() -> None:
    view = tools_session(("refund_api", {"items": [{"price": 10}, {"price": 30}]}, {}))
    assert run(NumericBound({"tool": "refund_api", "field": "items.1.price", "max": 25}), view).score == 0.0
    assert run(NumericBound({"tool": "refund_api", "field": "items.0.price", "max": 25}), view).score == 1.0
    assert run(NumericBound({"tool": "other", "field": "x", "max": 1}), view).reason == "tool other not called"


@pytest.mark.parametrize(("params", "message"), [
    ({"tool": "refund_api", "field": "amount"}, "rule 'numeric_bound': give a bound: 'max', 'max_field', 'max_from' or 'min'"),
    ({"tool": "refund_api", "field": "amount", "max": 1, "max_field": "limit"},
     "rule 'numeric_bound': give at most one of 'max', 'max_field' and 'max_from', got 'max', 'max_field'"),
    ({"tool": "refund_api", "max": 1}, "rule 'numeric_bound': parameter 'field' is required"),
    ({"tool": "refund_api", "field": "a..b", "max": 1},
     "rule 'numeric_bound': parameter 'field' must be a dotted path like 'order.total', got 'a..b'"),
    ({"tool": "refund_api", "field": "amount", "max": "100"}, "rule 'numeric_bound': parameter 'max' must be a finite number, got '100'"),
    ({"tool": "refund_api", "field": "amount", "max_from": {"tool": "lookup_order"}},
     "rule 'numeric_bound': parameter 'max_from.field' is required"),
    ({"tool": "refund_api", "field": "amount", "max_from": {"tool": "lookup_order", "field": "total", "when": 1}},
     "rule 'numeric_bound': parameter 'max_from' has unknown key 'when' (known: field, match, tool)"),
    ({"tool": "refund_api", "field": "amount", "max": 1, "on_missing": "ignore"},
     "rule 'numeric_bound': parameter 'on_missing' must be one of 'fail', 'pass', 'error', got 'ignore'"),
])
def test_numeric_bound_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(NumericBound, params) == message


# --------------------------------------------------------------------------- date_window

REFUND_WINDOW = {"tool": "refund_api", "date_from": {"tool": "lookup_order", "field": "delivered_on",
                                                     "match": ["order_id"]}, "max_days": 30}


def refund_after(delivered_on: Any, *, order_id: str = "A-1") -> SessionView:
    """A lookup of ``order_id`` returning ``delivered_on``, then a refund of A-1, on 2026-01-01 (UTC)."""
    return tools_session(("lookup_order", {"order_id": order_id}, {"order_id": order_id, "delivered_on": delivered_on}),
                         ("refund_api", {"order_id": "A-1", "amount": 20}, {"status": "refunded"}))


@pytest.mark.parametrize(("delivered_on", "utc_date", "days"), [
    ("2025-12-02", "2025-12-02", 30),
    ("2025-12-01", "2025-12-01", 31),
    ("2025-11-15", "2025-11-15", 47),
    ("2025-12-31", "2025-12-31", 1),
    ("2026-01-05", "2026-01-05", -4),                         # "after" the call: not late
    ("2025-12-01T23:30:00-01:00", "2025-12-02", 30),
    ("2025-12-02T00:30:00+02:00", "2025-12-01", 31),
    ("2025-12-01T23:59:59Z", "2025-12-01", 31),
    ("2025-12-02T08:00:00", "2025-12-02", 30),                # naive: UTC
])
def test_date_window_days_between_the_date_and_the_call(delivered_on: str, utc_date: str, days: int) -> None:
    result = run(DateWindow(REFUND_WINDOW), refund_after(delivered_on))
    assert result.status == "ok" and result.score == (0.0 if days > 30 else 1.0)
    if days <= 30:
        assert result.reason == "1 call(s) of refund_api within 30 days of lookup_order.delivered_on"
    else:
        assert result.reason == (f"refund_api (span {span_id('11')}) for order_id A-1: delivered_on {utc_date} "
                                 f"(lookup_order, span {span_id('10')}), {days} days before the call on 2026-01-01; "
                                 "limit 30")


def test_date_window_uses_the_latest_matching_successful_lookup_before_the_call() -> None:
    spans = [agent(),
             tool("10", "lookup_order", at_ms=100, args={"order_id": "A-1"}, result={"delivered_on": "2025-12-20"}),
             tool("11", "lookup_order", at_ms=200, args={"order_id": "A-2"}, result={"delivered_on": "2025-10-01"}),
             tool("12", "lookup_order", at_ms=300, args={"order_id": "A-1"}, error="503", error_type="503"),
             tool("13", "refund_api", at_ms=400, args={"order_id": "A-1"}, result={"status": "refunded"}),
             tool("14", "lookup_order", at_ms=500, args={"order_id": "A-1"}, result={"delivered_on": "2025-01-01"}),
             tool("15", "refund_api", at_ms=600, args={"order_id": "A-2"}, error="declined", error_type="402"),
             tool("16", "refund_api", at_ms=700, args={"order_id": "A-3"}, error="declined", error_type="402")]
    view = view_of(spans)
    # the lookup of span 10 (12 failed, 14 came after): 12 days. The failed refunds of did not act.
    result = run(DateWindow(REFUND_WINDOW), view)
    assert result.reason == "1 call(s) of refund_api within 30 days of lookup_order.delivered_on"
    # Without match, the latest successful lookup of any order counts: A-2's.
    result = run(DateWindow({**REFUND_WINDOW, "date_from": {"tool": "lookup_order", "field": "delivered_on"}}), view)
    assert result.score == 0.0
    assert result.reason == (f"refund_api (span {span_id('13')}): delivered_on 2025-10-01 (lookup_order, span "
                             f"{span_id('11')}), 92 days before the call on 2026-01-01; limit 30")


def test_date_window_nested_field_and_several_violations() -> None:
    view = tools_session(
        ("lookup_order", {"order_id": "A-1"}, {"order": {"delivery": {"date": "2025-11-01"}}}),
        ("refund_api", {"order_id": "A-1"}, {}),
        ("refund_api", {"order_id": "A-1"}, {}))
    rule = DateWindow({**REFUND_WINDOW, "date_from": {"tool": "lookup_order", "field": "order.delivery.date",
                                                      "match": ["order_id"]}, "max_days": 60})
    result = run(rule, view)
    assert result.score == 0.0 and result.reason.count("61 days before the call on 2026-01-01; limit 60") == 2
    assert run(DateWindow({**REFUND_WINDOW, "tool": "cancel_order"}), view).reason == "no successful call of cancel_order"


NO_DATE_LOOKUP = (f"refund_api (span {span_id('11')}) for order_id A-1: no successful lookup_order call with the same "
                  "order_id before it")
NO_DATE_FIELD = (f"refund_api (span {span_id('11')}) for order_id A-1: no date at lookup_order.delivered_on (span "
                 f"{span_id('10')}), found nothing")


@pytest.mark.parametrize(("view", "on_missing", "expected"), [
    (refund_after("2025-01-01", order_id="A-2"), "fail", ("ok", 0.0, NO_DATE_LOOKUP, None)),
    (refund_after("2025-01-01", order_id="A-2"), "pass",
     ("ok", 1.0, "1 call(s) of refund_api within 30 days of lookup_order.delivered_on (1 without a date, "
                 "on_missing: pass)", None)),
    (refund_after("2025-01-01", order_id="A-2"), "error", ("error", None, "", f"rule 'date_window': {NO_DATE_LOOKUP}")),
    (tools_session(("lookup_order", {"order_id": "A-1"}, {"status": "shipped"}), ("refund_api", {"order_id": "A-1"}, {})),
     "fail", ("ok", 0.0, NO_DATE_FIELD, None)),
    (refund_after("last week"), "fail",
     ("ok", 0.0, NO_DATE_FIELD.replace("found nothing", "found 'last week'"), None)),
    (refund_after(20251101), "error",
     ("error", None, "", "rule 'date_window': " + NO_DATE_FIELD.replace("found nothing", "found '20251101'"))),
])
def test_date_window_without_a_date(view: SessionView, on_missing: str, expected: tuple[Any, ...]) -> None:
    result = run(DateWindow({**REFUND_WINDOW, "on_missing": on_missing}), view)
    assert (result.status, result.score, result.reason, result.error) == expected


@pytest.mark.parametrize(("params", "message"), [
    ({"date_from": REFUND_WINDOW["date_from"], "max_days": 30}, "rule 'date_window': parameter 'tool' is required"),
    ({"tool": "refund_api", "max_days": 30}, "rule 'date_window': parameter 'date_from' is required"),
    ({"tool": "refund_api", "date_from": REFUND_WINDOW["date_from"]},
     "rule 'date_window': parameter 'max_days' is required"),
    ({**REFUND_WINDOW, "max_days": "30"}, "rule 'date_window': parameter 'max_days' must be an integer >= 0, got '30'"),
    ({**REFUND_WINDOW, "max_days": -1}, "rule 'date_window': parameter 'max_days' must be an integer >= 0, got -1"),
    ({**REFUND_WINDOW, "max_days": 30.5}, "rule 'date_window': parameter 'max_days' must be an integer >= 0, got 30.5"),
    ({**REFUND_WINDOW, "date_from": "lookup_order.delivered_on"},
     "rule 'date_window': parameter 'date_from' must be a non-empty mapping, got 'lookup_order.delivered_on'"),
    ({**REFUND_WINDOW, "date_from": {"field": "delivered_on"}},
     "rule 'date_window': parameter 'date_from.tool' must be a non-empty string, got None"),
    ({**REFUND_WINDOW, "date_from": {"tool": "lookup_order"}}, "rule 'date_window': parameter 'date_from.field' is required"),
    ({**REFUND_WINDOW, "date_from": {"tool": "lookup_order", "field": "delivered_on", "match": "order_id"}},
     "rule 'date_window': parameter 'date_from.match' must be a non-empty list of argument paths, got 'order_id'"),
    ({**REFUND_WINDOW, "date_from": {"tool": "lookup_order", "field": "delivered_on", "max": 1}},
     "rule 'date_window': parameter 'date_from' has unknown key 'max' (known: field, match, tool)"),
    ({**REFUND_WINDOW, "on_missing": "skip"},
     "rule 'date_window': parameter 'on_missing' must be one of 'fail', 'pass', 'error', got 'skip'"),
    ({**REFUND_WINDOW, "max_day": 30}, "rule 'date_window': unknown parameter 'max_day' (known: date_from, max_days, "
                                       "on_missing, tool)"),
])
def test_date_window_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(DateWindow, params) == message
    with pytest.raises(ValueError, match="date_window"):
        make_rule("date_window", params)


def test_date_window_fails_exactly_the_generated_off_policy_refunds() -> None:
    """Generated refunds: orders delivered 1-25 days ago, or (12% of requests) 35-80 days ago, which the agent
    refunds half the time here (``Rates(policy_violation=0.5)``; steady traffic refuses every one)."""
    rule = make_rule("date_window", REFUND_WINDOW)
    start = T0 + 22 * 3600 * 10**9  # some sessions run past midnight (UTC)
    flagged, violating = set(), set()
    for session in Generator(17, start, rates=Rates(policy_violation=0.5)).sessions(count=400):
        result = run(rule, view_of(session.request))
        assert result.status == "ok", result.error
        if result.score == 0.0:
            flagged.add(session.session_id)
            assert all(v.span_id in result.reason for v in session.truth.policy_violations), result.reason
        if session.truth.policy_violations:
            violating.add(session.session_id)
    assert len(violating) >= 4
    assert flagged == violating
    for session in Generator(17, start).sessions(count=150):  # steady traffic: no off-policy refund
        assert not session.truth.policy_violations
        assert run(rule, view_of(session.request)).score == 1.0


# --------------------------------------------------------------------------- budget


def budget_session() -> SessionView:
    """Two turns (two traces): the first 1.2 s long with 3 tool calls, the second 0.3 s; cost $0.03."""
    spans = [agent("1", trace="c1", duration_ms=1200),
             chat("2", [msg("user", "q1")], [msg("assistant", "a1")], trace="c1", at_ms=1100, cost=0.02)]
    spans += [tool(f"{i + 3:x}", "lookup_order", trace="c1", at_ms=100 * (i + 1), args={}, result={}) for i in range(3)]
    spans += [agent("1", trace="c2", start=T0 + 60_000 * MS, duration_ms=300),
              chat("2", [msg("user", "q2")], [msg("assistant", "a2")], trace="c2", at_ms=60_100, cost=0.01)]
    return view_of(spans)


def test_budget_within() -> None:
    rule = Budget({"max_latency_ms": 1500, "max_turns": 2, "max_cost_usd": 0.05, "max_tool_calls": 3})
    result = run(rule, budget_session())
    assert (result.score, result.reason) == (1.0, "within budget: latency 1200 ms, 2 turn(s), cost $0.03, 3 tool call(s)")


@pytest.mark.parametrize(("params", "reason"), [
    ({"max_latency_ms": 1000}, "over budget: latency 1200 ms > 1000 ms (turn 0)"),
    ({"max_turns": 1}, "over budget: turns 2 > 1"),
    ({"max_cost_usd": 0.025}, "over budget: cost $0.03 > $0.025"),
    ({"max_tool_calls": 2, "max_turns": 1}, "over budget: turns 2 > 1; tool calls 3 > 2"),
])
def test_budget_over(params: dict[str, Any], reason: str) -> None:
    result = run(Budget(params), budget_session())
    assert (result.score, result.reason) == (0.0, reason)


@pytest.mark.parametrize(("params", "message"), [
    ({}, "rule 'budget': give at least one of 'max_cost_usd', 'max_latency_ms', 'max_tool_calls', 'max_turns'"),
    ({"max_turns": 1.5}, "rule 'budget': parameter 'max_turns' must be an integer >= 0, got 1.5"),
    ({"max_cost_usd": -1}, "rule 'budget': parameter 'max_cost_usd' must be a number >= 0, got -1"),
    ({"max_latency_ms": True}, "rule 'budget': parameter 'max_latency_ms' must be a finite number, got True"),
])
def test_budget_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(Budget, params) == message


# --------------------------------------------------------------------------- confirmation

PROPOSAL = "I can cancel reservation ABC123 for a refund of $120. Shall I proceed?"


def confirmation_session(*conversation: dict[str, Any], second_call: bool = False, call_id: str | None = "c1") -> SessionView:
    """The model sees ``conversation`` and asks for cancel_reservation; the tool runs."""
    out = call_msg("cancel_reservation", call_id or "x", {"reservation_id": "ABC123"})
    if call_id is None:
        out["parts"][0].pop("id")
    spans = [agent(), chat("2", list(conversation), [out], at_ms=100),
             tool("3", "cancel_reservation", at_ms=200, call_id=call_id, args={"reservation_id": "ABC123"},
                  result={"status": "cancelled"})]
    if second_call:
        seen = [*conversation, out, {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "ok"}]}]
        spans += [chat("4", seen, [call_msg("cancel_reservation", "c2", {"reservation_id": "DEF456"})], at_ms=300),
                  tool("5", "cancel_reservation", at_ms=400, call_id="c2", args={"reservation_id": "DEF456"}, result={})]
    return view_of(spans)


CONFIRMATION = {"tools": ["cancel_reservation", "book_*"]}


@pytest.mark.parametrize("reply", ["Yes, please go ahead.", "yes", "Okay, let's proceed.", "Sure.", "Confirmed",
                                   "Please do.", "That's correct, go ahead"])
def test_confirmation_after_a_proposal(reply: str) -> None:
    view = confirmation_session(msg("system", "Be careful."), msg("user", "Cancel ABC123 please."),
                                msg("assistant", PROPOSAL), msg("user", reply))
    result = run(Confirmation(CONFIRMATION), view)
    assert (result.score, result.reason) == (1.0, "1 consequential call(s) confirmed")


@pytest.mark.parametrize(("conversation", "why"), [
    ([msg("user", "Can you cancel ABC123?")], "the last user message does not confirm: 'Can you cancel ABC123?'"),
    ([msg("user", "Yes, cancel ABC123.")], "the user's 'Yes, cancel ABC123.' answers no proposal of the agent"),
    ([msg("user", "Cancel ABC123."), msg("assistant", PROPOSAL), msg("user", "No, don't proceed yet.")],
     "the last user message withholds confirmation: \"No, don't proceed yet.\""),
    ([msg("user", "Cancel ABC123."), msg("assistant", PROPOSAL), msg("user", "How much is the refund again?")],
     "the last user message does not confirm: 'How much is the refund again?'"),
    ([msg("assistant", PROPOSAL), msg("user", "yes"), msg("assistant", "Done."), msg("user", "Also cancel DEF456.")],
     "the last user message does not confirm: 'Also cancel DEF456.'"),
])
def test_confirmation_missing(conversation: list[dict[str, Any]], why: str) -> None:
    result = run(Confirmation(CONFIRMATION), confirmation_session(*conversation))
    assert result.score == 0.0
    assert result.reason == f"tool cancel_reservation called without confirmation: {why} (span {span_id('3')})"


def test_one_confirmation_for_two_calls_only_when_allowed() -> None:
    view = confirmation_session(msg("user", "Cancel both."), msg("assistant", PROPOSAL), msg("user", "Yes"), second_call=True)
    assert run(Confirmation(CONFIRMATION), view).score == 1.0
    result = run(Confirmation({**CONFIRMATION, "one_call_per_confirmation": True}), view)
    assert result.reason == (f"tool cancel_reservation called without confirmation: the confirmation 'Yes' was already "
                             f"used by cancel_reservation (span {span_id('5')})")


def test_confirmation_finds_the_model_call_by_tool_name_without_ids() -> None:
    view = confirmation_session(msg("user", "Cancel."), msg("assistant", PROPOSAL), msg("user", "go ahead"), call_id=None)
    assert run(Confirmation(CONFIRMATION), view).score == 1.0


@pytest.mark.parametrize("reply", [
    "Please proceed.", "OK then, go ahead with it.", "I confirm.", "Confirming to proceed with the cancellation.",
    "That works for me, yes.", "Alright, thanks - yes please.", "Sí, por favor.", "Oui, allez-y.", "Ja, bitte.",
    "Sim, pode seguir.", "はい、お願いします。", "Looks good to me.", "Let's do it.",
])
def test_confirmation_phrasings_that_are_a_yes(reply: str) -> None:
    view = confirmation_session(msg("user", "Cancel ABC123."), msg("assistant", PROPOSAL), msg("user", reply))
    result = run(Confirmation(CONFIRMATION), view)
    assert (result.score, result.reason) == (1.0, "1 consequential call(s) confirmed")


@pytest.mark.parametrize("reply", [
    "I'm not sure yet.", "Hold off for now, please.", "I don't want to proceed.", "Could you make sure the refund "
    "goes to my card?", "What would the refund be?", "Let me think about it.",
])
def test_confirmation_phrasings_that_are_not(reply: str) -> None:
    view = confirmation_session(msg("user", "Cancel ABC123."), msg("assistant", PROPOSAL), msg("user", reply))
    assert run(Confirmation(CONFIRMATION), view).score == 0.0


def test_an_instruction_without_a_proposal_is_consent() -> None:
    listing = "I found your reservations: ABC123 and DEF456. Let me know which ones you want to change."
    for order in ("Please cancel both of them.", "Thanks. Cancel ABC123, it is not needed any more.",
                  "Go ahead and cancel ABC123."):
        view = confirmation_session(msg("user", "Show my trips."), msg("assistant", listing), msg("user", order))
        assert run(Confirmation(CONFIRMATION), view).score == 1.0, order
    # The first message of the conversation: nothing was proposed, the user ordered it.
    assert run(Confirmation(CONFIRMATION), confirmation_session(msg("user", "Please cancel ABC123."))).score == 1.0


def test_an_instruction_is_no_answer_to_a_proposal_and_a_question_is_no_instruction() -> None:
    view = confirmation_session(msg("user", "Cancel ABC123."), msg("assistant", PROPOSAL),
                                msg("user", "Please cancel DEF456 instead."))
    result = run(Confirmation(CONFIRMATION), view)
    assert result.score == 0.0 and "answers the agent's proposal with a new instruction" in result.reason
    listing = "I found your reservations: ABC123 and DEF456."
    for ask in ("Could you cancel ABC123?", "I'd like to use my gift card."):
        view = confirmation_session(msg("user", "Show my trips."), msg("assistant", listing), msg("user", ask))
        assert run(Confirmation(CONFIRMATION), view).score == 0.0, ask


def retried_session(second_args: dict[str, Any]) -> SessionView:
    """The user says yes; cancel_reservation fails; the model calls it again with ``second_args``."""
    first = call_msg("cancel_reservation", "c1", {"reservation_id": "ABC123", "refund_to": "card_1"})
    seen = [msg("user", "Cancel ABC123."), msg("assistant", PROPOSAL), msg("user", "Yes.")]
    failed = {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1",
                                         "response": "Error: payment method not found"}]}
    spans = [agent(), chat("2", seen, [first], at_ms=100),
             tool("3", "cancel_reservation", at_ms=200, call_id="c1", args={"reservation_id": "ABC123",
                                                                             "refund_to": "card_1"},
                  result="Error: payment method not found"),
             chat("4", [*seen, first, failed], [call_msg("cancel_reservation", "c2", second_args)], at_ms=300),
             tool("5", "cancel_reservation", at_ms=400, call_id="c2", args=second_args, result={"ok": True})]
    return view_of(spans)


def test_a_failed_call_retried_with_other_arguments_needs_a_new_yes() -> None:
    result = run(Confirmation(CONFIRMATION), retried_session({"reservation_id": "ABC123", "refund_to": "gift_9"}))
    assert result.score == 0.0
    assert result.reason == (
        "tool cancel_reservation called without confirmation: its earlier call cancel_reservation failed after the "
        f"user's yes and it was tried again with other arguments the user has not confirmed (span {span_id('5')})")
    same = run(Confirmation(CONFIRMATION), retried_session({"reservation_id": "ABC123", "refund_to": "card_1"}))
    assert same.score == 1.0, "a plain retry of what the user agreed to is covered"


def test_confirmation_custom_patterns() -> None:
    view = confirmation_session(msg("assistant", PROPOSAL), msg("user", "Jawohl, mach weiter."))
    assert run(Confirmation(CONFIRMATION), view).score == 0.0
    assert run(Confirmation({**CONFIRMATION, "patterns": [r"^\W*jawohl\b"]}), view).score == 1.0


def test_confirmation_without_the_model_call_is_an_evaluation_failure() -> None:
    view = view_of([agent(), tool("3", "cancel_reservation", at_ms=100, call_id="c9", args={}, result={})])
    result = run(Confirmation(CONFIRMATION), view)
    assert result.is_error
    assert result.error == (f"rule 'confirmation': cannot find the model call that asked for tool cancel_reservation "
                            f"(span {span_id('3')})")


def test_confirmation_no_consequential_call() -> None:
    assert run(Confirmation(CONFIRMATION), tools_session(("lookup_order", {}, {}))).reason == "no consequential tool called"


@pytest.mark.parametrize(("params", "message"), [
    ({}, "rule 'confirmation': parameter 'tools' is required"),
    ({"tools": ["x"], "patterns": []}, "rule 'confirmation': parameter 'patterns' must be a non-empty list of non-empty strings, got []"),
    ({"tools": ["x"], "one_call_per_confirmation": 1}, "rule 'confirmation': parameter 'one_call_per_confirmation' must be true or false, got 1"),
])
def test_confirmation_bad_params(params: dict[str, Any], message: str) -> None:
    assert raises(Confirmation, params) == message


# --------------------------------------------------------------------------- a real capture


def test_rules_on_the_otel_genai_capture() -> None:
    """refund_api({"order_id": "A-1001", "amount": 42.5}) answered by the user's first message
    "Hi, I was charged twice for order A-1001. Can I get a refund of the $42.50 duplicate?": the
    agent refunded without proposing it first, so the confirmation rule fails on real data."""
    view = view_of(ExportTraceServiceRequest.FromString(CAPTURE.read_bytes()))
    assert [c.name for c in view.tool_calls] == ["refund_api"]
    assert run(ToolError(), view).score == 1.0
    assert run(RequiredTool({"tools": ["refund_api"]}), view).score == 1.0
    assert run(NumericBound({"tool": "refund_api", "field": "amount", "max": 50}), view).score == 1.0
    assert run(NumericBound({"tool": "refund_api", "field": "amount", "max": 40}), view).score == 0.0
    schema = {"tool": "refund_api", "arguments_schema": REFUND_SCHEMA["arguments_schema"],
              "result_schema": {"type": "object", "required": ["status", "refund_id"]}}
    assert run(ToolSchema(schema), view).score == 1.0
    result = run(Confirmation({"tools": ["refund_api"]}), view)
    assert result.score == 0.0
    assert result.reason.startswith("tool refund_api called without confirmation: the last user message does not "
                                    "confirm: 'Hi, I was charged twice for order A-1001.")
    assert run(Budget({"max_turns": 2, "max_tool_calls": 1}), view).score == 1.0
    assert run(AnswerPattern({"forbidden": [r"\bguarantee"], "required": [r"A-1001"]}), view).score == 1.0


# --------------------------------------------------------------------------- tau-bench sessions


def tau_view(record: dict[str, Any]) -> SessionView:
    """A tau-bench trajectory as spans: a root per user message, an llm span per assistant message
    (input: the conversation so far), an execute_tool span per tool answer (test_faithfulness.py
    has the same builder, documented)."""
    history, spans, calls = [record["traj"][0]], [], {}
    root, n = "", 0
    for message in record["traj"][1:]:
        n += 1
        span, start = f"{n:x}", T0 + n * 10 * MS
        if message["role"] == "user":
            root = span
            spans.append(make_span("7a0", span, name="invoke_agent airline", start_ns=start, duration_ms=1,
                                   attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "tau"}))
        elif message["role"] == "assistant":
            calls.update({c["id"]: c["function"] for c in message.get("tool_calls") or []})
            output = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls")}
            spans.append(make_span("7a0", span, parent=root, name="chat gpt-4o", start_ns=start, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(history),
                "gen_ai.output.messages": json.dumps([output])}))
        else:
            spans.append(make_span("7a0", span, parent=root, name="execute_tool", start_ns=start, attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": message["name"],
                "gen_ai.tool.call.id": message["tool_call_id"],
                "gen_ai.tool.call.arguments": calls[message["tool_call_id"]]["arguments"],
                "gen_ai.tool.call.result": message["content"] or ""}))
        history.append(message)
    return view_of(spans)


AIRLINE_WRITES = {"tools": ["book_reservation", "update_reservation_*", "cancel_reservation", "send_certificate"]}


def test_confirmation_on_tau_bench() -> None:
    """Read by hand. Session 2: "Would you like to proceed with downgrading these reservations to
    economy class? Please confirm" -> "Yes, please downgrade all of them to economy class." -> two
    update_reservation_flights: confirmed. Session 25: the agent listed two flight options, the user
    answered "I'll go with the first option, Flight HAT136 & HAT039." and book_reservation ran at
    once, twice, without the booking details ever being put to the user: not confirmed (the airline
    policy asks for an explicit yes). Session 36: "That sounds good. Please go ahead and book the
    flights for Ivan." (turn 5) and "Oh, I see. Yes, please use the certificate for $299, ..." (turn 6,
    after "Would you like to proceed ...?"): both book_reservation calls confirmed."""
    if not TAU_BENCH.exists():
        pytest.fail(f"the tau-bench sessions are expected at {TAU_BENCH}")
    data = json.loads(TAU_BENCH.read_text())
    rule = Confirmation(AIRLINE_WRITES)
    assert run(rule, tau_view(data[2])).reason == "2 consequential call(s) confirmed"
    result = run(rule, tau_view(data[25]))
    assert result.score == 0.0
    assert result.reason.count("tool book_reservation called without confirmation: the last user message does not "
                               "confirm: \"I'll go with the first option, Flight HAT136 & HAT039.\"") == 2
    assert run(rule, tau_view(data[36])).reason == "2 consequential call(s) confirmed"


def test_tool_error_on_tau_bench() -> None:
    """Session 36, turn 5: book_reservation answered "Error: payment amount does not add up, total
    price is 375, but paid 299" on a span that reports no error: the rule sees it. Session 2's seven
    calls (user and reservation lookups, two updates, a calculation) all succeeded."""
    data = json.loads(TAU_BENCH.read_text())
    view = tau_view(data[36])
    failed = [c for c in view.tool_calls if c.name == "book_reservation"][0]
    assert failed.success and str(failed.result).startswith("Error: payment amount does not add up")
    result = run(ToolError(), view)
    assert result.score == 0.0
    assert result.reason.startswith("tool book_reservation failed: result matches '^\\\\s*(?:error|exception|fatal)\\\\b': "
                                    "Error: payment amount does not add up, total price is 375")
    assert run(ToolError(), tau_view(data[2])).reason == "7 tool call(s) succeeded"


def test_tool_error_precheck_agrees_with_each_pattern_on_real_and_edge_texts() -> None:
    """The pre-check (each default's words; other patterns joined in one) leaves out only patterns that do not
    match: checked on every string of the tau-bench transcripts and on each pattern's errors, in other cases
    and with non-ASCII look-alikes."""
    rule = ToolError()
    texts: list[str] = []

    def strings(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                strings(item)
        elif isinstance(value, list):
            for item in value:
                strings(item)

    strings(json.loads(TAU_BENCH.read_text()))
    texts += ["Error: flight not found", "  \tfatal: disk", "EXCEPTION raised", "Expired access token", "TOKEN IS REVOKED",
              "unauthorised", "403 Forbidden", "Permission denied", "rate-limited", "Ratelimit hit", "Too Many Requests",
              "request timed out", "TIME-OUT", "Service Unavailable", "Internal Server Error", "502 Bad Gateway",
              "HTTP 401", "status: 503", "code=429", "error - 500", "ſervice unavailable", "\u00a0error", "ok"]

    def matching(r: ToolError, text: str, patterns: Any) -> list[str]:
        return [p.pattern for p in patterns if p.search(text)]

    disagreements = [t[:80] for t in texts if matching(rule, t, rule._candidates(t))  # noqa: SLF001
                     != matching(rule, t, rule._patterns)]  # noqa: SLF001
    assert len(texts) > 5000
    assert disagreements == []
    assert list(rule._candidates("the order shipped on the 5th")) == []  # noqa: SLF001 - no word of the defaults
    custom = ToolError({"patterns": ["shipped", "lost"]})
    assert [p.pattern for p in custom._candidates("the order shipped")] == ["shipped", "lost"]  # noqa: SLF001
    assert list(custom._candidates("the order arrived")) == []  # noqa: SLF001
