"""The ``budget`` rule: latency (the slowest turn), turn, cost and tool-call budgets.

``budget``
    ``max_latency_ms?`` (the slowest turn: first span start to last span end
    of the turn, so a user's think time between turns is not counted),
    ``max_turns?``, ``max_cost_usd?`` (the sum of llm and embedding spans'
    cost, as in the session summary), ``max_tool_calls?``; at least one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from agentwatch._types import USAGE_KINDS
from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import ParamReader, Rule
from agentwatch.evaluate.session import SessionView

__all__ = ["Budget", "BudgetParams"]


@dataclass(frozen=True, slots=True)
class BudgetParams:
    max_latency_ms: float | None = None
    max_turns: int | None = None
    max_cost_usd: float | None = None
    max_tool_calls: int | None = None


class Budget(Rule):
    """Latency (slowest turn), turn, cost and tool-call budgets."""

    name = "budget"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("max_latency_ms", "max_turns", "max_cost_usd", "max_tool_calls"))
        self.params = BudgetParams(
            max_latency_ms=p.number("max_latency_ms"), max_turns=p.integer("max_turns"),
            max_cost_usd=p.number("max_cost_usd"), max_tool_calls=p.integer("max_tool_calls"),
        )
        if all(getattr(self.params, f.name) is None for f in fields(self.params)):
            raise ValueError(f"rule {self.name!r}: give at least one of 'max_cost_usd', 'max_latency_ms', "
                             "'max_tool_calls', 'max_turns'")

    def check(self, session: SessionView) -> EvalResult:
        params = self.params
        over: list[str] = []
        checked: list[str] = []
        if params.max_latency_ms is not None:
            slowest, index = 0.0, None
            for turn in session.turns:
                if turn.spans:
                    ms = (max(s.end_ns for s in turn.spans) - min(s.start_ns for s in turn.spans)) / 1e6
                    if ms > slowest:
                        slowest, index = ms, turn.index
            checked.append(f"latency {slowest:g} ms")
            if slowest > params.max_latency_ms:
                over.append(f"latency {slowest:g} ms > {params.max_latency_ms:g} ms (turn {index})")
        if params.max_turns is not None:
            turns = len(session.turns)
            checked.append(f"{turns} turn(s)")
            if turns > params.max_turns:
                over.append(f"turns {turns} > {params.max_turns}")
        if params.max_cost_usd is not None:
            cost = math.fsum(s.cost_usd or 0.0 for s in session.spans if s.kind in USAGE_KINDS)
            checked.append(f"cost ${cost:.6g}")
            if cost > params.max_cost_usd:
                over.append(f"cost ${cost:.6g} > ${params.max_cost_usd:g}")
        if params.max_tool_calls is not None:
            count = len(session.tool_calls)
            checked.append(f"{count} tool call(s)")
            if count > params.max_tool_calls:
                over.append(f"tool calls {count} > {params.max_tool_calls}")
        if over:
            return EvalResult.ok(0.0, reason="over budget: " + "; ".join(over))
        return EvalResult.ok(1.0, reason="within budget: " + ", ".join(checked))
