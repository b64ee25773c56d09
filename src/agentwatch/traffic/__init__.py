"""Traffic for agentwatch: a synthetic support agent and recorded conversations, sent over OTLP.

``Generator`` makes the sessions of a customer-support agent in event time,
deterministic for a seed; ``import_sessions`` turns recorded conversations in
the OpenAI messages format (tau-bench) into sessions; ``send`` posts either to
a server and ``flush`` completes every open session::

    from agentwatch.traffic import Generator, flush, send

    gen = Generator(seed=1, start_ns=1_767_225_600 * 10**9, sessions_per_hour=120)
    hour = 3600 * 10**9
    send(gen.sessions(until_ns=gen.start_ns + hour), "http://127.0.0.1:4318")
    flush("http://127.0.0.1:4318")

The command-line faces are ``agentwatch replay`` and ``agentwatch import``
(``docs/traffic.md``).
"""

from __future__ import annotations

from agentwatch.traffic.generator import (
    ERROR_KINDS,
    INTENTS,
    Conditions,
    DailyCycle,
    GeneratedSession,
    Generator,
    Incident,
    PolicyViolation,
    Rates,
    SessionTruth,
    ToolError,
    ToolFault,
    ToolReshape,
    UnsupportedClaim,
)
from agentwatch.traffic.importer import ImportedSession, ImportFormatError, import_sessions, load_outcomes
from agentwatch.traffic.incidents import (
    INCIDENTS,
    ExpiredAuthToken,
    GoalFailures,
    NewAgentVersion,
    NewToolError,
    OffPolicyRefund,
    SlowIntent,
    ToolSchemaChange,
    day3_start,
    incident_from_spec,
)
from agentwatch.traffic.sender import SendError, SendResult, flush, send

__all__ = [
    "Conditions",
    "DailyCycle",
    "day3_start",
    "ERROR_KINDS",
    "ExpiredAuthToken",
    "flush",
    "GeneratedSession",
    "Generator",
    "GoalFailures",
    "import_sessions",
    "ImportedSession",
    "ImportFormatError",
    "Incident",
    "incident_from_spec",
    "INCIDENTS",
    "INTENTS",
    "load_outcomes",
    "NewAgentVersion",
    "NewToolError",
    "OffPolicyRefund",
    "PolicyViolation",
    "Rates",
    "send",
    "SendError",
    "SendResult",
    "SessionTruth",
    "SlowIntent",
    "ToolError",
    "ToolFault",
    "ToolReshape",
    "ToolSchemaChange",
    "UnsupportedClaim",
]
