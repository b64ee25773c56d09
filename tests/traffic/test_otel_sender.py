"""The demo's two paths into the server give the same sessions: history as the generator's own OTLP
requests (``send``), live traffic through the OpenTelemetry SDK's ``OTLPSpanExporter`` (``SdkSender``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from agentwatch.testing import ServerProcess
from agentwatch.traffic import Generator, flush, send
from agentwatch.traffic.otel import SdkSender, readable_spans

START = 1_767_225_600 * 10**9
#: Written by the server, not sent by the agent.
_LOCAL = {"created_at", "updated_at", "ingested_at", "id", "project_id", "received_at"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _LOCAL}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_the_sdk_exporter_and_direct_requests_give_the_same_normalized_sessions(tmp_path: Path) -> None:
    sessions = list(Generator(7, START, 120).sessions(count=12))
    assert sum(len(readable_spans(s)) for s in sessions) == sum(
        len(ss.spans) for s in sessions for rs in s.request.resource_spans for ss in rs.scope_spans)
    direct = ServerProcess(f"sqlite:///{tmp_path / 'direct.db'}", grpc=False)
    sdk = ServerProcess(f"sqlite:///{tmp_path / 'sdk.db'}", grpc=False)
    try:
        direct.start(timeout=120)
        sdk.start(timeout=120)
        send(sessions, direct.url)
        sender = SdkSender(sdk.url)
        for session in sessions:
            sender.send(session)
        sender.shutdown()
        assert sender.sessions == len(sessions)
        flush(direct.url)
        flush(sdk.url)
        for session in sessions:
            a = httpx.get(f"{direct.url}/api/v1/sessions/{session.session_id}", timeout=30).json()
            b = httpx.get(f"{sdk.url}/api/v1/sessions/{session.session_id}", timeout=30).json()
            assert a["spans"], a
            assert _strip(a["session"]) == _strip(b["session"])
            assert _strip(a["spans"]) == _strip(b["spans"])
            assert len(a["scores"]) == len(b["scores"])
    finally:
        direct.stop()
        sdk.stop()
