"""The evaluator catalogue: what to score, how, and which version.

Evaluators are declared in ``agentwatch.yaml``::

    sampling: {default_rate: 0.05}
    evaluators:
      - name: tool_use                  # the objective it measures
        kind: rule                      # rule | python | llm | faithfulness | external
        rule: tool_error
        threshold: 1.0                  # passed iff score >= threshold (higher_is_better)
        severity: page                  # page | ticket
        owner: payments-oncall
      - name: refund_policy
        kind: python
        function: checks.policy:refund_within_limit
        sample_rate: 0.2
        filter: {intent: [refund], called_tool: refund_api}
      - name: external:helpfulness      # scores sent over OTLP as gen_ai.evaluation.result
        kind: external
        threshold: 0.7

or from Python with the :func:`evaluator` decorator. An evaluator's
**version** is a hash of its content: kind, rule, parameters (a judge's
prompt and model among them) and, for Python, the function's source. Any
change makes a new version; threshold, severity, owner, sampling and filter
are policy, not content, and keep the version.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from agentwatch.errors import ConfigError
from agentwatch.evaluate.build import BUILDERS, build, import_function
from agentwatch.settings import Section, config_line

DIRECTIONS = ("higher_is_better", "lower_is_better")
SEVERITIES = ("page", "ticket")
#: Kinds cheap enough to run on every session by default.
_FULL_RATE_KINDS = frozenset({"rule", "faithfulness", "external"})
EXTERNAL_PREFIX = "external:"
#: Judge parameters about reaching the judge, left out of an llm evaluator's version.
TRANSPORT_PARAMS = frozenset({
    "base_url", "api_key_env", "timeout_s", "max_retries", "backoff_base_s", "backoff_cap_s",
    "retry_after_max_s", "max_concurrency", "price_input_per_mtok", "price_output_per_mtok",
})
EXTERNAL_VERSION = "external"

#: Functions registered with :func:`evaluator`, by "module:function".
_DECORATED: dict[str, dict[str, Any]] = {}


def evaluator(
    name: str | None = None,
    *,
    threshold: float = 0.5,
    direction: str = "higher_is_better",
    severity: str = "ticket",
    owner: str | None = None,
    sample_rate: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a Python evaluator; ``kind: python`` entries naming it inherit these fields.

    The function takes a :class:`~agentwatch.evaluate.session.SessionView` and
    returns a score in [0, 1], a bool, ``(score, reason)`` or an ``EvalResult``.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        _DECORATED[f"{func.__module__}:{func.__qualname__}"] = {
            "name": name or func.__name__, "threshold": threshold, "direction": direction,
            "severity": severity, "owner": owner, "sample_rate": sample_rate,
        }
        return func

    return register


@dataclass(frozen=True)
class Filter:
    """Which sessions an evaluator applies to; every given field must match."""

    service: tuple[str, ...] = ()
    intent: tuple[str, ...] = ()
    agent_version: tuple[str, ...] = ()
    called_tool: tuple[str, ...] = ()

    def matches(self, summary: Mapping[str, Any], tools_called: set[str]) -> bool:
        if self.service and summary.get("service") not in self.service:
            return False
        if self.intent and summary.get("intent") not in self.intent:
            return False
        if self.agent_version and summary.get("agent_version") not in self.agent_version:
            return False
        if self.called_tool and not tools_called.intersection(self.called_tool):
            return False
        return True

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class EvaluatorSpec:
    """One evaluator as configured."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    rule: str | None = None
    function: str | None = None
    threshold: float | None = 0.5
    direction: str = "higher_is_better"
    severity: str = "ticket"
    owner: str | None = None
    sample_rate: float | None = None
    filter: Filter = field(default_factory=Filter)
    dataset_version: str | None = None
    #: The source of a Python evaluator's function (part of its version).
    source: str | None = None

    @property
    def content(self) -> dict[str, Any]:
        """What the version is a hash of."""
        params = self.params
        if self.kind == "llm":
            # Where and how the judge is reached is not what it is: a moved endpoint keeps the version.
            params = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS}
        content: dict[str, Any] = {"kind": self.kind, "params": params}
        if self.rule:
            content["rule"] = self.rule
        if self.function:
            content["function"] = self.function
            content["source_sha256"] = hashlib.sha256((self.source or "").encode()).hexdigest()
        return content

    @property
    def version(self) -> str:
        if self.kind == "external":
            return EXTERNAL_VERSION
        text = json.dumps(self.content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def effective_rate(self, default_rate: float) -> float:
        if self.sample_rate is not None:
            return self.sample_rate
        return 1.0 if self.kind in _FULL_RATE_KINDS else default_rate

    def passed(self, score: float | None) -> bool | None:
        if score is None or self.threshold is None:
            return None
        if self.direction == "lower_is_better":
            return score <= self.threshold
        return score >= self.threshold

    def describe(self, default_rate: float) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "version": self.version, "rule": self.rule,
            "function": self.function, "params": _redacted(self.params), "threshold": self.threshold,
            "direction": self.direction, "severity": self.severity, "owner": self.owner,
            "sample_rate": self.sample_rate, "effective_sample_rate": self.effective_rate(default_rate),
            "filter": self.filter.as_dict(), "dataset_version": self.dataset_version,
        }


def _redacted(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as shown by the API: no secret ever, even one written into the config by mistake."""
    return {k: ("<redacted>" if any(s in k.lower() for s in ("key", "secret", "token", "password"))
                and not k.lower().endswith("_env") else v)
            for k, v in params.items()}


@dataclass(frozen=True)
class Catalogue:
    """Every configured evaluator, and the head-sampling rate of the deployment."""

    specs: tuple[EvaluatorSpec, ...] = ()
    default_rate: float = 0.05

    def by_name(self, name: str) -> EvaluatorSpec | None:
        return next((s for s in self.specs if s.name == name), None)

    @property
    def scored(self) -> tuple[EvaluatorSpec, ...]:
        """The evaluators that compute scores (external ones only declare thresholds)."""
        return tuple(s for s in self.specs if s.kind != "external")

    def external_spec(self, evaluation_name: str) -> EvaluatorSpec:
        """The declared spec of an external evaluation, or an undeclared one (no threshold)."""
        name = EXTERNAL_PREFIX + evaluation_name
        declared = self.by_name(name)
        return declared or EvaluatorSpec(name=name, kind="external", threshold=None)


def kinds() -> tuple[str, ...]:
    """The kinds a spec may name: every registered builder, and ``external`` (scores posted over the API)."""
    return (*BUILDERS, "external")


# -- loading ---------------------------------------------------------------

_KEYS = {"name", "kind", "rule", "function", "params", "threshold", "direction", "severity", "owner",
         "sample_rate", "filter", "dataset_version", "requires_env"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _required_env_set(where: str, index: int, entry: Any) -> bool:
    """False when the entry names, in ``requires_env``, an environment variable that is unset or empty:
    the evaluator is declared but not loaded (an LLM judge without a configured endpoint)."""
    if not isinstance(entry, Mapping) or "requires_env" not in entry:
        return True
    name = entry["requires_env"]
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"{where}, line {config_line(entry, 'requires_env')}, key evaluators[{index}].requires_env: "
                          f"expected the name of an environment variable, got {name!r}")
    return bool(os.environ.get(name))


def load_catalogue(sections: Mapping[str, Any], config_path: str | None = None) -> Catalogue:
    """Validate the ``sampling`` and ``evaluators`` sections of the config file.

    Errors name the file, the line and the key; Python evaluators are imported
    with the config file's folder first on ``sys.path``.
    """
    where = config_path or "agentwatch.yaml"
    sampling = sections.get("sampling") or {}
    if not isinstance(sampling, Mapping):
        raise ConfigError(f"{where}, line {config_line(sections, 'sampling')}, key sampling: expected a mapping like "
                          "{default_rate: 0.05}")
    unknown = set(sampling) - {"default_rate"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{where}, line {config_line(sampling, key)}, key sampling.{key}: unknown setting (known: "
                          "default_rate)")
    default_rate = _rate(where, sampling, "default_rate", "sampling.default_rate", 0.05)
    entries = sections.get("evaluators") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}, line {config_line(sections, 'evaluators')}, key evaluators: expected a list of "
                          "evaluators")
    if config_path:
        folder = str(Path(config_path).resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    specs: list[EvaluatorSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if not _required_env_set(where, index, entry):
            continue
        spec = _spec(where, index, entry, sections)
        if spec.name in seen:
            raise ConfigError(f"{where}, line {config_line(entry, 'name')}, key evaluators[{index}].name: "
                              f"{spec.name!r} is declared twice")
        seen.add(spec.name)
        specs.append(spec)
    return Catalogue(tuple(specs), default_rate)


def _rate(where: str, mapping: Mapping[str, Any], key: str, dotted: str, default: float | None) -> Any:
    value = mapping.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{where}, line {config_line(mapping, key)}, key {dotted}: expected a rate from 0 to 1, "
                          f"got {value!r}")
    return float(value)


def _spec(where: str, index: int, entry: Any, sections: Mapping[str, Any]) -> EvaluatorSpec:
    at = f"evaluators[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}, line {config_line(sections, 'evaluators')}, key {at}: expected a mapping "
                          "with name and kind")

    fail = Section(where, entry, at).error

    unknown = set(entry) - _KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(key, f"unknown key (known: {', '.join(sorted(_KEYS))})")
    kind = entry.get("kind")
    if kind not in kinds():
        raise fail("kind", f"expected one of {', '.join(kinds())}, got {kind!r}")
    fields: dict[str, Any] = {}
    function = entry.get("function")
    source = None
    if kind == "python":
        if not isinstance(function, str) or ":" not in function:
            raise fail("function", "expected 'module:function' for a python evaluator")
        func = import_function(function, lambda message: fail("function", message))
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            source = repr(getattr(func, "__code__", func))
        fields.update({k: v for k, v in _DECORATED.get(function, {}).items() if v is not None})
    elif function is not None:
        raise fail("function", f"only python evaluators take a function (this one is {kind})")
    name = entry.get("name", fields.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "expected the name of the objective it measures, e.g. faithfulness")
    if kind == "external" and not name.startswith(EXTERNAL_PREFIX):
        raise fail("name", f"external evaluators are named {EXTERNAL_PREFIX}<gen_ai.evaluation.name>")
    if kind != "external" and name.startswith(EXTERNAL_PREFIX):
        raise fail("name", f"the prefix {EXTERNAL_PREFIX} is for kind external")
    rule = entry.get("rule")
    if kind == "rule":
        if not isinstance(rule, str):
            raise fail("rule", "expected the name of a built-in rule")
    elif rule is not None:
        raise fail("rule", f"only rule evaluators take a rule (this one is {kind})")
    params = entry.get("params") or {}
    if not isinstance(params, Mapping):
        raise fail("params", "expected a mapping")
    threshold = entry.get("threshold", fields.get("threshold", 0.5))
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0.0 <= float(threshold) <= 1.0):
        raise fail("threshold", f"expected a number from 0 to 1, got {threshold!r}")
    direction = entry.get("direction", fields.get("direction", "higher_is_better"))
    if direction not in DIRECTIONS:
        raise fail("direction", f"expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
    severity = entry.get("severity", fields.get("severity", "ticket"))
    if severity not in SEVERITIES:
        raise fail("severity", f"expected page or ticket, got {severity!r}")
    owner = entry.get("owner", fields.get("owner"))
    if owner is not None and not isinstance(owner, str):
        raise fail("owner", "expected a string")
    sample_rate = _rate(where, entry, "sample_rate", f"{at}.sample_rate", fields.get("sample_rate"))
    dataset_version = entry.get("dataset_version")
    if dataset_version is not None and not isinstance(dataset_version, (str, int)):
        raise fail("dataset_version", "expected a dataset version")
    spec = EvaluatorSpec(
        name=name, kind=kind, params=dict(params), rule=rule, function=function,
        threshold=None if threshold is None else float(threshold), direction=direction, severity=severity,
        owner=owner, sample_rate=sample_rate, filter=_filter(entry, fail),
        dataset_version=None if dataset_version is None else str(dataset_version), source=source,
    )
    try:
        if kind != "external":
            build(spec, check_only=True)
    except (ValueError, TypeError) as exc:
        raise fail("rule" if kind == "rule" else "params", str(exc)) from exc
    return spec


def _filter(entry: Mapping[str, Any], fail: Callable[[str, str], ConfigError]) -> Filter:
    raw = entry.get("filter") or {}
    if not isinstance(raw, Mapping):
        raise fail("filter", "expected a mapping of service, intent, agent_version, called_tool")
    values: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        if key not in ("service", "intent", "agent_version", "called_tool"):
            raise fail("filter", f"unknown filter {key!r} (known: service, intent, agent_version, called_tool)")
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise fail("filter", f"{key}: expected a string or a list of strings")
        values[key] = tuple(items)
    return Filter(**values)
