"""The tau-bench importer: conversations in the OpenAI messages format become OTLP sessions, outcomes stay out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from agentwatch.cli.traffic import import_command, parse_time
from agentwatch.ingest.decode import decode_traces
from agentwatch.normalize import normalize
from agentwatch.testing import ServerProcess
from agentwatch.traffic import ImportFormatError, import_sessions, load_outcomes

TAU = Path(__file__).resolve().parents[3] / "shared" / "data" / "tau-bench" / "gpt-4o-airline-dev.json"
START = parse_time("2026-01-01T00:00:00Z")


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    if not TAU.exists():
        pytest.fail(f"the tau-bench sessions are expected at {TAU}")
    data: list[dict[str, Any]] = json.loads(TAU.read_text())
    return data


def _walk(node: Any) -> Any:
    """Every key and scalar value of a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
    else:
        yield node


def test_outcomes_come_from_the_file_only(records: list[dict[str, Any]]) -> None:
    outcomes = load_outcomes(TAU)
    assert len(outcomes) == 100 and sum(r == 1.0 for r in outcomes.values()) == 31
    assert outcomes == {f"tau-airline-{r['task_id']}-{r['trial']}": float(r["reward"]) for r in records}
    sessions = list(import_sessions(TAU, START))
    assert [s.session_id for s in sessions] == list(outcomes)
    for session in sessions:
        body = session.request.SerializeToString()
        assert b"reward" not in body.lower() and b"r_actions" not in body and b"gt_data_hash" not in body


def test_conversations_map_onto_genai_spans(records: list[dict[str, Any]]) -> None:
    sessions = {s.session_id: s for s in import_sessions(TAU, START)}
    again = [s.request.SerializeToString() for s in import_sessions(TAU, START)]
    assert again == [s.request.SerializeToString() for s in sessions.values()], "deterministic"
    record = records[0]
    session = sessions["tau-airline-0-0"]
    decoded = decode_traces(session.request.SerializeToString(), "protobuf")
    assert decoded.rejected_spans == 0
    spans = [normalize(raw) for raw in decoded.spans]
    chats = sorted((s for s in spans if s.kind == "llm"), key=lambda s: s.start_ns)
    tools = sorted((s for s in spans if s.kind == "tool"), key=lambda s: s.start_ns)
    assistant = [m for m in record["traj"] if m["role"] == "assistant"]
    calls = [c for m in assistant for c in m.get("tool_calls") or []]
    results = [m["content"] for m in record["traj"] if m["role"] == "tool"]  # call ids repeat in this file
    assert len(chats) == len(assistant) and len(tools) == len(calls)
    for chat, message in zip(chats, assistant, strict=True):
        assert chat.model_requested == "gpt-4o" and chat.provider == "openai" and chat.tokens_in is None
        assert chat.input_messages[0]["role"] == "system"
        if message["content"]:
            assert chat.output_text == message["content"]
        for part, call in zip([p for p in chat.output_messages[0]["parts"] if p["type"] == "tool_call"],
                              message.get("tool_calls") or [], strict=True):
            assert part["id"] == call["id"] and part["arguments"] == json.loads(call["function"]["arguments"])
    for tool, call, result in zip(tools, calls, results, strict=True):
        assert tool.tool_name == call["function"]["name"] and tool.tool_call_id == call["id"]
        assert tool.raw_attributes["gen_ai.tool.call.result"] == result and tool.success
    roots = [s for s in spans if s.kind == "agent"]
    users = [m for m in record["traj"] if m["role"] == "user"]
    assert len(roots) == session.turns == len(users) - (users[-1] is record["traj"][-1])
    assert all(r.session_id == "tau-airline-0-0" and r.user_id == "mia_li_3668" for r in roots)


def test_error_shaped_tool_results_stay_as_recorded() -> None:
    errors = []
    for session in import_sessions(TAU, START):
        for span in session.request.resource_spans[0].scope_spans[0].spans:
            result = {kv.key: kv.value.string_value for kv in span.attributes}.get("gen_ai.tool.call.result", "")
            if result.startswith("Error:"):
                errors.append(result)
                assert span.status.code == 0, "the benchmark's tools answer errors as plain output"
    assert len(errors) == 63


def test_a_file_that_is_not_conversations_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"traj": []}')
    with pytest.raises(ImportFormatError, match="expected a JSON list"):
        list(import_sessions(bad, START))
    bad.write_text('[{"task_id": 1, "traj": [{"role": "robot"}]}]')
    with pytest.raises(ImportFormatError, match="record 0, message 0"):
        list(import_sessions(bad, START))


def test_import_into_a_server(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    with ServerProcess("sqlite:///" + str(tmp_path / "a.db"), cwd=tmp_path, grpc=False) as server:
        result = CliRunner().invoke(import_command, [str(TAU), "--url", server.url,
                                                     "--start", "2026-01-01T00:00:00Z", "--flush"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("sent 100 sessions, 2782 spans in 100 requests") and "flushed" in result.output
        items = httpx.get(server.url + "/api/v1/sessions", params={"limit": 1000}).json()["items"]
        details = [httpx.get(f"{server.url}/api/v1/sessions/{item['session_id']}", timeout=30).json()
                   for item in items]
    by_id = {item["session_id"]: item for item in items}
    assert len(by_id) == 100 and all(item["complete"] for item in items)
    for record in records:
        item = by_id[f"tau-airline-{record['task_id']}-{record['trial']}"]
        assert item["llm_calls"] == sum(m["role"] == "assistant" for m in record["traj"]) > 0
        assert item["tool_calls"] == sum(len(m.get("tool_calls") or []) for m in record["traj"])
        assert item["tool_errors"] == 0 and item["tokens_in"] == 0
    for detail in details:
        stack = list(detail["spans"])
        while stack:
            span = stack.pop()
            stack.extend(span["children"])
            for token in _walk({"attributes": span["raw_attributes"], "resource": span["resource"]}):
                assert "reward" not in str(token).lower()
        assert "reward" not in json.dumps(detail["session"]).lower()
