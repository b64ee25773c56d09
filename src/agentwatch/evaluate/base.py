"""The evaluator protocol and what an evaluation answers.

An evaluator scores one session::

    class ToolFailed:
        async def evaluate(self, session: SessionView) -> EvalResult:
            failed = [c for c in session.tool_calls if not c.success]
            return EvalResult.ok(0.0 if failed else 1.0, reason=f"{len(failed)} failed tool call(s)")

A failure of the evaluator itself (an exception, a timeout, a verdict that
does not parse) is ``EvalResult.error(...)``, never a score of 0: the store
records it as an evaluation error with the raw text, counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agentwatch.evaluate.session import SessionView


@dataclass(frozen=True, slots=True)
class EvalResult:
    """One evaluation: a score in [0, 1] with its reason, or an error."""

    status: str
    score: float | None = None
    reason: str = ""
    error: str | None = None
    #: The evaluator's raw output when it could not be used (a judge's text).
    raw: str | None = None
    judge_model: str | None = None
    prompt_hash: str | None = None
    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    #: The span scored, when the evaluation is about one span rather than the session.
    span_id: str | None = None
    #: A failure that may pass by itself (a judge down, overloaded or timing out): the queue
    #: tries the session again later instead of recording the error at once.
    retryable: bool = False

    @classmethod
    def ok(cls, score: float | bool, reason: str = "", **extra: object) -> EvalResult:
        value = float(score)
        if not 0.0 <= value <= 1.0 or value != value:
            raise ValueError(f"a score must be in [0, 1], got {score!r}")
        return cls(status="ok", score=value, reason=reason, **extra)  # type: ignore[arg-type]

    @classmethod
    def failure(cls, message: str, *, raw: str | None = None, **extra: object) -> EvalResult:
        """The evaluator could not evaluate (not a low score)."""
        return cls(status="error", error=message, raw=raw, **extra)  # type: ignore[arg-type]

    @property
    def is_error(self) -> bool:
        return self.status == "error"


class Evaluator(Protocol):
    """Scores one session. Implementations may be rules, Python code or LLM judges."""

    async def evaluate(self, session: SessionView) -> EvalResult:
        """Score ``session``; answer ``EvalResult.failure`` when it cannot be scored."""
        ...
