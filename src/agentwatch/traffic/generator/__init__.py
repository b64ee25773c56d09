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

Incidents (:mod:`agentwatch.traffic.incidents`) plug in through :class:`Incident`: each one may
adjust the :class:`Conditions` of a session from its start time and intent.

Here are the :class:`Generator` and its :class:`DailyCycle`; ``records`` holds
the conditions and the truth of a session, ``intents`` what the session of
each intent does, ``build`` turns it into spans through :mod:`agentwatch.otlp`,
and ``world`` is the shop the agent works for.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from agentwatch.traffic.generator.build import (
    NS_PER_MS,
    NS_PER_S,
    _Conversation,
    compact_json,
    tool_call_part,
    tool_response_message,
)
from agentwatch.traffic.generator.intents import _SCENARIOS, INTENTS
from agentwatch.traffic.generator.records import (
    ERROR_KINDS,
    Conditions,
    ErrorKind,
    GeneratedSession,
    Incident,
    PolicyViolation,
    Rates,
    SessionTruth,
    ToolError,
    ToolFault,
    ToolReshape,
    UnsupportedClaim,
)

__all__ = [
    "compact_json",
    "Conditions",
    "DailyCycle",
    "ERROR_KINDS",
    "ErrorKind",
    "GeneratedSession",
    "Generator",
    "Incident",
    "INTENTS",
    "NS_PER_MS",
    "NS_PER_S",
    "PolicyViolation",
    "Rates",
    "SessionTruth",
    "tool_call_part",
    "tool_response_message",
    "ToolError",
    "ToolFault",
    "ToolReshape",
    "UnsupportedClaim",
]

_HOUR_NS = 3600 * NS_PER_S
_DAY_NS = 24 * _HOUR_NS


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
