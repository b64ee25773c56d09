"""Built-in rule evaluators: cheap, deterministic checks that run on every session.

A rule is built from its name and a params mapping (the ``params`` of an
``evaluators:`` entry of ``agentwatch.yaml``); the params are checked when the
rule is built, so a bad configuration fails at start with a ``ValueError``
naming the rule and the parameter::

    from agentwatch.evaluate.rules import make_rule

    rule = make_rule("numeric_bound", {
        "tool": "refund_api", "field": "amount",
        "max_from": {"tool": "lookup_order", "field": "order.total", "match": ["order_id"]},
    })
    result = await rule.evaluate(view)      # EvalResult.ok(0.0, reason="refund_api.amount = 120 > 100 ...")

Every rule scores pass/fail: 1.0 when the session keeps the rule, 0.0 when it
breaks it, the reason naming each violation (tool, value, span id). No rule
grades: each states an invariant, and a session that breaks it once is as
broken as one that breaks it twice; the count of violations is in the reason.
A rule that cannot judge the session (data it needs is missing or malformed
in a way the params do not cover) answers ``EvalResult.failure``, never 0.

The rules and their params (``?`` marks an optional one):

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
``tool_allowlist``
    Every tool called is in the allowed set of the session's intent.
    Params: ``allowed`` (``{intent: [tool, ...]}``), ``default?`` (the set for
    an intent not listed, or no intent). Tool names may be shell-style
    patterns (``lookup_*``). With tool calls and no set for the intent: failure.
``required_tool``
    Every tool of ``tools`` was called at least once (successfully, with
    ``require_success: true``). Params: ``tools``, ``when_intent?`` (a name or
    list; other intents pass with reason "not applicable"), ``require_success?``.
``answer_pattern``
    No agent answer matches a ``forbidden`` regex, and each ``required`` regex
    matches an answer. Params: ``forbidden?``, ``required?`` (at least one),
    ``flags?`` (``[IGNORECASE, MULTILINE, DOTALL]`` or ``i``/``m``/``s``),
    ``scope?``: ``all_turns`` (default: every turn's answer) or ``final`` (the
    session's last answer).
``tool_schema``
    Each call of ``tool`` has arguments valid against ``arguments_schema`` and
    (when the call succeeded) a result valid against ``result_schema``
    (JSON Schema, any draft the ``jsonschema`` package knows; formats checked).
    A JSON string is parsed first. Arguments or a result that were not
    recorded (content capture off) make a failure, not a violation.
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
``date_window``
    Each successful call of ``tool`` (status not ERROR) comes at most
    ``max_days`` days after a date read from an earlier call: ``date_from``
    (``{tool, field, match?}``) names the latest successful call of that tool
    started before this one, in any turn (``match`` lists argument paths both
    calls must agree on, e.g. ``[order_id]``), and the path of the date in its
    result (``delivered_on``). The date is an ISO date or date-time (an offset
    is converted to UTC, a naive one taken as UTC); the call's own date is its
    start time's UTC date, and a call more than ``max_days`` days after the
    date breaks the rule (a refund of an order delivered 31 days earlier, with
    ``max_days: 30``). ``on_missing?``: what a missing source call or a
    missing or unreadable date means: ``fail`` (default), ``pass`` or
    ``error``, as for ``numeric_bound``.
``budget``
    ``max_latency_ms?`` (the slowest turn: first span start to last span end
    of the turn, so a user's think time between turns is not counted),
    ``max_turns?``, ``max_cost_usd?`` (the sum of llm and embedding spans'
    cost, as in the session summary), ``max_tool_calls?``; at least one.
``confirmation``
    Each call of a consequential tool (``tools``) was consented to by the user.
    The exact rule: find the model call (llm span) that emitted the tool call:
    the latest llm span started before the tool whose output has a tool_call
    part with the call's id and tool name (ids are not always unique), else
    the latest one of the turn asking for that tool by name. In the
    conversation it saw (its input messages), the last user message must match
    none of ``negative_patterns`` (default :data:`DEFAULT_NEGATIVE_PATTERNS`:
    starts with no / don't / wait, "not sure", "hold off", "don't proceed")
    and either

    - one of ``patterns`` (case-insensitive; default
      :data:`DEFAULT_CONFIRM_PATTERNS`: a yes wherever it stands, okay or sure
      opening a clause, go ahead, please proceed, I confirm, confirming,
      sounds good, a yes in other languages), with the closest earlier
      non-system message an assistant message with text (the proposal the
      user answered; a "yes" that opens the conversation confirms nothing); or
    - one of ``instruction_patterns`` (default
      :data:`DEFAULT_INSTRUCTION_PATTERNS`: an imperative naming an action,
      "Please downgrade all of them", not a question), when the agent's
      previous message matches none of ``proposal_patterns`` (default
      :data:`DEFAULT_PROPOSAL_PATTERNS`: please confirm, would you like ...?,
      shall I ...?): an instruction where nothing was proposed is consent.

    A yes covers the call as proposed: when a consequential call made after it
    failed (error-shaped result) and this call has other arguments, the rule
    is broken (the user has not seen the new proposal). With
    ``one_call_per_confirmation: true``, a confirmation covers one
    consequential call: another consequential call between the user's message
    and this one breaks the rule. A call whose model call or input messages
    cannot be found is a failure.

:mod:`agentwatch.evaluate.policy` adds ``grounded_arguments`` (an action's ids
and amounts were on the record before it) and ``call_limit`` (an action that
worked more often than asked) to :data:`RULES`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Any, ClassVar

import jsonschema
from jsonschema.exceptions import SchemaError

from agentwatch._types import USAGE_KINDS, NormalizedSpan
from agentwatch.evaluate.base import EvalResult, Evaluator
from agentwatch.evaluate.session import SessionView, ToolCall
from agentwatch.normalize.messages import message_text

__all__ = [
    "DEFAULT_CONFIRM_PATTERNS",
    "DEFAULT_ERROR_PATTERNS",
    "DEFAULT_NEGATIVE_PATTERNS",
    "RULES",
    "AnswerPattern",
    "Budget",
    "Confirmation",
    "DateWindow",
    "NumericBound",
    "RequiredTool",
    "Rule",
    "ToolAllowlist",
    "ToolError",
    "ToolSchema",
    "make_rule",
]

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

#: A user message that confirms a proposed action: a yes wherever it stands, "please proceed", "go ahead",
#: "I confirm", "confirming to proceed", a yes in another language.
DEFAULT_CONFIRM_PATTERNS: tuple[str, ...] = (
    r"\b(?:yes|yeah|yep|yup|yess+)\b",
    r"(?:^|[.!?;,]\s*)\W*(?:sure|ok|okay|correct|confirm(?:ed)?|affirmative|absolutely|definitely|certainly|"
    r"of course|alright|all right)\b",
    r"\bgo ahead\b",
    r"\bplease (?:do|proceed|continue|confirm it|book it|make the change)\b",
    r"\bproceed\b",
    r"\b(?:i|we) (?:do |hereby )?confirm\b",
    r"\bconfirm(?:ed|ing)\b",
    r"\bdo it\b",
    r"\bthat(?:'s| is| all| works| sounds)(?: (?:all|fine|good))? (?:right|correct|fine|good|great|perfect)\b",
    r"\b(?:sounds|looks) (?:good|great|perfect|fine|right)\b",
    r"\blet'?s do (?:it|that|this)\b",
    # Other languages: si / sí, oui, ja, sim, tak, da (Slavic), hai and more, as a word.
    r"(?:^|[\s.!?,;:¡¿\"'(])(?:s[ií]|oui|ja|sim|tak|да|はい|是的?|好的?|네|예|evet|ναι)(?=$|[\s.!?,;:\"')、。！，])",
    r"\b(?:d'accord|claro|vale|adelante|proceda|procede|allez-y|vas-y|genau|einverstanden|certo|va bene|procedi|"
    r"prosseguir|pode seguir|natürlich|bien sûr|por supuesto|confirmo|confirme|bestätige)\b",
)

#: A user message that withholds confirmation even if it also says "proceed" or "yes".
DEFAULT_NEGATIVE_PATTERNS: tuple[str, ...] = (
    r"^\W*(?:no|nope|nah|not yet|don'?t|do not|wait|hold on|stop)\b",
    r"\b(?:don'?t|do not|not|never) (?:proceed|go ahead|do it|confirm)\b",
    r"\bnot sure\b",
    r"\b(?:don'?t|do not|not|never|no longer)\b[^.?!]{0,30}\b(?:proceed|go ahead|confirm)\b",
    r"\b(?:hold off|not (?:right )?now|let me think|changed my mind)\b",
)

#: A user message that instructs an action outright ("Please downgrade all of them to economy"): an
#: imperative naming an action, not a question. It is consent when the agent had proposed nothing.
DEFAULT_INSTRUCTION_PATTERNS: tuple[str, ...] = (
    r"(?:^|[.!;]\s+)(?:please,?\s+|kindly\s+|now\s+|just\s+|(?:and\s+)?go ahead and\s+|i (?:want|need|would like|'d "
    r"like) you to\s+)?(?:book|cancel|change|modify|update|upgrade|downgrade|add|remove|refund|rebook|reschedule|"
    r"switch|move|send|issue|transfer|process|submit|apply|delete)\b[^.?!]*(?:[.!]|$)",
)

#: An agent message that asks the user to approve an action: what an instruction answers is then a proposal.
DEFAULT_PROPOSAL_PATTERNS: tuple[str, ...] = (
    r"\bplease confirm\b",
    r"\b(?:would you like|do you want|shall i|should i|can i|may i|are you sure|is that (?:ok|okay|correct|right))\b"
    r"[^?]*\?",
    r"\b(?:confirm|proceed|go ahead)\b[^.?!]*\?",
)

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


def _json(value: Any) -> Any:
    """A JSON string parsed; anything else (or text that is not JSON) as it is."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "[", '"') or text in ("true", "false", "null"):
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                return value
    return value


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listing(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = "; ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}; and {len(items) - limit} more"


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


_MISSING = object()


def _at(value: Any, path: Sequence[str]) -> Any:
    """The value at a dotted path (list items by index), or ``_MISSING``."""
    node = _json(value)
    for part in path:
        node = _json(node)
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


def _number(value: Any) -> Decimal | None:
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


def _fmt(number: Decimal) -> str:
    return format(number.normalize(), "f") if number == number.to_integral_value() else str(number)


def _matches(name: str, patterns: Sequence[str]) -> bool:
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


# --------------------------------------------------------------------------- tool_error


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
        result = _json(call.result)
        if isinstance(result, Mapping):
            for key in self.params.error_keys:
                value = result.get(key)
                if value not in (None, False, "", [], {}):
                    return f"result has {key!r}: {_short(value)}"
            for key in _STATUS_KEYS:
                value = result.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
                    return f"result has {key!r}: {value}"
        for text in _strings(result):
            for pattern in self._candidates(text):
                if pattern.search(text):
                    return f"result matches {pattern.pattern!r}: {_short(text)}"
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
        calls = [c for c in session.tool_calls if self.params.tools is None or _matches(c.name, self.params.tools)]
        if not calls:
            return EvalResult.ok(1.0, reason="no tool calls" if self.params.tools is None
                                 else "none of the tools was called")
        failures = []
        for call in calls:
            problem = self.problem(call)
            if problem is not None:
                failures.append(f"tool {call.name} failed: {problem} (span {call.span_id})")
        if failures:
            return EvalResult.ok(0.0, reason=_listing(failures))
        return EvalResult.ok(1.0, reason=f"{len(calls)} tool call(s) succeeded")


# --------------------------------------------------------------------------- tool_allowlist


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
                   for c in calls if not _matches(c.name, tools)]
        if outside:
            allowed = ", ".join(tools) if tools else "none"
            return EvalResult.ok(0.0, reason=f"{_listing(outside)} (allowed: {allowed})")
        return EvalResult.ok(1.0, reason=f"{len(calls)} tool call(s) allowed for {source}")


# --------------------------------------------------------------------------- required_tool


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
            return EvalResult.ok(0.0, reason=_listing(missing))
        return EvalResult.ok(1.0, reason="called " + ", ".join(self.params.tools))


# --------------------------------------------------------------------------- answer_pattern


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
                                    f"{_short(found.group(0), 60)!r}")
        for pattern in self._required:
            if not any(pattern.search(text) for _, text in answers):
                where = "the final answer" if self.params.scope == "final" else "any answer"
                problems.append(f"required {pattern.pattern!r} not found in {where}")
        if problems:
            return EvalResult.ok(0.0, reason=_listing(problems))
        return EvalResult.ok(1.0, reason=f"{len(answers)} answer(s) checked")


# --------------------------------------------------------------------------- tool_schema


@dataclass(frozen=True, slots=True)
class ToolSchemaParams:
    tool: str
    arguments_schema: Mapping[str, Any] | None = None
    result_schema: Mapping[str, Any] | None = None


class ToolSchema(Rule):
    """A tool's arguments and result valid against JSON Schemas."""

    name = "tool_schema"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tool", "arguments_schema", "result_schema"))
        tool = p.string("tool", required=True)
        assert tool is not None
        self.params = ToolSchemaParams(tool=tool, arguments_schema=p.mapping("arguments_schema"),
                                       result_schema=p.mapping("result_schema"))
        if self.params.arguments_schema is None and self.params.result_schema is None:
            raise ValueError(f"rule {self.name!r}: give 'arguments_schema' or 'result_schema'")
        self._arguments = self._validator(p, "arguments_schema", self.params.arguments_schema)
        self._result = self._validator(p, "result_schema", self.params.result_schema)

    def _validator(self, p: ParamReader, key: str, schema: Mapping[str, Any] | None) -> Any:
        if schema is None:
            return None
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"rule {self.name!r}: parameter {key!r} is not a valid JSON Schema: "
                             f"{exc.message}") from None
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    @staticmethod
    def _errors(validator: Any, instance: Any) -> list[str]:
        out = []
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(part) for part in error.absolute_path)
            out.append(f"{where}: {error.message}" if where else error.message)
        return out

    def check(self, session: SessionView) -> EvalResult:
        calls = [c for c in session.tool_calls if c.name == self.params.tool]
        if not calls:
            return EvalResult.ok(1.0, reason=f"tool {self.params.tool} not called")
        problems = []
        for call in calls:
            if self._arguments is not None:
                if call.arguments is None:
                    raise _Unevaluable(f"no arguments recorded for tool {call.name} (span {call.span_id}); "
                                       "is message content capture on?")
                for message in self._errors(self._arguments, _json(call.arguments)):
                    problems.append(f"tool {call.name} arguments: {message} (span {call.span_id})")
            if self._result is not None and call.success:
                if call.result is None:
                    raise _Unevaluable(f"no result recorded for tool {call.name} (span {call.span_id}); "
                                       "is message content capture on?")
                for message in self._errors(self._result, _json(call.result)):
                    problems.append(f"tool {call.name} result: {message} (span {call.span_id})")
        if problems:
            return EvalResult.ok(0.0, reason=_listing(problems))
        return EvalResult.ok(1.0, reason=f"{len(calls)} call(s) of {self.params.tool} match the schema")


# --------------------------------------------------------------------------- numeric_bound


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
            value = _number(_at(call.arguments, params.max_field))
            label = self._label(params.max_field)
            return (value, label) if value is not None else (None, f"no number at {label}")
        source = params.max_from
        if source is None:
            return None, ""
        latest = _source_call(source, call, calls)
        label = f"{source.tool}.{'.'.join(source.field)}"
        if latest is None:
            return None, _no_source(source)
        value = _number(_at(latest.result, source.field))
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
            value = _number(_at(call.arguments, self.params.field))
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
                raise _Unevaluable(_listing(missing))
            if self.params.on_missing == "fail":
                problems.extend(missing)
        if problems:
            return EvalResult.ok(0.0, reason=_listing(problems))
        skipped = f" ({len(missing)} without a bound, on_missing: pass)" if missing else ""
        return EvalResult.ok(1.0, reason=f"{len(mine)} call(s) of {self.params.tool} within bounds{skipped}")


# --------------------------------------------------------------------------- date_window


@dataclass(frozen=True, slots=True)
class DateWindowParams:
    tool: str
    date_from: BoundSource
    max_days: int
    on_missing: str = "fail"


def _date(value: Any) -> date | None:
    """The UTC date of an ISO date or date-time string (``2025-11-02``, ``2025-11-02T17:30:00+02:00``)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


class DateWindow(Rule):
    """A tool called at most ``max_days`` days after a date an earlier call returned (a refund window)."""

    name = "date_window"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tool", "date_from", "max_days", "on_missing"))
        tool = p.string("tool", required=True)
        raw_from = p.mapping("date_from", required=True)
        p.required("max_days")
        max_days = p.integer("max_days")
        assert tool is not None and raw_from is not None and max_days is not None
        self.params = DateWindowParams(
            tool=tool, date_from=_source(p, "date_from", raw_from), max_days=max_days,
            on_missing=p.string("on_missing", choices=("fail", "pass", "error")) or "fail",
        )

    def check(self, session: SessionView) -> EvalResult:
        params, source = self.params, self.params.date_from
        calls = session.tool_calls
        mine = [c for c in calls if c.name == params.tool and c.success]
        if not mine:
            return EvalResult.ok(1.0, reason=f"no successful call of {params.tool}")
        label = ".".join(source.field)
        problems: list[str] = []
        missing: list[str] = []
        for call in mine:
            what = f"{call.name} (span {call.span_id})"
            if source.match:
                what += " for " + ", ".join(f"{'.'.join(path)} {_short(_shown(_at(call.arguments, path)), 60)}"
                                             for path in source.match)
            latest = _source_call(source, call, calls)
            if latest is None:
                missing.append(f"{what}: {_no_source(source)}")
                continue
            raw = _at(latest.result, source.field)
            since = _date(raw)
            if since is None:
                found = "nothing" if raw is _MISSING else repr(_short(_shown(raw), 60))
                missing.append(f"{what}: no date at {source.tool}.{label} (span {latest.span_id}), found {found}")
                continue
            on = datetime.fromtimestamp(call.start_ns // 1_000_000_000, UTC).date()
            days = (on - since).days
            if days > params.max_days:
                problems.append(f"{what}: {label} {since.isoformat()} ({source.tool}, span {latest.span_id}), "
                                f"{days} days before the call on {on.isoformat()}; limit {params.max_days}")
        if missing:
            if params.on_missing == "error":
                raise _Unevaluable(_listing(missing))
            if params.on_missing == "fail":
                problems.extend(missing)
        if problems:
            return EvalResult.ok(0.0, reason=_listing(problems))
        skipped = f" ({len(missing)} without a date, on_missing: pass)" if missing else ""
        return EvalResult.ok(1.0, reason=f"{len(mine)} call(s) of {params.tool} within {params.max_days} days of "
                                         f"{source.tool}.{label}{skipped}")


def _shown(value: Any) -> Any:
    return "(missing)" if value is _MISSING else value


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True, slots=True)
class BudgetParams:
    max_latency_ms: float | None = None
    max_turns: int | None = None
    max_cost_usd: float | None = None
    max_tool_calls: int | None = None


class Budget(Rule):
    """Latency (slowest turn), turn, cost and tool-call budgets."""

    name = "budget"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("max_latency_ms", "max_turns", "max_cost_usd", "max_tool_calls"))
        self.params = BudgetParams(
            max_latency_ms=p.number("max_latency_ms"), max_turns=p.integer("max_turns"),
            max_cost_usd=p.number("max_cost_usd"), max_tool_calls=p.integer("max_tool_calls"),
        )
        if all(getattr(self.params, f.name) is None for f in fields(self.params)):
            raise ValueError(f"rule {self.name!r}: give at least one of 'max_cost_usd', 'max_latency_ms', "
                             "'max_tool_calls', 'max_turns'")

    def check(self, session: SessionView) -> EvalResult:
        params = self.params
        over: list[str] = []
        checked: list[str] = []
        if params.max_latency_ms is not None:
            slowest, index = 0.0, None
            for turn in session.turns:
                if turn.spans:
                    ms = (max(s.end_ns for s in turn.spans) - min(s.start_ns for s in turn.spans)) / 1e6
                    if ms > slowest:
                        slowest, index = ms, turn.index
            checked.append(f"latency {slowest:g} ms")
            if slowest > params.max_latency_ms:
                over.append(f"latency {slowest:g} ms > {params.max_latency_ms:g} ms (turn {index})")
        if params.max_turns is not None:
            turns = len(session.turns)
            checked.append(f"{turns} turn(s)")
            if turns > params.max_turns:
                over.append(f"turns {turns} > {params.max_turns}")
        if params.max_cost_usd is not None:
            cost = math.fsum(s.cost_usd or 0.0 for s in session.spans if s.kind in USAGE_KINDS)
            checked.append(f"cost ${cost:.6g}")
            if cost > params.max_cost_usd:
                over.append(f"cost ${cost:.6g} > ${params.max_cost_usd:g}")
        if params.max_tool_calls is not None:
            count = len(session.tool_calls)
            checked.append(f"{count} tool call(s)")
            if count > params.max_tool_calls:
                over.append(f"tool calls {count} > {params.max_tool_calls}")
        if over:
            return EvalResult.ok(0.0, reason="over budget: " + "; ".join(over))
        return EvalResult.ok(1.0, reason="within budget: " + ", ".join(checked))


# --------------------------------------------------------------------------- confirmation


@dataclass(frozen=True, slots=True)
class ConfirmationParams:
    tools: tuple[str, ...]
    patterns: tuple[str, ...] = DEFAULT_CONFIRM_PATTERNS
    negative_patterns: tuple[str, ...] = DEFAULT_NEGATIVE_PATTERNS
    instruction_patterns: tuple[str, ...] = DEFAULT_INSTRUCTION_PATTERNS
    proposal_patterns: tuple[str, ...] = DEFAULT_PROPOSAL_PATTERNS
    one_call_per_confirmation: bool = False


class Confirmation(Rule):
    """A consequential tool called only after the user explicitly confirmed the agent's proposal."""

    name = "confirmation"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tools", "patterns", "negative_patterns", "instruction_patterns",
                                            "proposal_patterns", "one_call_per_confirmation"))
        tools = p.strings("tools", required=True)
        assert tools is not None

        def optional(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            return default if p.params.get(key) is None else p.strings(key, allow_empty=True) or ()

        self.params = ConfirmationParams(
            tools=tools,
            patterns=p.strings("patterns") or DEFAULT_CONFIRM_PATTERNS,
            negative_patterns=optional("negative_patterns", DEFAULT_NEGATIVE_PATTERNS),
            instruction_patterns=optional("instruction_patterns", DEFAULT_INSTRUCTION_PATTERNS),
            proposal_patterns=optional("proposal_patterns", DEFAULT_PROPOSAL_PATTERNS),
            one_call_per_confirmation=p.boolean("one_call_per_confirmation", False),
        )
        flags = re.IGNORECASE | re.MULTILINE
        self._yes = p.regexes("patterns", self.params.patterns, flags)
        self._no = p.regexes("negative_patterns", self.params.negative_patterns, flags)
        self._order = p.regexes("instruction_patterns", self.params.instruction_patterns, flags)
        self._proposal = p.regexes("proposal_patterns", self.params.proposal_patterns, flags)

    def _emitter(self, session: SessionView, call: ToolCall) -> NormalizedSpan | None:
        """The llm span whose output asked for ``call``."""
        llm = [s for s in session.spans if s.kind == "llm" and s.start_ns <= call.start_ns]
        if call.call_id:
            # Ids are not always unique (tau-bench reuses one): the latest earlier asker of the same tool wins.
            by_id = [s for s in llm if any(part.get("id") == call.call_id and part.get("name") == call.name
                                           for part in _tool_call_parts(s.output_messages))]
            if by_id:
                return max(by_id, key=lambda s: (s.start_ns, s.end_ns))
        turn_index = next((t.index for t in session.turns for c in t.tool_calls if c.span_id == call.span_id), None)
        candidates = [s for s in llm if s.start_ns <= call.start_ns
                      and any(part.get("name") == call.name for part in _tool_call_parts(s.output_messages))]
        same_turn = [s for s in candidates if s.turn_index == turn_index]
        pool = same_turn or candidates
        return max(pool, key=lambda s: (s.start_ns, s.end_ns)) if pool else None

    def verdict(self, session: SessionView, call: ToolCall) -> str | None:
        """Why ``call`` was not confirmed, or None when it was."""
        span = self._emitter(session, call)
        if span is None:
            raise _Unevaluable(f"cannot find the model call that asked for tool {call.name} (span {call.span_id})")
        messages = span.input_messages
        if not messages:
            raise _Unevaluable(f"the model call that asked for tool {call.name} (span {span.span_id}) has no "
                               "input messages; is message content capture on?")
        last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
        if last_user is None:
            return "no user message before it"
        text = message_text(messages[last_user]) or ""
        quoted = _short(text, 80)
        if any(p.search(text) for p in self._no):
            return f"the last user message withholds confirmation: {quoted!r}"
        before = next((m for m in reversed(messages[:last_user]) if m.get("role") not in ("system", "developer")),
                      None)
        proposal = message_text(before) if before is not None and before.get("role") == "assistant" else None
        yes = any(p.search(text) for p in self._yes)
        ordered = any(p.search(text) for p in self._order)
        proposed = bool(proposal) and any(p.search(proposal or "") for p in self._proposal)
        if not (yes and proposal) and not (ordered and not proposed):
            if yes:
                return f"the user's {quoted!r} answers no proposal of the agent"
            if ordered:
                return f"the last user message answers the agent's proposal with a new instruction: {quoted!r}"
            return f"the last user message does not confirm: {quoted!r}"
        retried = self._changed_retry(messages[last_user + 1:], call)
        if retried is not None:
            return retried
        if self.params.one_call_per_confirmation:
            for message in messages[last_user + 1:]:
                for part in _tool_call_parts([message]):
                    name = part.get("name")
                    if isinstance(name, str) and _matches(name, self.params.tools):
                        return f"the confirmation {quoted!r} was already used by {name}"
        return None

    def _changed_retry(self, since: list[dict[str, Any]], call: ToolCall) -> str | None:
        """A consequential call that failed after the user's yes, and this call's arguments differ from it.

        The user agreed to the action as proposed; when it fails and the agent tries something else (another
        payment, another flight), that is a new proposal the user has not seen.
        """
        asked: dict[str, dict[str, Any]] = {}
        failed: list[dict[str, Any]] = []
        for message in since:
            for part in _tool_call_parts([message]):
                if isinstance(part.get("id"), str):
                    asked[part["id"]] = part
            parts = message.get("parts")
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict) and part.get("type") == "tool_call_response":
                    earlier = asked.get(str(part.get("id")))
                    if earlier is not None and _matches(str(earlier.get("name")), self.params.tools) \
                            and _RESPONSE_ERRORS.problem(_response_call(earlier, part.get("response"))) is not None:
                        failed.append(earlier)
        if not failed:
            return None
        last = failed[-1]
        if last.get("name") == call.name and _json(last.get("arguments")) == _json(call.arguments):
            return None
        return (f"its earlier call {last.get('name')} failed after the user's yes and it was tried again with "
                "other arguments the user has not confirmed")

    def check(self, session: SessionView) -> EvalResult:
        calls = [c for c in session.tool_calls if _matches(c.name, self.params.tools)]
        if not calls:
            return EvalResult.ok(1.0, reason="no consequential tool called")
        problems = []
        for call in calls:
            why = self.verdict(session, call)
            if why is not None:
                problems.append(f"tool {call.name} called without confirmation: {why} (span {call.span_id})")
        if problems:
            return EvalResult.ok(0.0, reason=_listing(problems))
        return EvalResult.ok(1.0, reason=f"{len(calls)} consequential call(s) confirmed")


_RESPONSE_ERRORS = ToolError()


def _response_call(part: dict[str, Any], response: Any) -> ToolCall:
    """A tool call as the conversation shows it (no span), for :meth:`ToolError.problem`."""
    return ToolCall(name=str(part.get("name")), arguments=part.get("arguments"), result=response, success=True,
                    error_type=None, error_message=None, call_id=str(part.get("id")), span_id="", start_ns=0,
                    end_ns=0)


def _tool_call_parts(messages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for message in messages:
        parts = message.get("parts")
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, dict) and part.get("type") == "tool_call":
                    yield part


# --------------------------------------------------------------------------- registry


#: Rule name -> class; each class is built from a params mapping.
RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (ToolError, ToolAllowlist, RequiredTool, AnswerPattern, ToolSchema, NumericBound, DateWindow,
                Budget, Confirmation)
}


def make_rule(name: str, params: Mapping[str, Any] | None = None) -> Evaluator:
    """The rule called ``name`` built from ``params``; ValueError for an unknown name or bad params."""
    cls = RULES.get(name)
    if cls is None:
        raise ValueError(f"unknown rule {name!r} (known: {', '.join(sorted(RULES))})")
    return cls(params)


# The policy rules (grounded_arguments, call_limit) build on this module's helpers and add themselves to RULES.
from agentwatch.evaluate import policy as _policy  # noqa: E402, F401
