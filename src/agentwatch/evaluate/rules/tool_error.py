"""The ``tool_error`` rule: a tool call failed, by its span or by a result shaped like an error.

``tool_error``
    A tool call failed: its span has an error (status ERROR, ``error.type``),
    or its result looks like an error although the span says success: a JSON
    object with a non-empty ``error``/``errors`` key (``error_keys``), or a
    string value matching one of ``patterns`` (``re.search``, case-insensitive,
    ``^`` is the start of the value; default
    :data:`DEFAULT_ERROR_PATTERNS`: expired or invalid tokens, unauthorized,
    forbidden, rate limits, timeouts, 5xx, text starting with "Error").
    Patterns are tried on the result's string values only, never on its keys
    (``{"timeout": 30}`` is not an error); an integer ``status``/``status_code``
    of 400-599 is an error too. Params: ``tools?`` (only these),
    ``patterns?``, ``error_keys?``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules.common import ParamReader, Rule, listing, matches_any, parse_json, shorten
from agentwatch.evaluate.session import SessionView, ToolCall

__all__ = ["DEFAULT_ERROR_PATTERNS", "ToolError", "ToolErrorParams"]

#: Text that marks a tool result as an error although the span succeeded.
DEFAULT_ERROR_PATTERNS: tuple[str, ...] = (
    r"^\s*(?:error|exception|fatal)\b",
    r"\b(?:expired|invalid|revoked|missing) (?:access |api |auth |bearer )?(?:token|key|credentials?)\b",
    r"\btoken (?:has |is )?(?:expired|invalid|revoked)\b",
    r"\bunauthori[sz]ed\b",
    r"\bforbidden\b",
    r"\bpermission denied\b",
    r"\brate[- ]?limit(?:ed)?\b",
    r"\btoo many requests\b",
    r"\btimed out\b",
    r"\btime-?out\b",
    r"\bservice unavailable\b",
    r"\binternal server error\b",
    r"\bbad gateway\b",
    r"\b(?:http|status|code|error)\W{0,3}(?:401|403|429|5\d\d)\b",
)
#: The words (any one of them, case aside) that every match of each default pattern holds, in the same order:
#: on an ASCII text a pattern is tried only when one of its words is in it, a substring test instead of a
#: pattern tried at every position.
_DEFAULT_ERROR_WORDS: tuple[tuple[str, ...], ...] = (
    ("error", "exception", "fatal"), ("token", "key", "credential"), ("token",), ("unauthori",), ("forbidden",),
    ("permission denied",), ("limit",), ("too many requests",), ("timed out",), ("time",),
    ("service unavailable",), ("internal server error",), ("bad gateway",), ("http", "status", "code", "error"),
)
#: Keys whose integer value in 400-599 marks a result as an HTTP error (``{"status": 503}``).
_STATUS_KEYS = ("status", "status_code", "statusCode", "http_status")


def _strings(value: Any) -> Iterator[str]:
    """Every string value inside a JSON value (never the keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _any_of(patterns: Sequence[re.Pattern[str]], flags: int) -> re.Pattern[str] | None:
    """One pattern that matches where any of ``patterns`` does, to rule out a text in one pass; None when
    they cannot be joined (capturing groups that a backreference might count, inline global flags)."""
    if len(patterns) < 2 or any(pattern.groups for pattern in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{pattern.pattern})" for pattern in patterns), flags)
    except re.error:
        return None


@dataclass(frozen=True, slots=True)
class ToolErrorParams:
    tools: tuple[str, ...] | None = None
    patterns: tuple[str, ...] = DEFAULT_ERROR_PATTERNS
    error_keys: tuple[str, ...] = ("error", "errors")


class ToolError(Rule):
    """A tool call failed: a span error, or a result shaped like an error."""

    name = "tool_error"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tools", "patterns", "error_keys"))
        patterns = p.strings("patterns", allow_empty=True)
        keys = p.strings("error_keys", allow_empty=True)
        self.params = ToolErrorParams(
            tools=p.strings("tools"),
            patterns=DEFAULT_ERROR_PATTERNS if patterns is None else patterns,
            error_keys=("error", "errors") if keys is None else keys,
        )
        self._patterns = p.regexes("patterns", self.params.patterns, re.IGNORECASE)
        self._any = _any_of(self._patterns, re.IGNORECASE)
        self._words = _DEFAULT_ERROR_WORDS if self.params.patterns == DEFAULT_ERROR_PATTERNS else None

    def problem(self, call: ToolCall) -> str | None:
        """What is wrong with ``call``, or None when it succeeded."""
        if not call.success:
            detail = ": ".join(part for part in (call.error_type, call.error_message) if part)
            return detail or "span status ERROR"
        result = parse_json(call.result)
        if isinstance(result, Mapping):
            for key in self.params.error_keys:
                value = result.get(key)
                if value not in (None, False, "", [], {}):
                    return f"result has {key!r}: {shorten(value)}"
            for key in _STATUS_KEYS:
                value = result.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
                    return f"result has {key!r}: {value}"
        for text in _strings(result):
            for pattern in self._candidates(text):
                if pattern.search(text):
                    return f"result matches {pattern.pattern!r}: {shorten(text)}"
        return None

    def _candidates(self, text: str) -> Sequence[re.Pattern[str]]:
        """The patterns that may match ``text``, in order; found cheaply, as most texts match none."""
        if self._words is not None and text.isascii():
            lower = text.lower()
            return [pattern for pattern, words in zip(self._patterns, self._words, strict=True)
                    if any(word in lower for word in words)]
        if self._any is not None and self._any.search(text) is None:
            return ()
        return self._patterns

    def check(self, session: SessionView) -> EvalResult:
        calls = [c for c in session.tool_calls if self.params.tools is None or matches_any(c.name, self.params.tools)]
        if not calls:
            return EvalResult.ok(1.0, reason="no tool calls" if self.params.tools is None
                                 else "none of the tools was called")
        failures = []
        for call in calls:
            problem = self.problem(call)
            if problem is not None:
                failures.append(f"tool {call.name} failed: {problem} (span {call.span_id})")
        if failures:
            return EvalResult.ok(0.0, reason=listing(failures))
        return EvalResult.ok(1.0, reason=f"{len(calls)} tool call(s) succeeded")
