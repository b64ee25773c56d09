"""Synthetic traffic of a customer-support agent, as OTLP requests in event time.

``Generator`` plays the support agent of an online shop ("Acme"): customers
ask for refunds, order status, invoices, plan changes, cancellations or a
policy answer; the agent searches its knowledge base, calls tools and answers
with the amounts, dates and ids those tools and documents returned. Arrivals
are Poisson with a daily cycle (0.3x the mean rate at night, 1.6x at the
afternoon peak), and the noise is realistic: transient tool errors from a
fixed set (timeout, 503 upstream, rate_limited, expired_token), some of them
coming back as an error-shaped result with status UNSET, a few answers with an
amount or date that nothing in the turn supports, and refund requests outside
the 30-day window, which the agent refuses (``Rates.policy_violation`` makes it
grant some anyway; steady traffic grants none, so one is a rare event).

The wire data carries exactly what the OpenTelemetry GenAI instrumentation
emits (see ``docs/traffic.md``); what was injected is recorded beside it, in
``GeneratedSession.truth``, and never sent. Same seed and start, same bytes::

    from agentwatch.traffic import Generator

    gen = Generator(seed=1, start_ns=1_767_268_800 * 10**9, sessions_per_hour=120)
    for session in gen.sessions(count=3):
        print(session.session_id, session.intent, len(session.truth.tool_errors))
        body = session.request.SerializeToString()   # POST to /v1/traces

Incidents (a later issue) plug in through :class:`Incident`: each one may
adjust the :class:`Conditions` of a session from its start time and intent.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.testing import kv, new_span_id, new_trace_id

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
_HOUR_NS = 3600 * NS_PER_S
_DAY_NS = 24 * _HOUR_NS

#: Intents and their share of sessions.
INTENTS: tuple[tuple[str, float], ...] = (
    ("order_status", 0.26),
    ("refund", 0.22),
    ("policy_question", 0.16),
    ("billing", 0.14),
    ("plan_change", 0.12),
    ("cancel_subscription", 0.10),
)

#: The instrumentation scope of every span (what util-genai reports in the captures).
SCOPE = ("opentelemetry.util.genai.handler", "1.1b0")
SDK_VERSION = "1.45.2"
DATA_SOURCE = "acme-kb"
_SYSTEM_FINGERPRINT = "fp_7c3f1b2a9d"
_RESPONSE_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
}
#: Tokens of the tool definitions sent with every request (not recorded as content).
_TOOL_DEFINITION_TOKENS = 412
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


# ---------------------------------------------------------------- records


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
    """A timed change of conditions (the monitor issue adds concrete ones).

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


# ---------------------------------------------------------------- daily cycle


@dataclass(frozen=True)
class DailyCycle:
    """Hourly rate factor: ``night`` at the trough, ``peak`` at ``peak_hour`` (UTC), mean 1.

    The curve is ``night + (peak - night) * s ** p`` with ``s`` a raised cosine
    of the hour; ``p`` is solved so that the mean over a day is exactly 1.
    """

    night: float = 0.3
    peak: float = 1.6
    peak_hour: float = 13.0
    exponent: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.night <= 1 <= self.peak:
            raise ValueError(f"expected 0 <= night <= 1 <= peak, got night={self.night}, peak={self.peak}")
        object.__setattr__(self, "exponent", _cycle_exponent(self.night, self.peak))

    def factor(self, t_ns: int) -> float:
        hour = (t_ns % _DAY_NS) / _HOUR_NS
        s = (1 + math.cos(2 * math.pi * (hour - self.peak_hour) / 24)) / 2
        return self.night + (self.peak - self.night) * math.pow(s, self.exponent)


def _cycle_exponent(night: float, peak: float) -> float:
    if peak == night:
        return 1.0
    target = (1 - night) / (peak - night)

    def mean(p: float) -> float:  # mean of cos(x)^(2p) over a period
        return math.exp(math.lgamma(p + 0.5) - math.lgamma(p + 1)) / math.sqrt(math.pi)

    lo, hi = 1e-6, 200.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean(mid) > target else (lo, mid)
    return (lo + hi) / 2


# ---------------------------------------------------------------- OTLP building


class TraceBuilder:
    """The spans of one trace, in the order a batch exporter sends them (root last)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.trace_id = new_trace_id(rng)
        self.spans: list[Span] = []

    def new_span_id(self) -> bytes:
        return new_span_id(self.rng)

    def add(self, span_id: bytes, parent: bytes | None, name: str, kind: Span.SpanKind.ValueType, start_ns: int,
            end_ns: int, attributes: dict[str, Any], *, error: str | None = None) -> Span:
        span = Span(trace_id=self.trace_id, span_id=span_id, parent_span_id=parent or b"", name=name, kind=kind,
                    start_time_unix_nano=start_ns, end_time_unix_nano=end_ns)
        span.attributes.extend(kv(k, v) for k, v in attributes.items())
        if error is not None:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
        self.spans.append(span)
        return span


def export_request(resource: dict[str, Any], spans: Sequence[Span],
                   scope: tuple[str, str] = SCOPE) -> ExportTraceServiceRequest:
    """One request: ``spans`` under one resource and instrumentation scope."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(kv(k, v) for k, v in resource.items())
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = scope
    scope_spans.spans.extend(spans)
    return request


def sdk_resource(service_name: str, service_version: str, instance_id: str,
                 environment: str | None = None) -> dict[str, Any]:
    """The resource attributes the OpenTelemetry Python SDK reports."""
    resource: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": SDK_VERSION,
        "service.instance.id": instance_id,
        "service.name": service_name,
        "service.version": service_version,
    }
    if environment:
        resource["deployment.environment.name"] = environment
    return resource


def compact_json(value: Any) -> str:
    """JSON as the GenAI instrumentation writes content attributes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def tool_call_part(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_response_message(call_id: str, response: str) -> dict[str, Any]:
    return {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": response}]}


def random_token(rng: random.Random, length: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


# ---------------------------------------------------------------- the shop's world

_KB: dict[str, tuple[str, str]] = {
    "kb-refund-policy": ("Refund policy", (
        "Items can be refunded within 30 days of delivery. Approved refunds go back to the original payment "
        "method within 5 business days. Shipping fees are refunded only for damaged or wrong items.")),
    "kb-returns": ("Returning an item", (
        "Print a prepaid return label from the order page. Return shipping is free for orders over $50.00; "
        "for smaller orders a $6.95 label fee is deducted from the refund.")),
    "kb-shipping": ("Shipping options", (
        "Standard delivery takes 3-5 business days and costs $4.99, free for orders over $35.00. Express "
        "delivery takes 1-2 business days and costs $12.00. The delivery address cannot be changed once an "
        "order has shipped; the carrier can hold it at a pickup point instead.")),
    "kb-plans": ("Acme plans and prices", (
        "Basic costs $9.99 per month, Plus $19.99 per month and Pro $39.99 per month. Paying yearly costs "
        "ten months' price: $99.90, $199.90 and $399.90.")),
    "kb-plan-changes": ("Changing plans", (
        "Upgrades take effect immediately and the price difference for the rest of the billing period is "
        "charged pro rata. Downgrades take effect on the next renewal date; nothing is refunded.")),
    "kb-billing": ("Invoices and due dates", (
        "Invoices are issued on your billing day each month and are due within 14 days. A late fee of $5.00 "
        "applies to invoices still unpaid after the due date. Invoices can be downloaded from Account > "
        "Billing.")),
    "kb-cancellation": ("Cancelling a subscription", (
        "You can cancel at any time. You keep access until the end of the paid period and partial months "
        "are not refunded. Reactivating within 90 days restores your data.")),
    "kb-payment-methods": ("Payment methods", (
        "Acme accepts Visa, Mastercard, American Express and PayPal. Card details can be updated under "
        "Account > Billing; the new card is charged from the next invoice on.")),
}

_CATALOG: tuple[tuple[str, str], ...] = (
    ("Wireless Mouse", "24.99"), ("USB-C Hub", "42.50"), ("Desk Lamp", "35.00"),
    ("Noise-Cancelling Headphones", "129.00"), ("Laptop Stand", "48.75"), ("Mechanical Keyboard", "89.90"),
    ("HD Webcam", "59.00"), ("Phone Case", "15.50"), ("Travel Backpack", "74.00"), ("Smart Plug", "19.95"),
)
_PLANS: dict[str, Decimal] = {"Basic": Decimal("9.99"), "Plus": Decimal("19.99"), "Pro": Decimal("39.99")}
_CARRIERS = ("UPS", "DHL", "USPS")
_SERVICES = {
    "lookup_order": "order service", "track_shipment": "carrier API", "refund_api": "payments service",
    "get_invoice": "billing service", "get_subscription": "subscription service",
    "change_plan": "subscription service", "cancel_subscription": "subscription service",
}
_TOOL_DESCRIPTIONS = {
    "lookup_order": "Look up an order by id.",
    "track_shipment": "Get the carrier's latest tracking status of a shipment.",
    "refund_api": "Issue a refund for an order.",
    "get_invoice": "Get a customer's latest invoice.",
    "get_subscription": "Get a customer's subscription.",
    "change_plan": "Move a customer's subscription to another plan.",
    "cancel_subscription": "Cancel a customer's subscription.",
}
#: Median latency (ms) of each tool.
_TOOL_LATENCY_MS = {
    "lookup_order": 90, "track_shipment": 220, "refund_api": 480, "get_invoice": 130,
    "get_subscription": 80, "change_plan": 360, "cancel_subscription": 310,
}
_ACTION_TOOLS = frozenset({"refund_api", "change_plan", "cancel_subscription"})
_FIRST_NAMES = ("Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kai", "Lena",
                "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wei", "Yara")
#: The output guardrail every answer passes through.
_GUARDRAIL = "output_screen"
_SYSTEM_PROMPT = (
    "You are the customer-support assistant of Acme, an online shop that also sells subscription plans. "
    "Use the tools to look things up and to act; never promise a refund, plan change or cancellation the "
    "tools did not confirm. Answer only from tool results and the knowledge-base articles you are given. "
    "Follow the policies in those articles.")

_AMOUNT = re.compile(r"\d+(?:\.\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Amount:
    """A money amount stated in an answer."""

    value: Decimal

    def __str__(self) -> str:
        return f"${self.value:.2f}"


@dataclass(frozen=True)
class Day:
    """A date stated in an answer."""

    value: date

    def __str__(self) -> str:
        return self.value.isoformat()


Fact = Amount | Day | str


def evidence_values(texts: Sequence[str]) -> tuple[set[Decimal], set[str]]:
    """Every number (as a 2-decimal amount) and ISO date written in ``texts``."""
    amounts: set[Decimal] = set()
    dates: set[str] = set()
    for text in texts:
        amounts.update(Decimal(m).quantize(Decimal("0.01")) for m in _AMOUNT.findall(text))
        dates.update(_ISO_DATE.findall(text))
    return amounts, dates


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def _add_business_days(day: date, n: int) -> date:
    while n > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


# ---------------------------------------------------------------- the generator


class Generator:
    """Sessions of the Acme support agent in event time, deterministic for ``seed`` and ``start_ns``.

    ``sessions_per_hour`` is the mean rate over a day; the hourly rate follows
    ``cycle``. ``incidents`` adjust each session's :class:`Conditions`.
    """

    def __init__(
        self,
        seed: int,
        start_ns: int,
        sessions_per_hour: float = 120,
        *,
        agent_version: str = "1.0.0",
        model: str = "gpt-4o-mini",
        rates: Rates | None = None,
        incidents: Sequence[Incident] = (),
        cycle: DailyCycle | None = None,
        service_name: str = "support-agent",
        agent_name: str = "support-agent",
        environment: str = "production",
        single_trace_share: float = 0.2,
        replicas: int = 3,
    ) -> None:
        if sessions_per_hour <= 0:
            raise ValueError(f"sessions_per_hour must be positive, got {sessions_per_hour}")
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self.seed = seed
        self.start_ns = start_ns
        self.sessions_per_hour = sessions_per_hour
        self.conditions = Conditions(agent_version=agent_version, model=model, rates=rates or Rates())
        self.cycle = cycle or DailyCycle()
        self.service_name = service_name
        self.agent_name = agent_name
        self.environment = environment
        self.single_trace_share = single_trace_share
        ids = random.Random(f"agentwatch.traffic:{seed}:replicas")
        self.instance_ids = tuple(str(uuid.UUID(int=ids.getrandbits(128), version=4)) for _ in range(replicas))
        self.incidents: tuple[Incident, ...] = tuple(
            bind(self) if (bind := getattr(incident, "bind", None)) is not None else incident
            for incident in incidents)

    def arrivals(self) -> Iterator[int]:
        """Session start times (ns): Poisson arrivals thinned by the daily cycle."""
        rng = random.Random(f"agentwatch.traffic:{self.seed}:arrivals")
        peak_per_s = self.sessions_per_hour * self.cycle.peak / 3600
        t = self.start_ns
        while True:
            t += int(rng.expovariate(peak_per_s) * NS_PER_S)
            if rng.random() * self.cycle.peak < self.cycle.factor(t):
                yield t

    def sessions(self, until_ns: int | None = None, count: int | None = None) -> Iterator[GeneratedSession]:
        """Sessions in start order, until ``until_ns`` (exclusive) or ``count``, else forever."""
        for index, start_ns in enumerate(self.arrivals()):
            if (until_ns is not None and start_ns >= until_ns) or (count is not None and index >= count):
                return
            yield self.session(index, start_ns)

    def session(self, index: int, start_ns: int) -> GeneratedSession:
        """The ``index``-th session, starting at ``start_ns``."""
        rng = random.Random(f"agentwatch.traffic:{self.seed}:session:{index}")
        intent = rng.choices([name for name, _ in INTENTS], weights=[w for _, w in INTENTS])[0]
        conditions = self.conditions
        touched: list[str] = []
        for incident in self.incidents:
            adjusted = incident.adjust(conditions, start_ns=start_ns, intent=intent)
            if adjusted != conditions:
                touched.append(getattr(incident, "name", type(incident).__name__))
            conditions = adjusted
        conversation = _Conversation(self, rng, intent, start_ns, conditions)
        conversation.incidents = tuple(touched)
        _SCENARIOS[intent](conversation)
        return conversation.finish()

    def planned(self) -> Iterator[tuple[int, int, str]]:
        """``(index, start_ns, intent)`` of every session, forever, without generating them."""
        names, weights = [name for name, _ in INTENTS], [w for _, w in INTENTS]
        for index, start_ns in enumerate(self.arrivals()):
            rng = random.Random(f"agentwatch.traffic:{self.seed}:session:{index}")
            yield index, start_ns, rng.choices(names, weights=weights)[0]


# ---------------------------------------------------------------- one session


@dataclass(frozen=True)
class _Customer:
    customer_id: str
    first_name: str
    plan: str
    billing_day: int


@dataclass(frozen=True)
class _ToolOutcome:
    """What the agent got back from a tool call, as the agent understood it."""

    result: dict[str, Any] | None
    #: A silent error the agent took for success (``result`` is None).
    masked: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None


class _Conversation:
    """The state of one session while its turns are generated."""

    def __init__(self, gen: Generator, rng: random.Random, intent: str, start_ns: int,
                 conditions: Conditions) -> None:
        self.gen = gen
        self.rng = rng
        self.intent = intent
        self.conditions = conditions
        self.rates = conditions.rates
        self.start_ns = start_ns
        self.t = start_ns
        self.today = datetime.fromtimestamp(start_ns // NS_PER_S, UTC).date()
        self.session_id = "conv_" + random_token(rng, 24)
        number = rng.randint(1, 5000)
        profile = random.Random(f"agentwatch.traffic:{gen.seed}:customer:{number}")
        self.customer = _Customer(f"cust-{number:05d}", profile.choice(_FIRST_NAMES),
                                  profile.choices(list(_PLANS), weights=[5, 4, 2])[0], profile.randint(1, 28))
        self.instance_id = gen.instance_ids[rng.randrange(len(gen.instance_ids))]
        self.single_trace = rng.random() < gen.single_trace_share
        self.history: list[dict[str, Any]] = []
        self.traces: list[TraceBuilder] = []
        self.turns = 0
        self.tool_calls = 0
        #: Calls made so far, per tool.
        self.calls_of: dict[str, int] = {}
        self.tool_errors: list[ToolError] = []
        self.claims: list[UnsupportedClaim] = []
        self.violations: list[PolicyViolation] = []
        self.goal_failed = False
        self.incidents: tuple[str, ...] = ()
        self._session_root: tuple[TraceBuilder, bytes] | None = None

    # -- time
    def advance_ms(self, low: float, high: float) -> int:
        """Move the clock by a uniform pause; returns the new time."""
        self.t += int(self.rng.uniform(low, high) * NS_PER_MS)
        return self.t

    def latency_ns(self, median_ms: float, sigma: float = 0.35) -> int:
        ms = median_ms * self.rng.lognormvariate(0, sigma) * self.conditions.latency_factor
        return max(NS_PER_MS, int(ms * NS_PER_MS))

    # -- structure
    def root_attributes(self) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.gen.agent_name,
            "gen_ai.agent.description": "Acme customer-support agent",
            "gen_ai.request.model": self.conditions.model,
            "gen_ai.conversation.id": self.session_id,
            "user.id": self.customer.customer_id,
            "agentwatch.intent": self.intent,
        }

    def turn(self, user_text: str) -> _Turn:
        if self.turns:
            self.t += int(min(150.0, 8 + self.rng.lognormvariate(math.log(20), 0.6)) * NS_PER_S)
        self.turns += 1
        if self.single_trace:
            if self._session_root is None:
                trace = TraceBuilder(self.rng)
                self.traces.append(trace)
                self._session_root = (trace, trace.new_span_id())
            trace, root = self._session_root
            return _Turn(self, self.turns - 1, user_text, trace, root, owns_root=False)
        trace = TraceBuilder(self.rng)
        self.traces.append(trace)
        return _Turn(self, self.turns - 1, user_text, trace, trace.new_span_id(), owns_root=True)

    def close_root(self, trace: TraceBuilder, root: bytes, start_ns: int) -> None:
        self.t += int(self.rng.uniform(1, 4) * NS_PER_MS)
        trace.add(root, None, f"invoke_agent {self.gen.agent_name}", Span.SPAN_KIND_INTERNAL, start_ns, self.t,
                  self.root_attributes())

    def finish(self) -> GeneratedSession:
        if self._session_root is not None:
            trace, root = self._session_root
            self.close_root(trace, root, self.start_ns)
        resource = sdk_resource(self.gen.service_name, self.conditions.agent_version, self.instance_id,
                                self.gen.environment)
        spans = [span for trace in self.traces for span in trace.spans]
        truth = SessionTruth(
            intent=self.intent, conditions=self.conditions, turns=self.turns,
            trace_ids=tuple(trace.trace_id.hex() for trace in self.traces), tool_calls=self.tool_calls,
            tool_errors=tuple(self.tool_errors), unsupported_claims=tuple(self.claims),
            policy_violations=tuple(self.violations), goal_failed=self.goal_failed, incidents=self.incidents)
        end_ns = max(span.end_time_unix_nano for span in spans)
        return GeneratedSession(self.start_ns, end_ns, self.session_id, self.intent,
                                export_request(resource, spans), truth)

    # -- shop data
    def order(self, *, status: str, delivered_days_ago: int = 0) -> dict[str, Any]:
        """An order in ``status`` (processing, shipped or delivered), as ``lookup_order`` returns it."""
        rng = self.rng
        name, price = rng.choice(_CATALOG)
        quantity = 1 if rng.random() < 0.85 else 2
        if status == "delivered":
            delivered = self.today - timedelta(days=delivered_days_ago)
            shipped = delivered - timedelta(days=rng.randint(1, 4))
            ordered = shipped - timedelta(days=rng.randint(0, 2))
        else:
            ordered = self.today - timedelta(days=rng.randint(0, 1) if status == "processing" else rng.randint(1, 4))
            shipped = ordered + timedelta(days=1)
        order: dict[str, Any] = {
            "order_id": f"A-{rng.randint(10000, 99999)}",
            "status": status,
            "ordered_on": ordered.isoformat(),
            "items": [{"name": name, "quantity": quantity, "unit_price": float(price)}],
            "total": _money(Decimal(price) * quantity),
            "currency": "USD",
        }
        if status != "processing":
            carrier = rng.choice(_CARRIERS)
            order["carrier"] = carrier
            order["tracking_number"] = _tracking_number(rng, carrier)
            order["shipped_on"] = shipped.isoformat()
        if status == "delivered":
            order["delivered_on"] = delivered.isoformat()
        else:
            order["estimated_delivery"] = _add_business_days(self.today, rng.randint(1, 5)).isoformat()
        return order

    def last_billing_date(self) -> date:
        """The customer's most recent billing day, today included."""
        day = self.today.replace(day=self.customer.billing_day)
        if day > self.today:
            day = (day.replace(day=1) - timedelta(days=1)).replace(day=self.customer.billing_day)
        return day

    def renewal_date(self) -> date:
        """The customer's next billing day, after today."""
        day = self.today.replace(day=self.customer.billing_day)
        if day <= self.today:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=self.customer.billing_day)
        return day


def _tracking_number(rng: random.Random, carrier: str) -> str:
    if carrier == "UPS":
        return "1Z" + random_token(rng, 16, "0123456789ABCDEFGHJKLMNPRSTUVWXYZ")
    if carrier == "DHL":
        return random_token(rng, 10, "0123456789")
    return "94" + random_token(rng, 20, "0123456789")


class _Turn:
    """One user turn: retrieval, chat and tool spans, then the answer."""

    def __init__(self, conv: _Conversation, index: int, user_text: str, trace: TraceBuilder, root: bytes,
                 *, owns_root: bool) -> None:
        self.conv = conv
        self.index = index
        self.trace = trace
        self.root = root
        self.owns_root = owns_root
        self.start_ns = conv.t
        self.messages: list[dict[str, Any]] = [text_message("user", user_text)]
        self.documents: list[str] = []
        self.evidence: list[str] = []
        conv.advance_ms(2, 8)

    # -- spans
    def retrieve(self, query: str, doc_ids: Sequence[str]) -> None:
        """Search the knowledge base; the hits join the system prompt of this turn's model calls."""
        conv = self.conv
        rng = conv.rng
        distractors = [d for d in _KB if d not in doc_ids]
        hits = list(doc_ids) + [rng.choice(distractors)]
        score = rng.uniform(0.82, 0.93)
        documents = []
        for doc_id in hits:
            title, content = _KB[doc_id]
            documents.append({"id": doc_id, "score": round(score, 4), "content": f"{title}. {content}"})
            self.documents.append(f"[{doc_id}] {title}. {content}")
            self.evidence.append(content)
            score -= rng.uniform(0.03, 0.12)
        start = conv.t
        end = start + conv.latency_ns(95, 0.4)
        self.trace.add(self.trace.new_span_id(), self.root, f"retrieval {DATA_SOURCE}", Span.SPAN_KIND_CLIENT,
                       start, end, {
                           "gen_ai.operation.name": "retrieval",
                           "gen_ai.data_source.id": DATA_SOURCE,
                           "gen_ai.retrieval.query.text": query,
                           "gen_ai.retrieval.top_k": len(hits),
                           "gen_ai.retrieval.documents": compact_json(documents),
                       })
        conv.t = end + conv.rng.randint(1, 4) * NS_PER_MS

    def _chat(self, output_parts: list[dict[str, Any]], finish_reason: str) -> bytes:
        conv = self.conv
        rng = conv.rng
        system = _SYSTEM_PROMPT
        if self.documents:
            system += "\n\nKnowledge-base articles:\n" + "\n".join(self.documents)
        inputs = [text_message("system", system), *conv.history, *self.messages]
        outputs = [{"role": "assistant", "parts": output_parts, "finish_reason": finish_reason}]
        input_json = compact_json(inputs)
        output_json = compact_json(outputs)
        tokens_in = _TOOL_DEFINITION_TOKENS + len(input_json) // 4 + 4 * len(inputs)
        tokens_out = rng.randint(1, 9) + sum(
            len(p["content"]) // 4 if p["type"] == "text" else 12 + len(p["name"] + json.dumps(p["arguments"])) // 4
            for p in output_parts)
        model = conv.conditions.model
        span_id = self.trace.new_span_id()
        start = conv.t
        ms = 380 + tokens_out * rng.uniform(14, 28) + tokens_in * 0.05
        end = start + conv.latency_ns(ms, 0.25)
        self.trace.add(span_id, self.root, f"chat {model}", Span.SPAN_KIND_CLIENT, start, end, {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.provider.name": "openai",
            "server.address": "api.openai.com",
            "server.port": 443,
            "gen_ai.conversation.id": conv.session_id,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.response.finish_reasons": [finish_reason],
            "gen_ai.response.model": _RESPONSE_MODELS.get(model, model),
            "gen_ai.response.id": "chatcmpl-" + random_token(rng, 29),
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            "gen_ai.input.messages": input_json,
            "gen_ai.output.messages": output_json,
            "openai.response.system_fingerprint": _SYSTEM_FINGERPRINT,
        })
        conv.t = end + rng.randint(1, 5) * NS_PER_MS
        return span_id

    def tool(self, name: str, arguments: dict[str, Any], result: dict[str, Any], *,
             maskable: bool = False, retries: int = 1) -> _ToolOutcome:
        """The model asks for ``name``; the tool runs, fails transiently or returns ``result``."""
        conv = self.conv
        rng = conv.rng
        rates = conv.rates
        if conv.tool_calls == 0 and conv.conditions.give_up > 0 and rng.random() < conv.conditions.give_up:
            return _ToolOutcome(None)  # the model answers without calling any tool
        call_id = "call_" + random_token(rng, 24)
        self._chat([tool_call_part(call_id, name, arguments)], "tool_calls")
        self.messages.append({"role": "assistant", "parts": [tool_call_part(call_id, name, arguments)]})
        conv.tool_calls += 1
        span_id = self.trace.new_span_id()
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.description": _TOOL_DESCRIPTIONS[name],
            "gen_ai.tool.call.arguments": compact_json(arguments),
        }
        start = conv.t
        earlier_calls = conv.calls_of.get(name, 0)
        conv.calls_of[name] = earlier_calls + 1
        fault = next((f for f in conv.conditions.tool_faults if f.tool == name), None)
        if fault is not None and fault.first_only and earlier_calls:
            fault = None
        if fault is not None and rng.random() < fault.rate:
            failure: ErrorKind | None = fault.kind
        else:
            fault = None
            failure = ERROR_KINDS[rng.randrange(len(ERROR_KINDS))] if rng.random() < rates.tool_error else None
        if failure is None:
            reshape = next((r for r in conv.conditions.tool_reshapes if r.tool == name), None)
            text = json.dumps(result if reshape is None else reshape.apply(result))
            attributes["gen_ai.tool.call.result"] = text
            end = start + conv.latency_ns(_TOOL_LATENCY_MS[name])
            self.trace.add(span_id, self.root, f"execute_tool {name}", Span.SPAN_KIND_INTERNAL, start, end,
                           attributes)
            self._tool_response(call_id, text, end)
            self.evidence.append(text)
            return _ToolOutcome(result)

        end = start + int(rng.uniform(*failure.duration_ms) * NS_PER_MS)
        silent = fault.silent if fault is not None else rng.random() < rates.silent_error_share
        if silent:
            text = json.dumps(failure.silent_result)
            attributes["gen_ai.tool.call.result"] = text
            self.trace.add(span_id, self.root, f"execute_tool {name}", Span.SPAN_KIND_INTERNAL, start, end,
                           attributes)
            self._tool_response(call_id, text, end)
            masked = maskable and (fault is not None or rng.random() < rates.masked_share)
            conv.goal_failed = conv.goal_failed or masked
            self._record_error(name, call_id, span_id, failure, silent=True, recovered=False, masked=masked)
            return _ToolOutcome(None, masked=masked)

        message = failure.message.format(service=_SERVICES[name])
        attributes["error.type"] = failure.error_type
        self.trace.add(span_id, self.root, f"execute_tool {name}", Span.SPAN_KIND_INTERNAL, start, end,
                       attributes, error=message)
        self._tool_response(call_id, f"Error: {message}", end)
        if retries > 0 and rng.random() < 0.6:
            outcome = self.tool(name, arguments, result, maskable=maskable, retries=retries - 1)
            self._record_error(name, call_id, span_id, failure, silent=False, recovered=outcome.ok, masked=False)
            return outcome
        self._record_error(name, call_id, span_id, failure, silent=False, recovered=False, masked=False)
        return _ToolOutcome(None)

    def _tool_response(self, call_id: str, text: str, end_ns: int) -> None:
        self.messages.append(tool_response_message(call_id, text))
        self.conv.t = end_ns + self.conv.rng.randint(1, 4) * NS_PER_MS

    def _record_error(self, name: str, call_id: str, span_id: bytes, failure: ErrorKind, *, silent: bool,
                      recovered: bool, masked: bool) -> None:
        self.conv.tool_errors.append(ToolError(self.index, name, call_id, span_id.hex(), failure.name, silent,
                                               recovered, masked))

    def violation(self, rule: str, detail: str) -> None:
        """Record that the last tool span acted against ``rule``.

        A span with status ERROR did not act (the tool refused the request): nothing is recorded. An
        error-shaped result with status UNSET counts, as the span says the action was taken.
        """
        span = self.trace.spans[-1]
        if span.status.code == Status.STATUS_CODE_ERROR:
            return
        self.conv.violations.append(PolicyViolation(self.index, rule, span.span_id.hex(), detail))

    def reply(self, template: str, **facts: Fact) -> None:
        """The final answer of the turn; closes it."""
        conv = self.conv
        claim: tuple[str, str, str] | None = None
        eligible = [key for key, value in facts.items() if isinstance(value, (Amount, Day))]
        if eligible and conv.rng.random() < conv.rates.unsupported_claim:
            key = conv.rng.choice(eligible)
            original = facts[key]
            replacement = self._unsupported(original)
            facts = {**facts, key: replacement}
            claim = ("amount" if isinstance(original, Amount) else "date", str(replacement), str(original))
        text = template.format(**{key: str(value) for key, value in facts.items()})
        span_id = self._chat([{"type": "text", "content": text}], "stop")
        self._guardrail(span_id)
        if claim is not None:
            conv.claims.append(UnsupportedClaim(self.index, span_id.hex(), claim[0], claim[1], claim[2]))
        self.messages.append(text_message("assistant", text))
        conv.history.extend(self.messages)
        if self.owns_root:
            conv.close_root(self.trace, self.root, self.start_ns)

    def _guardrail(self, chat_id: bytes) -> None:
        """The output guardrail that screens the answer while it streams: a span of its own, operation
        ``apply_guardrail``, that passes (the simulated agent says nothing a filter stops). It draws nothing
        from the random stream and ends with the chat, so the session's other spans, times and outcomes
        are what they would be without it."""
        chat = self.trace.spans[-1]
        self.trace.add(hashlib.blake2b(chat_id, digest_size=8, person=b"guardrail").digest(), self.root,
                       f"apply_guardrail {_GUARDRAIL}", Span.SPAN_KIND_INTERNAL, chat.start_time_unix_nano,
                       chat.end_time_unix_nano, {
                           "gen_ai.operation.name": "apply_guardrail",
                           "gen_ai.conversation.id": self.conv.session_id,
                       })

    def _unsupported(self, fact: Fact) -> Fact:
        rng = self.conv.rng
        amounts, dates = evidence_values(self.evidence)
        for _ in range(200):
            if isinstance(fact, Amount):
                delta = Decimal(rng.choice((1, 2, 3, 5, 7, 10, 12, 15))) * rng.choice((1, -1))
                value = fact.value + delta + rng.choice((Decimal("0"), Decimal("0.49"), Decimal("-0.51")))
                if value > 0 and value.quantize(Decimal("0.01")) not in amounts:
                    return Amount(value)
            elif isinstance(fact, Day):
                shifted = fact.value + timedelta(days=rng.choice((1, 2, 3, 4, 6, 7, 9)) * rng.choice((1, -1)))
                if shifted.isoformat() not in dates:
                    return Day(shifted)
        raise RuntimeError(f"no unsupported value found for {fact!r}")  # pragma: no cover

    def apologize(self, what: str) -> None:
        self.reply(self.conv.rng.choice((
            "I'm sorry, I couldn't reach our {what} just now. Please try again in a few minutes, or reply here "
            "and a colleague will follow up.",
            "Sorry, something went wrong on our side while contacting the {what}. Nothing has been changed; "
            "please try again shortly.",
        )), what=what)


# ---------------------------------------------------------------- scenarios

_Scenario = Callable[[_Conversation], None]
_FollowUp = tuple[tuple[str, ...], tuple[str, ...], str, dict[str, Fact]]


def _closing(conv: _Conversation, follow_ups: Sequence[_FollowUp], *, failed: bool = False) -> None:
    """Optional follow-up question answered from the knowledge base, then optional thanks."""
    rng = conv.rng
    if failed:
        conv.goal_failed = True
        if rng.random() < 0.4:
            conv.turn(rng.choice(("Ok, I'll try again later.", "That's annoying. I'll check back tomorrow.")))\
                .reply("Sorry for the trouble, {name}. We're on it.", name=conv.customer.first_name)
        return
    if follow_ups and rng.random() < 0.45:
        questions, doc_ids, answer, facts = rng.choice(follow_ups)
        question = rng.choice(questions)
        turn = conv.turn(question)
        turn.retrieve(question, doc_ids)
        turn.reply(answer, **facts)
        if rng.random() >= 0.5:
            return
    elif rng.random() >= 0.25:
        return
    conv.turn(rng.choice(("Thanks!", "Great, thank you.", "Perfect, thanks for the help.", "ok thx"))).reply(
        rng.choice(("You're welcome, {name}! Anything else I can help with?",
                    "Happy to help, {name}. Have a great day!")), name=conv.customer.first_name)


_REFUND_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("How long until I see the money?", "When will the refund show up on my card?"), ("kb-refund-policy",),
     "Refunds go back to your original payment method within 5 business days of approval.", {}),
    (("Do I have to send the item back?", "How do I return it?"), ("kb-returns",),
     "Yes, please print the prepaid return label from your order page. Return shipping is free for orders "
     "over {threshold}; otherwise a {fee} label fee is deducted from the refund.",
     {"threshold": Amount(Decimal("50.00")), "fee": Amount(Decimal("6.95"))}),
)
_SHIPPING_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("Can I change the delivery address?", "I moved, can you send it somewhere else?"), ("kb-shipping",),
     "Once an order has shipped the address can't be changed, but the carrier can hold it at a pickup point "
     "for you.", {}),
    (("How much is express shipping?", "Is there a faster shipping option next time?"), ("kb-shipping",),
     "Express delivery takes 1-2 business days and costs {express}. Standard delivery is {standard}, free for "
     "orders over {free}.", {"express": Amount(Decimal("12.00")), "standard": Amount(Decimal("4.99")),
                             "free": Amount(Decimal("35.00"))}),
)
_BILLING_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("What happens if I pay late?", "Is there a late fee?"), ("kb-billing",),
     "Invoices are due within 14 days; after the due date a late fee of {fee} applies.",
     {"fee": Amount(Decimal("5.00"))}),
    (("How do I update my card?", "Can I pay with PayPal instead?"), ("kb-payment-methods",),
     "You can update your payment method under Account > Billing; we accept Visa, Mastercard, American "
     "Express and PayPal, and the new method is used from the next invoice.", {}),
)
_PLAN_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("Is it cheaper if I pay yearly?", "What does the yearly option cost?"), ("kb-plans",),
     "Yes, yearly billing costs ten months' price: {basic} for Basic, {plus} for Plus and {pro} for Pro.",
     {"basic": Amount(Decimal("99.90")), "plus": Amount(Decimal("199.90")), "pro": Amount(Decimal("399.90"))}),
)
_CANCEL_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("Can I come back later?", "What if I change my mind?"), ("kb-cancellation",),
     "Of course. If you reactivate within 90 days, all your data will still be there.", {}),
)


def _refund(conv: _Conversation) -> None:
    rng = conv.rng
    late = rng.random() < conv.rates.out_of_policy
    order = conv.order(status="delivered", delivered_days_ago=rng.randint(35, 80) if late else rng.randint(1, 25))
    item = order["items"][0]["name"]
    order_id = order["order_id"]
    reason = rng.choice(("arrived broken", "doesn't work", "is not what I ordered", "arrived damaged"))
    turn = conv.turn(rng.choice((
        "Hi, I'd like a refund for order {order_id}. The {item} {reason}.",
        "The {item} from order {order_id} {reason}. Can I get my money back?",
        "refund please, order {order_id}, the {item} {reason}",
    )).format(order_id=order_id, item=item, reason=reason))
    turn.retrieve(f"refund {item} {reason}", ("kb-refund-policy", "kb-returns"))
    looked = turn.tool("lookup_order", {"order_id": order_id}, order)
    if not looked.ok:
        turn.apologize("order system")
        return _closing(conv, (), failed=True)
    amount = Decimal(str(order["total"]))
    delivered = date.fromisoformat(order["delivered_on"])
    if late and rng.random() >= conv.rates.policy_violation:
        turn.reply("I'm sorry, {name}: order {order_id} was delivered on {delivered}, which is outside our 30-day "
                   "refund window, so I can't refund it. If the {item} is faulty, its manufacturer's warranty "
                   "may still cover it.", name=conv.customer.first_name, order_id=order_id,
                   delivered=Day(delivered), item=item)
        return _closing(conv, ())
    expected = _add_business_days(conv.today, 5)
    refund = turn.tool("refund_api", {"order_id": order_id, "amount": _money(amount), "reason": reason}, {
        "status": "refunded", "refund_id": "rf_" + random_token(rng, 12), "order_id": order_id,
        "amount": _money(amount), "currency": "USD", "expected_by": expected.isoformat()}, maskable=True)
    if late:
        turn.violation("refund_window_30_days",
                       f"refund of order {order_id} delivered {(conv.today - delivered).days} days ago")
    if refund.ok:
        turn.reply(rng.choice((
            "Done! I've refunded {amount} for order {order_id}. It will be back on your original payment method "
            "by {expected}.",
            "I'm sorry about the {item}. A refund of {amount} for order {order_id} has been issued and should "
            "reach you by {expected}.",
        )), amount=Amount(amount), order_id=order_id, expected=Day(expected), item=item)
    elif refund.masked:
        turn.reply("Your refund of {amount} for order {order_id} has been issued.", amount=Amount(amount),
                   order_id=order_id)
    else:
        turn.apologize("payments system")
        return _closing(conv, (), failed=True)
    _closing(conv, _REFUND_FOLLOW_UPS)


def _order_status(conv: _Conversation) -> None:
    rng = conv.rng
    status = rng.choices(("processing", "shipped", "delivered"), weights=(2, 6, 2))[0]
    order = conv.order(status=status, delivered_days_ago=rng.randint(0, 3))
    order_id = order["order_id"]
    turn = conv.turn(rng.choice((
        "Where is my order {order_id}?", "Hi, any update on order {order_id}?",
        "My order {order_id} hasn't arrived yet, what's going on?",
    )).format(order_id=order_id))
    looked = turn.tool("lookup_order", {"order_id": order_id}, order)
    if not looked.ok:
        turn.apologize("order system")
        return _closing(conv, (), failed=True)
    if status == "processing":
        turn.reply("Order {order_id} is still being prepared. We expect it to arrive by {eta}.",
                   order_id=order_id, eta=Day(date.fromisoformat(order["estimated_delivery"])))
    elif status == "delivered":
        turn.reply("Order {order_id} was delivered on {delivered} by {carrier} (tracking {tracking}). If you can't "
                   "find it, let me know.", order_id=order_id,
                   delivered=Day(date.fromisoformat(order["delivered_on"])), carrier=order["carrier"],
                   tracking=order["tracking_number"])
    else:
        eta = date.fromisoformat(order["estimated_delivery"])
        tracking = {"tracking_number": order["tracking_number"], "carrier": order["carrier"],
                    "status": "in_transit", "last_scan": rng.choice(("Louisville, KY", "Memphis, TN", "Leipzig, DE",
                                                                     "Chicago, IL")),
                    "last_scan_on": (conv.today - timedelta(days=rng.randint(0, 1))).isoformat(),
                    "estimated_delivery": eta.isoformat()}
        tracked = turn.tool("track_shipment", {"tracking_number": order["tracking_number"]}, tracking)
        if tracked.ok:
            turn.reply("Your order {order_id} shipped on {shipped} with {carrier} and was last scanned in {scan}. "
                       "It should arrive by {eta}.", order_id=order_id,
                       shipped=Day(date.fromisoformat(order["shipped_on"])), carrier=order["carrier"],
                       scan=tracking["last_scan"], eta=Day(eta))
        else:
            turn.reply("Order {order_id} shipped on {shipped} with {carrier} (tracking {tracking}); the estimated "
                       "delivery is {eta}. I couldn't get the latest scan from the carrier just now.",
                       order_id=order_id, shipped=Day(date.fromisoformat(order["shipped_on"])),
                       carrier=order["carrier"], tracking=order["tracking_number"], eta=Day(eta))
    _closing(conv, _SHIPPING_FOLLOW_UPS)


def _billing(conv: _Conversation) -> None:
    rng = conv.rng
    customer = conv.customer
    price = _PLANS[customer.plan]
    issued = conv.last_billing_date()
    due = issued + timedelta(days=14)
    invoice: dict[str, Any] = {
        "invoice_id": f"INV-{issued:%Y%m}-{rng.randint(1000, 9999)}", "customer_id": customer.customer_id,
        "plan": customer.plan, "amount": _money(price), "currency": "USD", "issued_on": issued.isoformat(),
        "due_on": due.isoformat(), "status": "paid" if due < conv.today else "open"}
    turn = conv.turn(rng.choice((
        "Why was I charged {price} this month?", "Can you send me my latest invoice?",
        "I see a charge of {price} from Acme, what is it for?",
    )).format(price=Amount(price)))
    turn.retrieve("invoice charge billing", ("kb-billing", "kb-plans"))
    got = turn.tool("get_invoice", {"customer_id": customer.customer_id}, invoice)
    if not got.ok:
        turn.apologize("billing system")
        return _closing(conv, (), failed=True)
    turn.reply(rng.choice((
        "That's your {plan} plan: invoice {invoice_id} for {amount}, issued on {issued} and due on {due}. You can "
        "download it under Account > Billing.",
        "Invoice {invoice_id} is for your {plan} subscription, {amount}. It was issued on {issued}; payment is "
        "due by {due}.",
    )), plan=customer.plan, invoice_id=invoice["invoice_id"], amount=Amount(price), issued=Day(issued),
        due=Day(due))
    _closing(conv, _BILLING_FOLLOW_UPS)


def _subscription(conv: _Conversation) -> dict[str, Any]:
    customer = conv.customer
    return {"customer_id": customer.customer_id, "plan": customer.plan, "status": "active",
            "price": _money(_PLANS[customer.plan]), "currency": "USD",
            "renews_on": conv.renewal_date().isoformat()}


def _plan_change(conv: _Conversation) -> None:
    rng = conv.rng
    customer = conv.customer
    target = rng.choice([plan for plan in _PLANS if plan != customer.plan])
    upgrade = _PLANS[target] > _PLANS[customer.plan]
    turn = conv.turn(rng.choice((
        "I'd like to switch to the {target} plan.", "Can you move me to {target}?",
        "How do I change my plan to {target}?",
    )).format(target=target))
    turn.retrieve(f"change plan {target}", ("kb-plan-changes", "kb-plans"))
    subscription = _subscription(conv)
    got = turn.tool("get_subscription", {"customer_id": customer.customer_id}, subscription)
    if not got.ok:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    renews = conv.renewal_date()
    days_left = (renews - conv.today).days
    difference = _PLANS[target] - _PLANS[customer.plan]
    prorated = (difference * days_left / 30).quantize(Decimal("0.01")) if upgrade else Decimal("0.00")
    effective = conv.today if upgrade else renews
    result = {"customer_id": customer.customer_id, "plan": target, "previous_plan": customer.plan,
              "price": _money(_PLANS[target]), "effective_on": effective.isoformat(),
              "prorated_charge": _money(prorated)}
    changed = turn.tool("change_plan", {"customer_id": customer.customer_id, "plan": target}, result,
                        maskable=True)
    if changed.ok and upgrade:
        turn.reply("Done, you're now on {target} at {price} per month, effective {effective}. A prorated charge of "
                   "{prorated} for the rest of this billing period will appear on your next invoice.",
                   target=target, price=Amount(_PLANS[target]), effective=Day(effective), prorated=Amount(prorated))
    elif changed.ok:
        turn.reply("All set: you'll move from {current} to {target} ({price} per month) on {effective}, your next "
                   "renewal date. Until then you keep {current}.", current=customer.plan, target=target,
                   price=Amount(_PLANS[target]), effective=Day(effective))
    elif changed.masked:
        turn.reply("Your plan has been changed to {target}.", target=target)
    else:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    _closing(conv, _PLAN_FOLLOW_UPS)


def _cancel(conv: _Conversation) -> None:
    rng = conv.rng
    customer = conv.customer
    turn = conv.turn(rng.choice((
        "Please cancel my subscription.", "I want to cancel my {plan} plan.",
        "How do I cancel? I don't use Acme {plan} anymore.",
    )).format(plan=customer.plan))
    turn.retrieve("cancel subscription", ("kb-cancellation",))
    got = turn.tool("get_subscription", {"customer_id": customer.customer_id}, _subscription(conv))
    if not got.ok:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    until = conv.renewal_date()
    result = {"customer_id": customer.customer_id, "status": "cancelled", "plan": customer.plan,
              "access_until": until.isoformat(), "refund": 0}
    cancelled = turn.tool("cancel_subscription", {"customer_id": customer.customer_id}, result, maskable=True)
    if cancelled.ok:
        turn.reply(rng.choice((
            "Your {plan} subscription is cancelled. You keep access until {until} and won't be charged again.",
            "Done, {name}. {plan} is cancelled as of today; you can keep using it until {until}.",
        )), plan=customer.plan, until=Day(until), name=customer.first_name)
    elif cancelled.masked:
        turn.reply("Your {plan} subscription has been cancelled.", plan=customer.plan)
    else:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    _closing(conv, _CANCEL_FOLLOW_UPS)


_POLICY_QUESTIONS: tuple[tuple[tuple[str, ...], tuple[str, ...], str, dict[str, Fact]], ...] = (
    (("What's your return policy?", "Can I return something I bought last week?"), ("kb-refund-policy", "kb-returns"),
     "You can return items within 30 days of delivery. Return shipping is free for orders over {threshold}; "
     "otherwise a {fee} label fee is deducted from your refund.",
     {"threshold": Amount(Decimal("50.00")), "fee": Amount(Decimal("6.95"))}),
    (("How much is express shipping?", "How fast can you deliver?"), ("kb-shipping",),
     "Express delivery takes 1-2 business days and costs {express}; standard delivery takes 3-5 business days "
     "and costs {standard}, free over {free}.",
     {"express": Amount(Decimal("12.00")), "standard": Amount(Decimal("4.99")), "free": Amount(Decimal("35.00"))}),
    (("How much does Pro cost?", "What are your plans?"), ("kb-plans",),
     "Basic is {basic}, Plus {plus} and Pro {pro} per month.",
     {"basic": Amount(Decimal("9.99")), "plus": Amount(Decimal("19.99")), "pro": Amount(Decimal("39.99"))}),
    (("Is there a late fee?", "When do I have to pay my invoice?"), ("kb-billing",),
     "Invoices are due within 14 days of being issued, and a late fee of {fee} applies after the due date.",
     {"fee": Amount(Decimal("5.00"))}),
)


def _policy_question(conv: _Conversation) -> None:
    rng = conv.rng
    questions, doc_ids, answer, facts = rng.choice(_POLICY_QUESTIONS)
    question = rng.choice(questions)
    turn = conv.turn(question)
    turn.retrieve(question, doc_ids)
    turn.reply(answer, **facts)
    _closing(conv, _BILLING_FOLLOW_UPS if "kb-billing" in doc_ids else _SHIPPING_FOLLOW_UPS)


_SCENARIOS: dict[str, _Scenario] = {
    "refund": _refund,
    "order_status": _order_status,
    "billing": _billing,
    "plan_change": _plan_change,
    "cancel_subscription": _cancel,
    "policy_question": _policy_question,
}
