"""Built-in rule evaluators: cheap, deterministic checks that run on every session.

A rule is built from its name and a params mapping (the ``params`` of an
``evaluators:`` entry of ``agentwatch.yaml``); the params are checked when the
rule is built, so a bad configuration fails at start with a ``ValueError``
naming the rule and the parameter::

    from agentwatch.evaluate.rules import make_rule

    rule = make_rule("numeric_bound", {
        "tool": "refund_api", "field": "amount",
        "max_from": {"tool": "lookup_order", "field": "order.total", "match": ["order_id"]},
    })
    result = await rule.evaluate(view)      # EvalResult.ok(0.0, reason="refund_api.amount = 120 > 100 ...")

Every rule scores pass/fail: 1.0 when the session keeps the rule, 0.0 when it
breaks it, the reason naming each violation (tool, value, span id). No rule
grades: each states an invariant, and a session that breaks it once is as
broken as one that breaks it twice; the count of violations is in the reason.
A rule that cannot judge the session (data it needs is missing or malformed
in a way the params do not cover) answers ``EvalResult.failure``, never 0.

The rules, one module each, every module documenting its rule's params
(``?`` marks an optional one):

- ``tool_error`` (:mod:`.tool_error`): a tool call failed, by its span or by
  a result shaped like an error;
- ``tool_allowlist`` (:mod:`.tool_allowlist`): every tool called is in the
  allowed set of the session's intent;
- ``required_tool`` (:mod:`.required_tool`): every required tool was called;
- ``answer_pattern`` (:mod:`.answer_pattern`): no answer matches a forbidden
  regex, each required regex matches one;
- ``tool_schema`` (:mod:`.tool_schema`): a tool's arguments and result valid
  against JSON Schemas;
- ``numeric_bound`` (:mod:`.numeric_bound`): a number in a tool's arguments
  within a bound, fixed or read from another field or an earlier call;
- ``date_window`` (:mod:`.date_window`): a tool called at most ``max_days``
  days after a date an earlier call returned;
- ``budget`` (:mod:`.budget`): latency, turn, cost and tool-call budgets;
- ``confirmation`` (:mod:`.confirmation`): a consequential tool called only
  after the user consented.

What they share (the params reader, the :class:`Rule` base, the value
helpers) is in :mod:`.common`.

:mod:`agentwatch.evaluate.policy` adds ``grounded_arguments`` (an action's ids
and amounts were on the record before it) and ``call_limit`` (an action that
worked more often than asked) to :data:`RULES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentwatch.evaluate.base import Evaluator
from agentwatch.evaluate.rules.answer_pattern import AnswerPattern
from agentwatch.evaluate.rules.budget import Budget
from agentwatch.evaluate.rules.common import ParamReader, Rule
from agentwatch.evaluate.rules.confirmation import DEFAULT_CONFIRM_PATTERNS, DEFAULT_NEGATIVE_PATTERNS, Confirmation
from agentwatch.evaluate.rules.date_window import DateWindow
from agentwatch.evaluate.rules.numeric_bound import NumericBound
from agentwatch.evaluate.rules.required_tool import RequiredTool
from agentwatch.evaluate.rules.tool_allowlist import ToolAllowlist
from agentwatch.evaluate.rules.tool_error import DEFAULT_ERROR_PATTERNS, ToolError
from agentwatch.evaluate.rules.tool_schema import ToolSchema

__all__ = [
    "DEFAULT_CONFIRM_PATTERNS",
    "DEFAULT_ERROR_PATTERNS",
    "DEFAULT_NEGATIVE_PATTERNS",
    "RULES",
    "AnswerPattern",
    "Budget",
    "Confirmation",
    "DateWindow",
    "NumericBound",
    "ParamReader",
    "RequiredTool",
    "Rule",
    "ToolAllowlist",
    "ToolError",
    "ToolSchema",
    "make_rule",
]


#: Rule name -> class; each class is built from a params mapping.
RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (ToolError, ToolAllowlist, RequiredTool, AnswerPattern, ToolSchema, NumericBound, DateWindow,
                Budget, Confirmation)
}


def make_rule(name: str, params: Mapping[str, Any] | None = None) -> Evaluator:
    """The rule called ``name`` built from ``params``; ValueError for an unknown name or bad params."""
    cls = RULES.get(name)
    if cls is None:
        raise ValueError(f"unknown rule {name!r} (known: {', '.join(sorted(RULES))})")
    return cls(params)


# The policy rules (grounded_arguments, call_limit) build on this package's helpers and add themselves to RULES.
from agentwatch.evaluate import policy as _policy  # noqa: E402, F401
