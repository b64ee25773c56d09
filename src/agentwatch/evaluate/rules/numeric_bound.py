"""The ``numeric_bound`` rule: a number in a tool's arguments within a fixed bound or one read elsewhere.

``numeric_bound``
    For each call of ``tool``, the number at ``field`` (a dotted path into the
    arguments; list items by index: ``items.0.price``) is within bounds: ``min?``,
    and at most one upper bound among ``max`` (a number), ``max_field`` (a
    path into the same arguments) and ``max_from`` (``{tool, field, match?}``:
    the number at ``field`` in the result of the latest successful call of
    that tool started before this call, in any turn; ``match`` lists argument
    paths both calls must agree on, e.g. ``[order_id]``). Numbers may be
    numeric strings (``"42.50"``, ``"$1,200"``). ``on_missing?``: what a
    missing or non-numeric value or source call means: ``fail`` (default: a
    refund that cannot be shown within its bound breaks the rule), ``pass``,
    or ``error`` (an evaluation failure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import (
    BoundSource,
    ParamReader,
    Rule,
    _at,
    _no_source,
    _source,
    _source_call,
    _Unevaluable,
    listing,
    parse_number,
)
from agentwatch.evaluate.session import SessionView, ToolCall

__all__ = ["NumericBound", "NumericBoundParams"]


def _fmt(number: Decimal) -> str:
    return format(number.normalize(), "f") if number == number.to_integral_value() else str(number)


@dataclass(frozen=True, slots=True)
class NumericBoundParams:
    tool: str
    field: tuple[str, ...]
    min: Decimal | None = None
    max: Decimal | None = None
    max_field: tuple[str, ...] | None = None
    max_from: BoundSource | None = None
    on_missing: str = "fail"


class NumericBound(Rule):
    """A number in a tool's arguments within a fixed bound or one taken from another field."""

    name = "numeric_bound"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tool", "field", "min", "max", "max_field", "max_from", "on_missing"))
        tool = p.string("tool", required=True)
        field = p.path("field", p.params.get("field"))
        assert tool is not None
        low, high = p.number("min", minimum=None), p.number("max", minimum=None)
        source = None
        raw_from = p.mapping("max_from")
        if raw_from is not None:
            source = _source(p, "max_from", raw_from)
        max_field = p.path("max_field", p.params["max_field"]) if p.has("max_field") else None
        uppers = [name for name, value in (("max", high), ("max_field", max_field), ("max_from", source))
                  if value is not None]
        if len(uppers) > 1:
            raise ValueError(f"rule {self.name!r}: give at most one of 'max', 'max_field' and 'max_from', "
                             f"got {', '.join(repr(u) for u in uppers)}")
        if not uppers and low is None:
            raise ValueError(f"rule {self.name!r}: give a bound: 'max', 'max_field', 'max_from' or 'min'")
        self.params = NumericBoundParams(
            tool=tool, field=field,
            min=Decimal(str(low)) if low is not None else None,
            max=Decimal(str(high)) if high is not None else None,
            max_field=max_field, max_from=source,
            on_missing=p.string("on_missing", choices=("fail", "pass", "error")) or "fail",
        )

    def _label(self, path: Sequence[str]) -> str:
        return f"{self.params.tool}.{'.'.join(path)}"

    def _bound(self, call: ToolCall, calls: list[ToolCall]) -> tuple[Decimal | None, str]:
        """The upper bound for ``call`` and where it came from; None with a reason when it is missing."""
        params = self.params
        if params.max is not None:
            return params.max, "max"
        if params.max_field is not None:
            value = parse_number(_at(call.arguments, params.max_field))
            label = self._label(params.max_field)
            return (value, label) if value is not None else (None, f"no number at {label}")
        source = params.max_from
        if source is None:
            return None, ""
        latest = _source_call(source, call, calls)
        label = f"{source.tool}.{'.'.join(source.field)}"
        if latest is None:
            return None, _no_source(source)
        value = parse_number(_at(latest.result, source.field))
        if value is None:
            return None, f"no number at {label} (span {latest.span_id})"
        return value, f"{label}, span {latest.span_id}"

    def check(self, session: SessionView) -> EvalResult:
        calls = session.tool_calls
        mine = [c for c in calls if c.name == self.params.tool]
        if not mine:
            return EvalResult.ok(1.0, reason=f"tool {self.params.tool} not called")
        field = self._label(self.params.field)
        problems: list[str] = []
        missing: list[str] = []
        for call in mine:
            value = parse_number(_at(call.arguments, self.params.field))
            if value is None:
                missing.append(f"no number at {field} (span {call.span_id})")
                continue
            if self.params.min is not None and value < self.params.min:
                problems.append(f"{field} = {_fmt(value)} < {_fmt(self.params.min)} (min) (span {call.span_id})")
            bound, source = self._bound(call, calls)
            if bound is None and source:
                missing.append(f"{field} = {_fmt(value)} has no bound: {source} (span {call.span_id})")
            elif bound is not None and value > bound:
                problems.append(f"{field} = {_fmt(value)} > {_fmt(bound)} ({source}) (span {call.span_id})")
        if missing:
            if self.params.on_missing == "error":
                raise _Unevaluable(listing(missing))
            if self.params.on_missing == "fail":
                problems.extend(missing)
        if problems:
            return EvalResult.ok(0.0, reason=listing(problems))
        skipped = f" ({len(missing)} without a bound, on_missing: pass)" if missing else ""
        return EvalResult.ok(1.0, reason=f"{len(mine)} call(s) of {self.params.tool} within bounds{skipped}")
