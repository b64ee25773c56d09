"""The ``tool_allowlist`` rule: every tool called is allowed for the session's intent.

``tool_allowlist``
    Every tool called is in the allowed set of the session's intent.
    Params: ``allowed`` (``{intent: [tool, ...]}``), ``default?`` (the set for
    an intent not listed, or no intent). Tool names may be shell-style
    patterns (``lookup_*``). With tool calls and no set for the intent: failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import ParamReader, Rule, _intent, _Unevaluable, listing, matches_any
from agentwatch.evaluate.session import SessionView

__all__ = ["ToolAllowlist", "ToolAllowlistParams"]


@dataclass(frozen=True, slots=True)
class ToolAllowlistParams:
    allowed: tuple[tuple[str, tuple[str, ...]], ...]
    default: tuple[str, ...] | None = None


class ToolAllowlist(Rule):
    """Every tool called is allowed for the session's intent."""

    name = "tool_allowlist"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("allowed", "default"))
        allowed = p.mapping("allowed", required=True)
        assert allowed is not None
        pairs = []
        for intent, tools in allowed.items():
            if not isinstance(intent, str) or not intent:
                raise p.error("allowed", "a mapping of intent names to lists of tools")
            pairs.append((intent, p.string_list(f"allowed.{intent}", tools, allow_empty=True)))
        self.params = ToolAllowlistParams(allowed=tuple(pairs), default=p.strings("default", allow_empty=True))
        self._allowed = dict(self.params.allowed)

    def check(self, session: SessionView) -> EvalResult:
        calls = session.tool_calls
        if not calls:
            return EvalResult.ok(1.0, reason="no tool calls")
        intent = _intent(session)
        tools = self._allowed.get(intent) if intent is not None else None
        source = f"intent {intent!r}"
        if tools is None:
            if self.params.default is None:
                raise _Unevaluable(f"no allowed tools for intent {intent!r} and no 'default'")
            tools, source = self.params.default, f"intent {intent!r} (default set)"
        outside = [f"tool {c.name} is not allowed for {source} (span {c.span_id})"
                   for c in calls if not matches_any(c.name, tools)]
        if outside:
            allowed = ", ".join(tools) if tools else "none"
            return EvalResult.ok(0.0, reason=f"{listing(outside)} (allowed: {allowed})")
        return EvalResult.ok(1.0, reason=f"{len(calls)} tool call(s) allowed for {source}")
