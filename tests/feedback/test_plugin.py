"""The pytest plugin: a user's test gates an in-process agent on an exported dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentwatch.feedback.datasets import digest_of, version_digest
from agentwatch.feedback.snapshot import snapshot, view_from_messages

pytest_plugins = ["pytester"]


def refund_case() -> dict[str, object]:
    messages = [
        {"role": "user", "content": "Refund order Z-9 please"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "a", "type": "function", "function": {
            "name": "lookup_order", "arguments": json.dumps({"order_id": "Z-9"})}}]},
        {"role": "tool", "tool_call_id": "a", "content": json.dumps({"order_id": "Z-9", "total": 40})},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "b", "type": "function", "function": {
            "name": "refund_api", "arguments": json.dumps({"order_id": "Z-9", "amount": 60})}}]},
        {"role": "tool", "tool_call_id": "b", "content": "{}"},
        {"role": "assistant", "content": "Refunded 60."},
    ]
    view = view_from_messages("z9", messages)
    return {"case_id": "z9", "source": {"file": "hand-written"}, **snapshot(view),
            "expected": {"refund_limit": {"verdict": "fail", "label": "real_failure"}}}


def write_export(path: Path) -> None:
    from agentwatch.evaluate.catalogue import EvaluatorSpec

    spec = EvaluatorSpec(name="refund_limit", kind="rule", rule="numeric_bound", threshold=1.0, params={
        "tool": "refund_api", "field": "amount", "max_from": {"tool": "lookup_order", "field": "total"}})
    pins = {"refund_limit": {"version": spec.version, **spec.content, "threshold": 1.0,
                             "direction": "higher_is_better"}}
    case = refund_case()
    header = {"dataset": "refunds", "version": 1, "case_count": 1, "pins": pins, "floors": {},
              "digest": version_digest([digest_of(case)], pins)}
    path.write_text(json.dumps(header) + "\n" + json.dumps(case) + "\n")


@pytest.mark.parametrize("amount, outcome", [(60, "failed=1"), (40, "passed=1")])
def test_the_fixture_gates_a_users_agent(pytester: pytest.Pytester, amount: int, outcome: str) -> None:
    write_export(pytester.path / "refunds.jsonl")
    pytester.makepyfile(test_agent=f"""
        import agentwatch
        from opentelemetry.sdk.trace import TracerProvider

        PROVIDER = TracerProvider()

        def agent(case):
            with agentwatch.tool_call("lookup_order", {{"order_id": "Z-9"}}, tracer_provider=PROVIDER) as t:
                t.result({{"order_id": "Z-9", "total": 40}})
            with agentwatch.tool_call("refund_api", {{"order_id": "Z-9", "amount": {amount}}},
                                      tracer_provider=PROVIDER) as t:
                t.result({{"status": "ok"}})

        def test_refunds(agentwatch_gate):
            result = agentwatch_gate("refunds.jsonl", agent, tracer_provider=PROVIDER)
            assert result.passed, result.summary()
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--agentwatch-junit", "gate.xml")
    result.assert_outcomes(**{outcome.split("=")[0]: 1})
    junit = (pytester.path / "gate.xml").read_text()
    assert 'classname="refunds.refund_limit@' in junit and 'name="z9"' in junit
    assert ("<failure" in junit) == (amount == 60)
