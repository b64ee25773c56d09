"""What the built-in rules share: their params reader, their base class and the helpers they read calls with.

:class:`ParamReader` checks one rule's params mapping (an evaluator's too:
``kind="evaluator"``), every error naming the rule and the parameter.
:class:`Rule` is the base of every rule: ``check`` judges a session, and
``evaluate`` turns an :class:`_Unevaluable` (the session lacks what the rule
needs) or any other error into ``EvalResult.failure``, never a 0.
:class:`BoundSource` is the ``{tool, field, match?}`` of an earlier call that
``numeric_bound`` (``max_from``) and ``date_window`` (``date_from``) read.
The value helpers read tool arguments and results that may be JSON text
(:func:`parse_json`, :func:`parse_number`, ``_at``) and write reasons
(:func:`shorten`, :func:`listing`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Any, ClassVar

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.session import SessionView, ToolCall

__all__ = [
    "BoundSource",
    "ParamReader",
    "Rule",
    "listing",
    "matches_any",
    "parse_json",
    "parse_number",
    "shorten",
]

_FLAGS = {
    "IGNORECASE": re.IGNORECASE, "I": re.IGNORECASE,
    "MULTILINE": re.MULTILINE, "M": re.MULTILINE,
    "DOTALL": re.DOTALL, "S": re.DOTALL,
    "VERBOSE": re.VERBOSE, "X": re.VERBOSE,
}
_MAX_LISTED = 5


class _Unevaluable(Exception):
    """The session lacks what the rule needs: an evaluation failure, not a score."""


# --------------------------------------------------------------------------- params


_UNSET: Any = object()


class ParamReader:
    """Reads one rule's params mapping; every error names the rule and the parameter."""

    def __init__(self, rule: str, params: Mapping[str, Any] | None, known: Sequence[str], *,
                 kind: str = "rule") -> None:
        #: What errors name first: ``rule 'budget'``, ``evaluator 'faithfulness'``.
        self.owner = f"{kind} {rule!r}"
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{self.owner}: params must be a mapping, got {type(params).__name__}")
        self.params = params
        for key in params:
            if key not in known:
                raise ValueError(f"{self.owner}: unknown parameter {key!r} (known: {', '.join(sorted(known))})")

    def error(self, key: str, what: str, value: Any = _UNSET) -> ValueError:
        """``parameter 'key' must be <what>, got <value>`` (the param's own value unless given)."""
        got = self.params.get(key) if value is _UNSET else value
        return ValueError(f"{self.owner}: parameter {key!r} must be {what}, got {got!r}")

    def has(self, key: str) -> bool:
        return self.params.get(key) is not None

    def required(self, key: str) -> Any:
        if self.params.get(key) is None:
            raise ValueError(f"{self.owner}: parameter {key!r} is required")
        return self.params[key]

    def string(self, key: str, *, required: bool = False, choices: Sequence[str] = ()) -> str | None:
        value = self.required(key) if required else self.params.get(key)
        if value is None:
            return None
        if choices:
            if value not in choices:
                raise self.error(key, "one of " + ", ".join(repr(c) for c in choices))
            return str(value)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "a non-empty string")
        return value

    def strings(self, key: str, *, required: bool = False, allow_empty: bool = False) -> tuple[str, ...] | None:
        value = self.required(key) if required else self.params.get(key)
        if value is None:
            return None
        return self.string_list(key, value, allow_empty=allow_empty)

    def string_list(self, key: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
        what = "a list of non-empty strings" if allow_empty else "a non-empty list of non-empty strings"
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise self.error(key, what, value)
        if not value and not allow_empty:
            raise self.error(key, what, value)
        if not all(isinstance(item, str) and item.strip() for item in value):
            raise self.error(key, what, value)
        return tuple(value)

    def number(self, key: str, *, minimum: float | None = 0.0) -> float | None:
        value = self.params.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, "a finite number")
        if minimum is not None and value < minimum:
            raise self.error(key, f"a number >= {minimum:g}")
        return float(value)

    def integer(self, key: str, *, minimum: int = 0) -> int | None:
        value = self.params.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"an integer >= {minimum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.params.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, "true or false")
        return value

    def mapping(self, key: str, *, required: bool = False) -> Mapping[str, Any] | None:
        value = self.required(key) if required else self.params.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not value:
            raise self.error(key, "a non-empty mapping")
        return value

    def flags(self, key: str) -> int:
        value = self.params.get(key)
        if value is None:
            return 0
        names = [value] if isinstance(value, str) else value
        what = "a list of regex flags (" + ", ".join(n for n in _FLAGS if len(n) > 1) + ")"
        if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
            raise self.error(key, what)
        out = 0
        for name in names:
            flag = _FLAGS.get(name.upper()) if isinstance(name, str) else None
            if flag is None:
                raise self.error(key, what)
            out |= flag
        return out

    def regexes(self, key: str, patterns: Sequence[str], flags: int) -> tuple[re.Pattern[str], ...]:
        out = []
        for pattern in patterns:
            try:
                out.append(re.compile(pattern, flags))
            except re.error as exc:
                raise ValueError(
                    f"{self.owner}: parameter {key!r} has an invalid regular expression {pattern!r}: {exc}"
                ) from None
        return tuple(out)

    def path(self, key: str, raw: Any) -> tuple[str, ...]:
        """A dotted path (``order.total``, ``items.0.price``) given as ``raw`` for parameter ``key``."""
        if raw is None:
            raise ValueError(f"{self.owner}: parameter {key!r} is required")
        if not isinstance(raw, str) or not raw or any(not part for part in raw.split(".")):
            raise ValueError(f"{self.owner}: parameter {key!r} must be a dotted path like 'order.total', "
                             f"got {raw!r}")
        return tuple(raw.split("."))


# --------------------------------------------------------------------------- helpers


def parse_json(value: Any) -> Any:
    """A JSON string parsed; anything else (or text that is not JSON) as it is."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "[", '"') or text in ("true", "false", "null"):
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                return value
    return value


def shorten(value: Any, limit: int = 120) -> str:
    """``value`` on one line (as JSON unless a string), cut to ``limit`` characters with ``...``."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def listing(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    """The first ``limit`` items joined with ``; ``, and how many more there are."""
    shown = "; ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}; and {len(items) - limit} more"


_MISSING = object()


def _at(value: Any, path: Sequence[str]) -> Any:
    """The value at a dotted path (list items by index), or ``_MISSING``."""
    node = parse_json(value)
    for part in path:
        node = parse_json(node)
        if isinstance(node, Mapping):
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                return _MISSING
            node = node[index]
        else:
            return _MISSING
    return node


def parse_number(value: Any) -> Decimal | None:
    """A number from a JSON number or a numeric string (``"42.50"``, ``"$1,200"``); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace(" ", "")
        text = text.lstrip("$€£¥")
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches one of the shell-style ``patterns`` (``lookup_*``), case counting."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _intent(session: SessionView) -> str | None:
    if session.intent:
        return session.intent
    for span in session.spans:
        if span.intent:
            return span.intent
    return None


# --------------------------------------------------------------------------- base


class Rule:
    """One built-in rule: params checked at construction, ``evaluate`` never raises."""

    name: ClassVar[str]

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    async def evaluate(self, session: SessionView) -> EvalResult:
        try:
            return self.check(session)
        except _Unevaluable as exc:
            return EvalResult.failure(f"rule {self.name!r}: {exc}")
        except Exception as exc:  # an evaluator error is recorded, never scored 0
            return EvalResult.failure(f"rule {self.name!r} failed: {type(exc).__name__}: {exc}")

    def check(self, session: SessionView) -> EvalResult:
        raise NotImplementedError


# --------------------------------------------------------------------------- earlier calls


@dataclass(frozen=True, slots=True)
class BoundSource:
    """``max_from``: a number in the result of an earlier call of another tool."""

    tool: str
    field: tuple[str, ...]
    match: tuple[tuple[str, ...], ...] = ()


def _source(p: ParamReader, key: str, raw: Mapping[str, Any]) -> BoundSource:
    """``{tool, field, match?}`` of parameter ``key`` (``max_from``, ``date_from``)."""
    extra = sorted(set(raw) - {"tool", "field", "match"})
    if extra:
        raise ValueError(f"{p.owner}: parameter {key!r} has unknown key {extra[0]!r} (known: field, match, tool)")
    tool = raw.get("tool")
    if not isinstance(tool, str) or not tool:
        raise ValueError(f"{p.owner}: parameter '{key}.tool' must be a non-empty string, got {tool!r}")
    field = p.path(f"{key}.field", raw.get("field"))
    match = raw.get("match")
    paths: tuple[tuple[str, ...], ...] = ()
    if match is not None:
        if isinstance(match, str) or not isinstance(match, Sequence) or not match:
            raise ValueError(f"{p.owner}: parameter '{key}.match' must be a non-empty list of argument paths, "
                             f"got {match!r}")
        paths = tuple(p.path(f"{key}.match", name) for name in match)
    return BoundSource(tool=tool, field=field, match=paths)


def _source_call(source: BoundSource, call: ToolCall, calls: Sequence[ToolCall]) -> ToolCall | None:
    """The latest successful call of ``source.tool`` started before ``call`` that agrees on ``source.match``."""
    earlier = [c for c in calls if c.name == source.tool and c.success and c.start_ns < call.start_ns
               and c.span_id != call.span_id]
    for path in source.match:
        mine = _at(call.arguments, path)
        earlier = [c for c in earlier if _at(c.arguments, path) == mine]
    return max(earlier, key=lambda c: (c.start_ns, c.end_ns)) if earlier else None


def _no_source(source: BoundSource) -> str:
    matching = f" with the same {', '.join('.'.join(p) for p in source.match)}" if source.match else ""
    return f"no successful {source.tool} call{matching} before it"
