"""The ``required_tool`` rule: every required tool was called, in sessions of the given intents.

``required_tool``
    Every tool of ``tools`` was called at least once (successfully, with
    ``require_success: true``). Params: ``tools``, ``when_intent?`` (a name or
    list; other intents pass with reason "not applicable"), ``require_success?``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import ParamReader, Rule, _intent, listing
from agentwatch.evaluate.session import SessionView

__all__ = ["RequiredTool", "RequiredToolParams"]


@dataclass(frozen=True, slots=True)
class RequiredToolParams:
    tools: tuple[str, ...]
    when_intent: tuple[str, ...] | None = None
    require_success: bool = False


class RequiredTool(Rule):
    """Every required tool was called (in sessions of the given intents)."""

    name = "required_tool"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tools", "when_intent", "require_success"))
        tools = p.strings("tools", required=True)
        assert tools is not None
        when = p.params.get("when_intent")
        self.params = RequiredToolParams(
            tools=tools,
            when_intent=(p.string_list("when_intent", [when]) if isinstance(when, str)
                         else p.strings("when_intent")),
            require_success=p.boolean("require_success", False),
        )

    def check(self, session: SessionView) -> EvalResult:
        intent = _intent(session)
        if self.params.when_intent is not None and intent not in self.params.when_intent:
            return EvalResult.ok(1.0, reason=f"not applicable: intent {intent!r} is not in when_intent")
        calls = session.tool_calls
        missing = []
        for tool in self.params.tools:
            made = [c for c in calls if c.name == tool]
            if not made:
                missing.append(f"required tool {tool} was not called")
            elif self.params.require_success and not any(c.success for c in made):
                missing.append(f"required tool {tool} never succeeded ({len(made)} failed call(s))")
        if missing:
            return EvalResult.ok(0.0, reason=listing(missing))
        return EvalResult.ok(1.0, reason="called " + ", ".join(self.params.tools))
