"""The captured payloads of three real instrumentations, sent over the wire."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agentwatch.testing import ServerProcess

RUNS = ["otel-genai", "otel-genai-events", "otel-genai-grpc", "otel-genai-legacy", "openinference", "openllmetry"]


def _post(server: ServerProcess, path: Path) -> httpx.Response:
    if path.suffix == ".pb":
        content_type = "application/x-protobuf"
    else:
        content_type = "application/json"
    signal = "logs" if "logs" in path.name else "traces"
    return httpx.post(f"{server.url}/v1/{signal}", content=path.read_bytes(),
                      headers={"content-type": content_type}, timeout=30)


def _walk(spans: list[dict]) -> list[dict]:
    out = []
    for span in spans:
        out.append(span)
        out.extend(_walk(span["children"]))
    return out


@pytest.mark.parametrize("encoding", ["pb", "otlp.json"])
@pytest.mark.parametrize("run", RUNS)
def test_each_capture_is_one_session(server: ServerProcess, captures: Path, run: str, encoding: str) -> None:
    files = sorted((captures / run).glob(f"*.{encoding}"))
    files = [f for f in files if not f.name.endswith(".meta.json")]
    assert files
    for path in files:
        response = _post(server, path)
        assert response.status_code == 200, response.text
    assert httpx.post(f"{server.url}/api/v1/admin/flush").status_code == 200

    sessions = httpx.get(f"{server.url}/api/v1/sessions").json()["items"]
    assert [s["session_id"] for s in sessions] == ["sess-conformance-0001"]
    s = sessions[0]
    assert s["complete"] is True
    assert (s["llm_calls"], s["tool_calls"], s["tool_errors"]) == (3, 1, 0)
    assert (s["tokens_in"], s["tokens_out"]) == (39 + 55 + 94, 10 + 20 + 21)
    assert s["service"] == "support-agent"
    assert s["agent_version"] == "0.0.1"
    assert s["cost_usd"] > 0
    assert len(s["trace_ids"]) == 1

    detail = httpx.get(f"{server.url}/api/v1/sessions/sess-conformance-0001").json()
    assert len(detail["spans"]) == 1, "one root with every other span below it"
    root = detail["spans"][0]
    assert root["kind"] == "agent"
    assert sorted(c["kind"] for c in root["children"]) == ["llm", "llm", "llm", "tool"]
    spans = _walk(detail["spans"])
    assert {sp["session_id"] for sp in spans} == {"sess-conformance-0001"}
    chats = sorted((sp for sp in spans if sp["kind"] == "llm"), key=lambda sp: sp["start_time"])
    assert [c["tokens_in"] for c in chats] == [39, 55, 94]
    assert "refund" in (chats[0]["input_text"] or "").lower()
    assert "42.50" in (chats[1]["output_text"] or "")
