"""The ``answer_pattern`` rule: forbidden patterns absent from, required ones present in, the agent's answers.

``answer_pattern``
    No agent answer matches a ``forbidden`` regex, and each ``required`` regex
    matches an answer. Params: ``forbidden?``, ``required?`` (at least one),
    ``flags?`` (``[IGNORECASE, MULTILINE, DOTALL]`` or ``i``/``m``/``s``),
    ``scope?``: ``all_turns`` (default: every turn's answer) or ``final`` (the
    session's last answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import ParamReader, Rule, listing, shorten
from agentwatch.evaluate.session import SessionView

__all__ = ["AnswerPattern", "AnswerPatternParams"]


@dataclass(frozen=True, slots=True)
class AnswerPatternParams:
    forbidden: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    flags: int = 0
    scope: str = "all_turns"


class AnswerPattern(Rule):
    """Forbidden patterns absent from, and required patterns present in, the agent's answers."""

    name = "answer_pattern"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("forbidden", "required", "flags", "scope"))
        forbidden = p.strings("forbidden", allow_empty=True) or ()
        required = p.strings("required", allow_empty=True) or ()
        if not forbidden and not required:
            raise ValueError(f"rule {self.name!r}: give 'forbidden' or 'required' patterns")
        self.params = AnswerPatternParams(
            forbidden=forbidden, required=required, flags=p.flags("flags"),
            scope=p.string("scope", choices=("all_turns", "final")) or "all_turns",
        )
        self._forbidden = p.regexes("forbidden", forbidden, self.params.flags)
        self._required = p.regexes("required", required, self.params.flags)

    def check(self, session: SessionView) -> EvalResult:
        if self.params.scope == "final":
            answers = [(len(session.turns) - 1, session.answer)] if session.answer else []
        else:
            answers = [(turn.index, turn.answer) for turn in session.turns if turn.answer]
        problems = []
        for pattern in self._forbidden:
            for index, text in answers:
                found = pattern.search(text)
                if found:
                    problems.append(f"turn {index} answer contains forbidden {pattern.pattern!r}: "
                                    f"{shorten(found.group(0), 60)!r}")
        for pattern in self._required:
            if not any(pattern.search(text) for _, text in answers):
                where = "the final answer" if self.params.scope == "final" else "any answer"
                problems.append(f"required {pattern.pattern!r} not found in {where}")
        if problems:
            return EvalResult.ok(0.0, reason=listing(problems))
        return EvalResult.ok(1.0, reason=f"{len(answers)} answer(s) checked")
