"""Evaluators from their specs: one function, every kind."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable

from agentwatch.evaluate.base import EvalResult, Evaluator
from agentwatch.evaluate.catalogue import EvaluatorSpec, resolve_function
from agentwatch.evaluate.session import SessionView

#: Seconds a Python evaluator may take by default.
PYTHON_TIMEOUT_S = 30.0


class PythonEvaluator:
    """A user's function: sync ones run in a thread, async ones on the loop, both with a timeout."""

    def __init__(self, func: Callable[..., Any], *, timeout_s: float = PYTHON_TIMEOUT_S,
                 params: dict[str, Any] | None = None) -> None:
        self.func = func
        self.timeout_s = timeout_s
        self.params = params or {}

    async def evaluate(self, session: SessionView) -> EvalResult:
        kwargs = {"params": self.params} if "params" in inspect.signature(self.func).parameters else {}
        try:
            if inspect.iscoroutinefunction(self.func):
                value = await asyncio.wait_for(self.func(session, **kwargs), self.timeout_s)
            else:
                value = await asyncio.wait_for(asyncio.to_thread(self.func, session, **kwargs), self.timeout_s)
        except TimeoutError:
            return EvalResult.failure(f"the evaluator took longer than {self.timeout_s:g}s")
        except Exception as exc:  # noqa: BLE001 - user code: any failure is an evaluation error
            return EvalResult.failure(f"{type(exc).__name__}: {exc}")
        return as_result(value)


def as_result(value: Any) -> EvalResult:
    """A Python evaluator's answer as an EvalResult: a score, a bool, (score, reason) or an EvalResult."""
    if isinstance(value, EvalResult):
        return value
    reason = ""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        value, reason = value
    if isinstance(value, bool):
        return EvalResult.ok(value, reason)
    if isinstance(value, (int, float)):
        try:
            return EvalResult.ok(float(value), reason)
        except ValueError as exc:
            return EvalResult.failure(str(exc), raw=repr(value))
    return EvalResult.failure("the evaluator returned neither a score, a bool nor an EvalResult", raw=repr(value))


def build(spec: EvaluatorSpec, *, check_only: bool = False) -> Evaluator:
    """The evaluator of ``spec``; raises ValueError on bad parameters.

    ``check_only`` validates without reading secrets (a judge's key comes
    from the environment only when the evaluator is really built).
    """
    if spec.kind == "rule":
        from agentwatch.evaluate.rules import make_rule

        assert spec.rule is not None
        return make_rule(spec.rule, spec.params)
    if spec.kind == "faithfulness":
        from agentwatch.evaluate.faithfulness import EmbeddingFaithfulness, Faithfulness

        params = dict(spec.params)
        method = params.pop("method", "claims")
        if method == "embedding":
            # Needs the embeddings extra and a local model; the error says so when either is missing.
            try:
                return EmbeddingFaithfulness(params)
            except ImportError as exc:
                raise ValueError(str(exc)) from exc
        if method != "claims":
            raise ValueError(f"method: expected claims (offline, the default) or embedding, got {method!r}")
        return Faithfulness(params)
    if spec.kind == "python":
        assert spec.function is not None
        timeout = spec.params.get("timeout_s", PYTHON_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout!r}")
        params = {k: v for k, v in spec.params.items() if k != "timeout_s"}
        return PythonEvaluator(resolve_function(spec.function), timeout_s=float(timeout), params=params)
    if spec.kind == "llm":
        from agentwatch.evaluate.judge import MemoryJudgeCache, judge_from_params

        # Same evaluator version and same session content: the verdict is not paid for twice.
        cache = None if check_only else MemoryJudgeCache()
        return judge_from_params(spec.params, version=spec.version, check_only=check_only, cache=cache)
    raise ValueError(f"evaluators of kind {spec.kind!r} are not built")
