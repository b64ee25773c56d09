"""What a generated session is made under and what was injected into it.

:class:`Conditions` (with its :class:`Rates`, :class:`ToolFault` and
:class:`ToolReshape`) is everything a session is generated under, and what an
:class:`Incident` adjusts; :class:`SessionTruth` records what the generator
injected (:class:`ToolError`, :class:`UnsupportedClaim`,
:class:`PolicyViolation`), beside the wire data of a :class:`GeneratedSession`.
``ERROR_KINDS`` is the fixed set of transient tool errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass(frozen=True)
class Rates:
    """Probabilities of the injected noise."""

    #: Per tool call: the call fails transiently.
    tool_error: float = 0.03
    #: Share of tool errors that come back as an error-shaped result with status UNSET.
    silent_error_share: float = 0.3
    #: Share of silent errors on an action tool that the agent takes for success.
    masked_share: float = 0.5
    #: Per answer that states amounts or dates: one of them is supported by nothing in the turn.
    unsupported_claim: float = 0.026
    #: Per refund session: the order was delivered outside the 30-day window.
    out_of_policy: float = 0.12
    #: Share of out-of-policy refund requests the agent grants anyway (none in steady traffic: the
    #: ``OffPolicyRefund`` incident makes the rare one).
    policy_violation: float = 0.0


@dataclass(frozen=True)
class Conditions:
    """Everything a session is generated under; incidents adjust it."""

    agent_version: str
    model: str
    rates: Rates = Rates()
    #: Multiplies every model, tool and retrieval latency.
    latency_factor: float = 1.0
    #: Extra failures of one tool with an error kind of its own (steady traffic has none).
    tool_faults: tuple[ToolFault, ...] = ()
    #: Per session with tools: the agent gives up before its first tool call and apologises.
    give_up: float = 0.0
    #: Tools whose successful results change shape on the wire (steady traffic has none).
    tool_reshapes: tuple[ToolReshape, ...] = ()


@dataclass(frozen=True)
class ToolFault:
    """``tool`` fails in ``rate`` of its calls with ``kind`` (status ERROR); with ``first_only``
    only the session's first call of it can fail (a retry goes through). With ``silent`` the span
    says success (status UNSET) and carries ``kind.silent_result`` as its result, the model does not
    retry, and on an action tool the agent takes it for success (it confirms the action)."""

    tool: str
    rate: float
    kind: ErrorKind
    first_only: bool = False
    silent: bool = False


@dataclass(frozen=True)
class ToolReshape:
    """The successful results of ``tool`` arrive in a new shape: keys renamed (``rename``: old, new pairs,
    top level) and keys dropped (``drop``). The agent's answers do not change: it still reads the values."""

    tool: str
    rename: tuple[tuple[str, str], ...] = ()
    drop: tuple[str, ...] = ()

    def apply(self, result: dict[str, Any]) -> dict[str, Any]:
        names = dict(self.rename)
        return {names.get(key, key): value for key, value in result.items() if key not in self.drop}


class Incident(Protocol):
    """A timed change of conditions (the concrete ones are in :mod:`agentwatch.traffic.incidents`).

    ``adjust`` is called for every session, in incident order, with the
    session's event-time start and intent; it returns the conditions to use
    (the ones it got when the incident is not active then). An incident may
    also have ``name`` (recorded in the truth of the sessions it changed) and
    ``bind(generator) -> Incident``, called once by the generator.
    """

    def adjust(self, conditions: Conditions, *, start_ns: int, intent: str) -> Conditions: ...


@dataclass(frozen=True)
class ToolError:
    """An injected tool failure."""

    turn: int
    tool: str
    call_id: str
    span_id: str
    #: One of ``ERROR_KINDS``' names: timeout, upstream_503, rate_limited, expired_token; or the name
    #: of a :class:`ToolFault`'s kind.
    kind: str
    #: True: status UNSET and an error-shaped result ("looks like success").
    silent: bool
    #: A retry of the same call succeeded.
    recovered: bool
    #: The agent answered as if the call had worked.
    masked: bool


@dataclass(frozen=True)
class UnsupportedClaim:
    """An amount or date in an answer found in no tool result or document of its turn."""

    turn: int
    #: The chat span whose output holds the claim.
    span_id: str
    kind: str  # "amount" | "date"
    #: As written in the answer, e.g. ``$47.50`` or ``2026-03-19``.
    text: str
    #: The supported value it replaced, as it would have been written.
    replaced: str


@dataclass(frozen=True)
class PolicyViolation:
    """An action the agent took against a knowledge-base policy.

    Recorded when the acting tool span did not fail (status not ERROR): a refund the payments
    service rejected was not made.
    """

    turn: int
    rule: str
    #: The tool span that acted.
    span_id: str
    detail: str


@dataclass(frozen=True)
class SessionTruth:
    """What the generator injected into a session; kept out of the wire data."""

    intent: str
    conditions: Conditions
    turns: int
    trace_ids: tuple[str, ...]
    tool_calls: int
    tool_errors: tuple[ToolError, ...] = ()
    unsupported_claims: tuple[UnsupportedClaim, ...] = ()
    policy_violations: tuple[PolicyViolation, ...] = ()
    #: The customer's request was not carried out: the agent apologised and stopped, or confirmed an
    #: action that silently failed (a refusal under policy is not a failure).
    goal_failed: bool = False
    #: Names of the incidents that changed this session's conditions.
    incidents: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneratedSession:
    """One session: its OTLP request (all its traces) and what was injected."""

    start_ns: int
    end_ns: int
    session_id: str
    intent: str
    request: ExportTraceServiceRequest
    truth: SessionTruth


@dataclass(frozen=True)
class ErrorKind:
    """A transient tool failure: how it looks with status ERROR and as a silent result."""

    name: str
    error_type: str
    message: str
    silent_result: dict[str, Any]
    duration_ms: tuple[int, int]


#: The fixed set of transient tool errors.
ERROR_KINDS: tuple[ErrorKind, ...] = (
    ErrorKind("timeout", "timeout", "{service} timed out after 10s",
              {"error": "upstream request timed out"}, (10_000, 10_040)),
    ErrorKind("upstream_503", "503", "{service} returned 503 Service Unavailable",
              {"error": "Service Unavailable", "status": 503}, (40, 300)),
    ErrorKind("rate_limited", "rate_limited", "{service} rate limit exceeded, retry after 2s",
              {"error": "rate_limited", "retry_after": 2}, (10, 40)),
    ErrorKind("expired_token", "expired_token", "{service} rejected the request: access token expired",
              {"error": "token expired"}, (15, 60)),
)
