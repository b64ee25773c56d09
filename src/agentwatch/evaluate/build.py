"""Evaluators from their specs: a registry of kinds, one builder each.

``kind:`` in ``agentwatch.yaml`` names a builder registered here with
:func:`register_kind`; :func:`build` looks it up. The catalogue validates each
spec by building it with ``check_only`` (no secrets read), so an unknown kind
or a bad parameter fails at load, naming the file, line and key. ``external``
is a kind of the catalogue only: scores posted over the API, never built.

>>> sorted(BUILDERS)
['faithfulness', 'llm', 'python', 'rule']
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import TYPE_CHECKING, Any, Callable

from agentwatch.errors import ConfigError
from agentwatch.evaluate.base import EvalResult, Evaluator
from agentwatch.evaluate.session import SessionView

if TYPE_CHECKING:
    from agentwatch.evaluate.catalogue import EvaluatorSpec

#: Builds the evaluator of a spec; ``check_only`` validates without reading secrets. Raises ValueError.
Builder = Callable[["EvaluatorSpec", bool], Evaluator]
#: The registered kinds.
BUILDERS: dict[str, Builder] = {}

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


def register_kind(kind: str) -> Callable[[Builder], Builder]:
    """Register the builder of ``kind`` (a decorator); a kind is registered once."""
    def register(builder: Builder) -> Builder:
        if kind in BUILDERS:
            raise ValueError(f"evaluator kind {kind!r} is registered already")
        BUILDERS[kind] = builder
        return builder
    return register


def build(spec: EvaluatorSpec, *, check_only: bool = False) -> Evaluator:
    """The evaluator of ``spec``; raises ValueError on bad parameters.

    ``check_only`` validates without reading secrets (a judge's key comes
    from the environment only when the evaluator is really built).
    """
    builder = BUILDERS.get(spec.kind)
    if builder is None:
        raise ValueError(f"evaluators of kind {spec.kind!r} are not built")
    return builder(spec, check_only)


@register_kind("rule")
def _rule(spec: EvaluatorSpec, check_only: bool) -> Evaluator:
    from agentwatch.evaluate.rules import make_rule

    assert spec.rule is not None
    return make_rule(spec.rule, spec.params)


@register_kind("python")
def _python(spec: EvaluatorSpec, check_only: bool) -> Evaluator:
    assert spec.function is not None
    timeout = spec.params.get("timeout_s", PYTHON_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout!r}")
    params = {k: v for k, v in spec.params.items() if k != "timeout_s"}
    return PythonEvaluator(resolve_function(spec.function), timeout_s=float(timeout), params=params)


@register_kind("llm")
def _llm(spec: EvaluatorSpec, check_only: bool) -> Evaluator:
    from agentwatch.evaluate.judge import MemoryJudgeCache, judge_from_params

    # Same evaluator version and same session content: the verdict is not paid for twice.
    cache = None if check_only else MemoryJudgeCache()
    return judge_from_params(spec.params, version=spec.version, check_only=check_only, cache=cache)


@register_kind("faithfulness")
def _faithfulness(spec: EvaluatorSpec, check_only: bool) -> Evaluator:
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


def import_function(path: str, fail: Callable[[str], ConfigError]) -> Callable[..., Any]:
    """The callable at ``module:attr.path``; ``fail`` makes the error of each way it can be missing."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is a config error
        raise fail(f"cannot import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise fail(f"{module_name!r} has no {attr!r}")
    if not callable(target):
        raise fail(f"{path} is not callable")
    return target  # type: ignore[no-any-return]


def resolve_function(path: str) -> Callable[..., Any]:
    """The callable of a ``module:function`` path (imported already by :func:`load_catalogue`)."""
    return import_function(path, ConfigError)
