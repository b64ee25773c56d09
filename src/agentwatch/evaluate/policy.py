"""Policy rules for agents that act on records (bookings, orders, accounts), configured per domain.

Two rules that state what a careful agent does before a consequential call,
with the domain in the params, not in code. For an airline agent::

    evaluators:
      - name: grounded_actions
        kind: rule
        rule: grounded_arguments
        params:
          tools: [book_reservation, update_reservation_*, cancel_reservation]
          fields: [reservation_id, user_id, flights.*.flight_number, payment_methods.*.payment_id,
                   payment_methods.*.amount, payment_id]
      - name: one_action_per_request
        kind: rule
        rule: call_limit
        params: {tools: [book_reservation, update_reservation_*, cancel_reservation], key: [reservation_id]}

``grounded_arguments``
    Every value at the argument paths ``fields`` of a call of one of
    ``tools`` was on the record before the call: in the result of an earlier
    tool call, or (``sources``) in what the user said or what the agent told
    the user. An id no result holds (a payment method the user does not have,
    a flight no search returned) or an amount no one stated breaks the rule.
    A path takes ``*`` for every item of a list (``flights.*.flight_number``);
    a path the call does not have is skipped. Strings compare without case,
    as a whole value of a result or as a token of a text; numbers compare by
    value (``299``, ``299.0`` and ``"$299"`` are one); dates as dates
    (``2024-05-20`` is backed by the user's "May 20th"). Params: ``tools``,
    ``fields``, ``sources?`` (``results``, ``user``, ``answers``; default
    ``[results, user, answers]``), ``successful_only?`` (default true: only
    calls that worked are judged; a call the tool refused changed nothing).
``call_limit``
    A consequential tool called more often than the user asked: more than
    ``max_calls`` (default 1) calls of one of ``tools`` that worked for one
    user message (``per: user_message``, the default) or in the whole
    session (``per: session``). With ``key`` (argument paths) calls count
    apart per value: "cancel all three reservations" makes three calls with
    three reservation ids, each once. A call that failed (span error or an
    error-shaped result, see ``tool_error``) does not count.

Both pass/fail like every rule; the reason names each violation with its span.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agentwatch.evaluate import faithfulness
from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules import RULES, ParamReader, Rule, ToolError
from agentwatch.evaluate.rules.common import listing, matches_any, parse_json, parse_number, shorten
from agentwatch.evaluate.session import SessionView, ToolCall, Turn
from agentwatch.normalize.messages import message_text

__all__ = ["CallLimit", "GroundedArguments"]

_ERRORS = ToolError()
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
_NUMBER = re.compile(r"(?<![A-Za-z0-9.])\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?![A-Za-z0-9])")
GROUNDED_SOURCES = ("results", "user", "answers")


def _values_at(value: Any, path: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """``(concrete path, value)`` for each match of ``path`` (``*`` = every list item) in ``value``."""
    def walk(node: Any, rest: Sequence[str], where: list[str]) -> Iterator[tuple[str, Any]]:
        node = parse_json(node)
        if not rest:
            yield ".".join(where), node
            return
        head, tail = rest[0], rest[1:]
        if head == "*" and isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, tail, [*where, str(i)])
        elif isinstance(node, Mapping) and head in node:
            yield from walk(node[head], tail, [*where, head])
        elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
            yield from walk(node[int(head)], tail, [*where, head])
    yield from walk(value, path, [])


class _Record:
    """What was on the record at some point: strings (lower case) and numbers."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[Decimal] = set()
        self.dates: set[str] = set()

    def add_value(self, value: Any) -> None:
        value = parse_json(value)
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.strings.add(str(key).lower())
                self.add_value(item)
        elif isinstance(value, list):
            for item in value:
                self.add_value(item)
        elif isinstance(value, str):
            self.strings.add(value.strip().lower())
            self.add_text(value)
        elif not isinstance(value, bool):
            number = parse_number(value)
            if number is not None:
                self.numbers.add(abs(number))

    def add_text(self, text: str) -> None:
        self.dates.update(faithfulness.dates_in(text))
        self.strings.update(token.lower() for token in _TOKEN.findall(text))
        for m in _NUMBER.finditer(text):
            number = parse_number(m.group(1))
            if number is not None:
                self.numbers.add(abs(number))

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool) or value is None:
            return True
        number = parse_number(value)
        if number is not None:
            return abs(number) in self.numbers
        if isinstance(value, str):
            if value.strip().lower() in self.strings:
                return True
            written = faithfulness.dates_in(value)
            return len(written) == 1 and any(faithfulness.same_date(written[0], seen) for seen in self.dates)
        return True  # lists and objects: their leaves are what a path should name


@dataclass(frozen=True, slots=True)
class GroundedArgumentsParams:
    tools: tuple[str, ...]
    fields: tuple[tuple[str, ...], ...]
    sources: tuple[str, ...] = GROUNDED_SOURCES
    successful_only: bool = True


def _user_and_answers(turn: Turn) -> tuple[list[str], list[str]]:
    """The user's and the agent's texts the turn's model calls saw (what came before their calls)."""
    users: list[str] = []
    answers: list[str] = []
    for span in turn.llm_spans:
        for message in span.input_messages:
            text = message_text(message)
            if text and message.get("role") == "user":
                users.append(text)
            elif text and message.get("role") == "assistant":
                answers.append(text)
    if turn.user_text:
        users.append(turn.user_text)
    return users, answers


class GroundedArguments(Rule):
    """The ids and amounts a consequential call uses were on the record before it."""

    name = "grounded_arguments"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tools", "fields", "sources", "successful_only"))
        tools = p.strings("tools", required=True)
        fields = p.strings("fields", required=True)
        sources = p.strings("sources")
        if sources is not None and any(s not in GROUNDED_SOURCES for s in sources):
            raise p.error("sources", "a list of " + ", ".join(GROUNDED_SOURCES))
        assert tools is not None and fields is not None
        self.params = GroundedArgumentsParams(
            tools=tools, fields=tuple(p.path("fields", f) for f in fields), sources=sources or GROUNDED_SOURCES,
            successful_only=p.boolean("successful_only", True),
        )

    def check(self, session: SessionView) -> EvalResult:
        record = _Record()
        problems: list[str] = []
        judged = 0
        sources = self.params.sources
        for turn in session.turns:
            users, answers = _user_and_answers(turn)
            if "user" in sources:
                for text in users:
                    record.add_text(text)
            for call in turn.tool_calls:
                if matches_any(call.name, self.params.tools) and \
                        (not self.params.successful_only or _ERRORS.problem(call) is None):
                    judged += 1
                    problems.extend(self._ungrounded(call, record, answers if "answers" in sources else []))
                if "results" in sources and call.result is not None:
                    record.add_value(call.result)
        if problems:
            return EvalResult.ok(0.0, reason=listing(problems))
        if not judged:
            return EvalResult.ok(1.0, reason="none of the tools was called" + (
                " successfully" if self.params.successful_only else ""))
        return EvalResult.ok(1.0, reason=f"{judged} call(s) use only ids and amounts on the record")

    def _ungrounded(self, call: ToolCall, record: _Record, answers: Sequence[str]) -> list[str]:
        seen = record
        if answers:
            seen = _Record()
            seen.strings, seen.numbers, seen.dates = set(record.strings), set(record.numbers), set(record.dates)
            for text in answers:
                seen.add_text(text)
        out = []
        for path in self.params.fields:
            for where, value in _values_at(call.arguments, path):
                if not seen.holds(value):
                    out.append(f"{call.name}.{where} = {shorten(json.dumps(value, default=str), 60)} is in no earlier "
                               f"tool result{', user message or answer' if answers else ''} (span {call.span_id})")
        return out


@dataclass(frozen=True, slots=True)
class CallLimitParams:
    tools: tuple[str, ...]
    max_calls: int = 1
    per: str = "user_message"
    key: tuple[tuple[str, ...], ...] = ()


class CallLimit(Rule):
    """A consequential tool called more often than the user asked."""

    name = "call_limit"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        p = ParamReader(self.name, params, ("tools", "max_calls", "per", "key"))
        tools = p.strings("tools", required=True)
        key = p.strings("key")
        assert tools is not None
        self.params = CallLimitParams(
            tools=tools, max_calls=p.integer("max_calls", minimum=1) or 1,
            per=p.string("per", choices=("user_message", "session")) or "user_message",
            key=tuple(p.path("key", k) for k in key or ()),
        )

    def check(self, session: SessionView) -> EvalResult:
        counts: dict[tuple[Any, ...], list[ToolCall]] = {}
        total = 0
        for turn in session.turns:
            scope = turn.index if self.params.per == "user_message" else 0
            for call in turn.tool_calls:
                if not matches_any(call.name, self.params.tools) or _ERRORS.problem(call) is not None:
                    continue
                total += 1
                values = tuple(json.dumps([v for _, v in _values_at(call.arguments, path)], sort_keys=True,
                                          default=str) for path in self.params.key)
                counts.setdefault((scope, call.name, values), []).append(call)
        problems = []
        for (scope, name, values), calls in counts.items():
            if len(calls) > self.params.max_calls:
                where = f"for user message {scope}" if self.params.per == "user_message" else "in the session"
                keyed = "".join(f" with {'.'.join(path)} {shorten(value, 60)}"
                                for path, value in zip(self.params.key, values, strict=True))
                spans = ", ".join(c.span_id for c in calls)
                problems.append(f"{name}{keyed} worked {len(calls)} times {where} (limit {self.params.max_calls}; "
                                f"spans {spans})")
        if problems:
            return EvalResult.ok(0.0, reason=listing(problems))
        return EvalResult.ok(1.0, reason=f"{total} consequential call(s) within the limit")


RULES.update({cls.name: cls for cls in (GroundedArguments, CallLimit)})
