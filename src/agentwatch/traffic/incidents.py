"""Switchable, timed incidents for the traffic generator (the table in ``docs/traffic.md``).

Each incident is a frozen dataclass with ``start_ns`` (event time, inclusive)
and an optional ``end_ns`` (exclusive); ``adjust`` changes a session's
:class:`~agentwatch.traffic.generator.Conditions` only while it is active, so
everything before ``start_ns`` is the seed's steady traffic, byte for byte.
Randomness comes from the session's own stream, never from the wall clock::

    from agentwatch.traffic import Generator
    from agentwatch.traffic.incidents import NewToolError, day3_start

    start = 1_767_225_600 * 10**9                     # 2026-01-01T00:00:00Z
    gen = Generator(1, start, incidents=[NewToolError(day3_start(start), tool="lookup_order")])

Nothing an incident does puts an attribute on the wire that a real
instrumentation would not send; what it did is in ``truth.incidents``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from agentwatch.traffic.generator import (
    INTENTS,
    Conditions,
    ErrorKind,
    Generator,
    ToolFault,
    ToolReshape,
)
from agentwatch.traffic.generator.world import _TOOL_LATENCY_MS

NS_PER_S = 1_000_000_000
#: Share of failed tool calls the simulated model retries.
_RETRY_SHARE = 0.6
_HOUR_NS = 3600 * NS_PER_S
_DAY_NS = 24 * _HOUR_NS

#: Share of sessions whose request was not carried out in steady traffic (default ``Rates``),
#: measured over 2 x 7 days at 120 sessions/h (seeds 1 and 2); ``GoalFailures`` adds its increase to these.
STEADY_GOAL_FAILURE: dict[str, float] = {
    "order_status": 0.019, "refund": 0.032, "billing": 0.019, "cancel_subscription": 0.035,
    "plan_change": 0.036, "policy_question": 0.0,
}
#: Sessions with an unsupported claim per unit of ``Rates.unsupported_claim`` near 9% per answer
#: (measured at 120/h: 2.6% per answer gives 3.0% of sessions; 8.5% gives 9-11% over a day, by seed).
_CLAIM_SESSIONS_PER_ANSWER_RATE = 1.17
_INTENT_NAMES = frozenset(name for name, _ in INTENTS)
#: The tools each intent's sessions may call.
TOOLS_OF_INTENT: dict[str, frozenset[str]] = {
    "order_status": frozenset({"lookup_order", "track_shipment"}),
    "refund": frozenset({"lookup_order", "refund_api"}),
    "billing": frozenset({"get_invoice"}),
    "plan_change": frozenset({"get_subscription", "change_plan"}),
    "cancel_subscription": frozenset({"get_subscription", "cancel_subscription"}),
    "policy_question": frozenset(),
}


def day3_start(replay_start_ns: int) -> int:
    """10:00 UTC on the third day of a replay starting at ``replay_start_ns`` (its first day is day 1)."""
    return replay_start_ns - replay_start_ns % _DAY_NS + 2 * _DAY_NS + 10 * _HOUR_NS


@dataclass(frozen=True)
class _Timed:
    start_ns: int
    end_ns: int | None = dataclasses.field(default=None, kw_only=True)

    def active(self, start_ns: int) -> bool:
        return self.start_ns <= start_ns and (self.end_ns is None or start_ns < self.end_ns)

    def diffuse(self, generator: Generator, share: float, horizon_s: float,
                eligible: Callable[[str], bool]) -> frozenset[int]:
        """Start times of ``share`` of the eligible intents' sessions while active (for ``horizon_s`` at most),
        picked in arrival order by error diffusion: every window holds the share, not a binomial draw."""
        until = self.start_ns + int(horizon_s * NS_PER_S)
        if self.end_ns is not None:
            until = min(until, self.end_ns)
        starts: list[int] = []
        owed = 0.0
        for _, start_ns, intent in generator.planned():
            if start_ns >= until:
                break
            if start_ns < self.start_ns or not eligible(intent):
                continue
            owed += share
            if owed >= 0.5:
                owed -= 1.0
                starts.append(start_ns)
        return frozenset(starts)


@dataclass(frozen=True)
class NewToolError(_Timed):
    """From ``start_ns``, ``tool`` fails in ``rate`` of its calls with an error steady traffic never shows.

    On the wire: the ``execute_tool`` span has status ERROR with ``message`` and ``error.type`` =
    ``error_type``, no result; the model retries once 60% of the time (the retry goes through), else
    apologises.

    The sessions whose first call of the tool fails are picked in arrival order by error diffusion
    (``bind``) among the sessions of the intents that call it, at the share that makes ``rate`` of the
    tool's calls fail once the retries are counted, so the incident has its size in every window rather
    than a binomial draw around it (which leaves a 15-minute window with one failing session now and
    then). Sessions are bound for ``horizon_s`` after the start (14 days) or up to ``end_ns``.
    """

    name: ClassVar[str] = "new_tool_error"
    tool: str = "lookup_order"
    rate: float = 0.2
    error_type: str = "SchemaVersionMismatch"
    message: str = "inventory shard 7 returned SchemaVersionMismatch: expected schema v12, got v11"
    kind: str = "schema_version_mismatch"
    horizon_s: float = 14 * 86400.0
    #: Start times of the sessions whose first call of the tool fails; filled by ``bind``.
    session_starts: frozenset[int] = dataclasses.field(default=frozenset(), kw_only=True)

    def __post_init__(self) -> None:
        if self.tool not in _TOOL_LATENCY_MS:
            raise ValueError(f"unknown tool {self.tool!r}; expected one of {sorted(_TOOL_LATENCY_MS)}")
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")

    @property
    def session_share(self) -> float:
        """Share of the sessions calling the tool whose first call fails: each such session adds one failed
        call, and 60% of them a retry, so ``s / (1 + 0.6 s) = rate``."""
        return min(1.0, self.rate / (1 - _RETRY_SHARE * self.rate))

    def bind(self, generator: Generator) -> NewToolError:
        starts = self.diffuse(generator, self.session_share, self.horizon_s,
                              lambda intent: self.tool in TOOLS_OF_INTENT[intent])
        return dataclasses.replace(self, session_starts=starts)

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if self.tool not in TOOLS_OF_INTENT[intent] or start_ns not in self.session_starts:
            return conditions
        # Braces in the message are kept literally (the generator formats it with the service name).
        text = self.message.replace("{", "{{").replace("}", "}}")
        kind = ErrorKind(self.kind, self.error_type, text, {}, (25, 180))
        fault = ToolFault(self.tool, 1.0, kind, first_only=True)
        return dataclasses.replace(conditions, tool_faults=(*conditions.tool_faults, fault))


@dataclass(frozen=True)
class OffPolicyRefund(_Timed):
    """The first ``count`` refund sessions at or after ``start_ns`` refund an order delivered 35-80 days ago.

    On the wire: ``lookup_order`` returns an order whose ``delivered_on`` is outside the 30-day window and
    ``refund_api`` is called for it (no tool errors or other incidents' faults in those sessions, so the
    refund does go through; list it after the other incidents so none adds a fault back).
    Truth: a ``refund_window_30_days`` policy violation. Steady traffic has none (the default
    ``Rates.policy_violation`` is 0: out-of-window requests are refused), so each one is a rare event.
    """

    name: ClassVar[str] = "off_policy_refund"
    count: int = 1
    #: Start times of the sessions it acts on; filled by ``bind``.
    session_starts: tuple[int, ...] = dataclasses.field(default=(), kw_only=True)

    def bind(self, generator: Generator) -> OffPolicyRefund:
        starts: list[int] = []
        for _, start_ns, intent in generator.planned():
            if len(starts) >= self.count or (self.end_ns is not None and start_ns >= self.end_ns):
                break
            if start_ns >= self.start_ns and intent == "refund":
                starts.append(start_ns)
        return dataclasses.replace(self, session_starts=tuple(starts))

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if intent != "refund" or start_ns not in self.session_starts:
            return conditions
        rates = dataclasses.replace(conditions.rates, out_of_policy=1.0, policy_violation=1.0, tool_error=0.0)
        return dataclasses.replace(conditions, rates=rates, tool_faults=(), give_up=0.0)


@dataclass(frozen=True)
class NewAgentVersion(_Timed):
    """From ``start_ns`` the agent is ``version`` and ``unsupported_claim_rate`` of sessions hold a claim.

    On the wire: the resource's ``service.version``; more answers with an amount or date that nothing
    in the turn supports (steady traffic: 3% of sessions).
    """

    name: ClassVar[str] = "new_agent_version"
    version: str = "1.1.0"
    unsupported_claim_rate: float = 0.10

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if not self.active(start_ns):
            return conditions
        per_answer = min(1.0, self.unsupported_claim_rate / _CLAIM_SESSIONS_PER_ANSWER_RATE)
        rates = dataclasses.replace(conditions.rates, unsupported_claim=per_answer)
        return dataclasses.replace(conditions, agent_version=self.version, rates=rates)


@dataclass(frozen=True)
class SlowIntent(_Timed):
    """From ``start_ns`` every model, tool and retrieval latency of ``intent``'s sessions is ``factor`` x."""

    name: ClassVar[str] = "slow_intent"
    intent: str = "refund"
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.intent not in _INTENT_NAMES:
            raise ValueError(f"unknown intent {self.intent!r}; expected one of {sorted(_INTENT_NAMES)}")
        if self.factor <= 0:
            raise ValueError(f"factor must be positive, got {self.factor}")

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if intent != self.intent or not self.active(start_ns):
            return conditions
        return dataclasses.replace(conditions, latency_factor=conditions.latency_factor * self.factor)


@dataclass(frozen=True)
class GoalFailures(_Timed):
    """From ``start_ns`` the share of ``intent``'s sessions that end without the request carried out
    goes up by ``increase`` (25 points): from the intent's steady rate (``STEADY_GOAL_FAILURE``, 2-4%)
    to that plus ``increase``, e.g. 3.6% -> 28.6% for ``plan_change``. ``rate`` (absolute, in (0, 1])
    overrides it: the share becomes ``rate``, steady failures counted toward it.

    On the wire: the model answers the first turn without calling any tool, with an apology that the
    system could not be reached ("I'm sorry, I couldn't reach our order system just now..."); the
    needed action tool is never called. Truth: ``goal_failed``.

    The sessions that give up are picked in arrival order by error diffusion (``bind``), not drawn one
    by one, so the incident has its stated size in every window rather than a binomial draw around it
    (over 90 minutes of ~20 sessions an hour a draw is often a third smaller). Sessions are bound for
    ``horizon_s`` after the start (14 days) or up to ``end_ns``.
    """

    name: ClassVar[str] = "goal_failures"
    intent: str = "plan_change"
    #: Points added to the intent's steady failure rate (0.25: 25 points).
    increase: float = 0.25
    #: An absolute failure rate instead of ``STEADY_GOAL_FAILURE[intent] + increase``.
    rate: float | None = None
    horizon_s: float = 14 * 86400.0
    #: Start times of the sessions that give up; filled by ``bind``.
    session_starts: frozenset[int] = dataclasses.field(default=frozenset(), kw_only=True)

    def __post_init__(self) -> None:
        if not TOOLS_OF_INTENT.get(self.intent):
            with_tools = sorted(intent for intent, tools in TOOLS_OF_INTENT.items() if tools)
            raise ValueError(f"intent must be one with tools, one of {with_tools}; got {self.intent!r}")
        if self.rate is not None and not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")
        base = STEADY_GOAL_FAILURE[self.intent]
        if self.rate is None and not 0 < self.increase <= 1 - base:
            raise ValueError(f"increase must be in (0, {1 - base:g}] for {self.intent} (steady rate {base:g}), "
                             f"got {self.increase}")

    @property
    def target(self) -> float:
        """The failure rate of the intent's sessions while the incident is active."""
        return self.rate if self.rate is not None else STEADY_GOAL_FAILURE[self.intent] + self.increase

    @property
    def give_up(self) -> float:
        """Share of the intent's sessions that give up: with the steady failures of the rest, the target."""
        base = STEADY_GOAL_FAILURE[self.intent]
        return max(0.0, (self.target - base) / (1 - base))

    def bind(self, generator: Generator) -> GoalFailures:
        starts = self.diffuse(generator, self.give_up, self.horizon_s, lambda intent: intent == self.intent)
        return dataclasses.replace(self, session_starts=starts)

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if intent != self.intent or start_ns not in self.session_starts:
            return conditions
        return dataclasses.replace(conditions, give_up=1.0)


@dataclass(frozen=True)
class ExpiredAuthToken(_Timed):
    """From ``start_ns`` the agent's access token for ``tool`` has expired, and the agent does not notice.

    On the wire: every call of the tool ends with status UNSET (the HTTP client raised nothing) and the
    service's 401 body as its result, ``{"status": 401, "error": "invalid_token", ...}``; the model does
    not retry, and on ``refund_api`` it confirms the refund to the customer as if it had gone through.
    What catches it: the ``tool_error`` rule (an error-shaped result of a call that reports success) and
    ``goal_completion`` (no successful call of the action tool). Truth: a masked tool error and
    ``goal_failed`` in every session that calls the tool.
    """

    name: ClassVar[str] = "auth_token_expiry"
    tool: str = "refund_api"
    result: tuple[tuple[str, Any], ...] = (
        ("status", 401), ("error", "invalid_token"),
        ("error_description", "The access token expired; request a new one"))

    def __post_init__(self) -> None:
        if self.tool not in _TOOL_LATENCY_MS:
            raise ValueError(f"unknown tool {self.tool!r}; expected one of {sorted(_TOOL_LATENCY_MS)}")

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if self.tool not in TOOLS_OF_INTENT[intent] or not self.active(start_ns):
            return conditions
        kind = ErrorKind("auth_token_expired", "401", "401 Unauthorized: access token expired", dict(self.result),
                         (20, 90))
        fault = ToolFault(self.tool, 1.0, kind, silent=True)
        return dataclasses.replace(conditions, tool_faults=(*conditions.tool_faults, fault))


@dataclass(frozen=True)
class ToolSchemaChange(_Timed):
    """From ``start_ns`` ``tool``'s service answers in a new response schema: keys renamed (``rename``) and
    dropped (``drop``); by default ``lookup_order`` sends ``order_total`` for ``total`` and
    ``delivery_date`` for ``delivered_on``.

    On the wire: only the tool's result (``gen_ai.tool.call.result``) changes; status, latency and the
    agent's answers stay as they were (the model still reads the values). What catches it: a
    ``tool_schema`` rule on the tool's result, and rules that read a renamed field (``date_window`` on
    ``delivered_on`` finds no date: its ``on_missing``).
    """

    name: ClassVar[str] = "tool_schema_change"
    tool: str = "lookup_order"
    rename: tuple[tuple[str, str], ...] = (("total", "order_total"), ("delivered_on", "delivery_date"))
    drop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tool not in _TOOL_LATENCY_MS:
            raise ValueError(f"unknown tool {self.tool!r}; expected one of {sorted(_TOOL_LATENCY_MS)}")
        if not self.rename and not self.drop:
            raise ValueError("a schema change renames or drops at least one key")

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions:
        if self.tool not in TOOLS_OF_INTENT[intent] or not self.active(start_ns):
            return conditions
        reshape = ToolReshape(self.tool, self.rename, self.drop)
        return dataclasses.replace(conditions, tool_reshapes=(*conditions.tool_reshapes, reshape))


#: Incident names (as ``--incident`` takes them) and how to make one with its defaults from a start time.
INCIDENTS: dict[str, Callable[[int], Any]] = {
    "new_tool_error": lambda start: NewToolError(start),
    "off_policy_refund": lambda start: OffPolicyRefund(start),
    "new_agent_version": lambda start: NewAgentVersion(start),
    "slow_intent": lambda start: SlowIntent(start),
    "goal_failures": lambda start: GoalFailures(start),
    "auth_token_expiry": lambda start: ExpiredAuthToken(start),
    "tool_schema_change": lambda start: ToolSchemaChange(start),
}


def incident_from_spec(spec: str, replay_start_ns: int | None = None) -> Any:
    """``NAME[@START]`` -> an incident with its defaults, e.g. ``new_tool_error@2026-01-03T10:00:00Z``.

    START is an RFC 3339 time (naive means UTC); without it, 10:00 UTC on day 3 of the replay
    (``day3_start(replay_start_ns)``). Raises ``ValueError`` on an unknown name or a bad time.
    """
    name, _, when = spec.strip().partition("@")
    factory = INCIDENTS.get(name.strip())
    if factory is None:
        raise ValueError(f"unknown incident {name!r}; expected one of {', '.join(INCIDENTS)}")
    if when.strip():
        try:
            moment = datetime.fromisoformat(when.strip())
        except ValueError:
            raise ValueError(f"expected NAME@2026-01-03T10:00:00Z, got {spec!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        since = moment - datetime(1970, 1, 1, tzinfo=UTC)
        start_ns = (since.days * 86400 + since.seconds) * NS_PER_S + since.microseconds * 1000
    elif replay_start_ns is None:
        raise ValueError(f"{spec!r} has no start time and no replay start was given")
    else:
        start_ns = day3_start(replay_start_ns)
    return factory(start_ns)


__all__ = [
    "day3_start",
    "ExpiredAuthToken",
    "GoalFailures",
    "incident_from_spec",
    "INCIDENTS",
    "NewAgentVersion",
    "NewToolError",
    "OffPolicyRefund",
    "SlowIntent",
    "STEADY_GOAL_FAILURE",
    "ToolSchemaChange",
    "TOOLS_OF_INTENT",
]
