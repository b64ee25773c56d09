"""Factories and a real server process for tests and benchmarks.

``agent_session_request`` builds a realistic OTLP request: one agent
session with an ``invoke_agent`` root, model calls, tool calls and
message content, in the OpenTelemetry GenAI conventions
(:mod:`agentwatch.testing.sessions`; spans and requests of one's own come
from :mod:`agentwatch.otlp`, re-exported here). ``ServerProcess`` runs
``agentwatch serve`` on free loopback ports and waits until it is ready
(:mod:`agentwatch.testing.processes`); ``configured_pipeline`` is the
in-process pipeline (:mod:`agentwatch.testing.pipeline`). The fake
OpenAI-compatible judge is :mod:`agentwatch.testing.judge`.
"""

from __future__ import annotations

from agentwatch.otlp import any_value, kv, make_span, traces_request
from agentwatch.testing.pipeline import configured_pipeline
from agentwatch.testing.processes import CHROMIUM_ARGS, CHROMIUM_PATH, ServerProcess, child_processes, free_port
from agentwatch.testing.sessions import SessionSpec, agent_session_request, filler_text

__all__ = [
    "agent_session_request",
    "any_value",
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH",
    "child_processes",
    "configured_pipeline",
    "filler_text",
    "free_port",
    "kv",
    "make_span",
    "ServerProcess",
    "SessionSpec",
    "traces_request",
]
