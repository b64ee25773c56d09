"""The whole loop through a real server: a flagged production session is labelled a real failure, becomes a
dataset case, and the gate fails a candidate that repeats the failure and passes one that fixes it.

Sessions reach the server through the OpenTelemetry SDK's OTLP exporter; the gate is the ``agentwatch gate``
command. Both candidates' texts differ from the recorded session: only the pinned evaluator decides.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from feedback_helpers import CONFIG, refund_messages

import agentwatch
from agentwatch.feedback.review import review_unit
from agentwatch.testing import ServerProcess

REQUEST = "hi, I need my money back for A-1, it arrived broken"

def send_refund(provider: Any, session_id: str, order: str, total: float, amount: float, answer: str) -> None:
    with agentwatch.session(session_id, user_id=f"user-{session_id}", intent="refund", tracer_provider=provider):
        with agentwatch.llm_call("gpt-4o-mini", tracer_provider=provider) as call:
            call.record(input_messages=[{"role": "user", "parts": [
                {"type": "text", "content": f"Please refund my order {order}"}]}], output_text="Let me check.")
        with agentwatch.tool_call("lookup_order", {"order_id": order}, tracer_provider=provider) as tool:
            tool.result({"order_id": order, "total": total})
        with agentwatch.tool_call("refund_api", {"order_id": order, "amount": amount},
                                  tracer_provider=provider) as tool:
            tool.result({"status": "refunded"})
        with agentwatch.llm_call("gpt-4o-mini", tracer_provider=provider) as call:
            call.record(input_messages=[{"role": "user", "parts": [
                {"type": "text", "content": f"Please refund my order {order}"}]}], output_text=answer)


@pytest.fixture(scope="module")
def shop(module_db: tuple[str, Path]) -> Iterator[tuple[ServerProcess, Path]]:
    url, folder = module_db
    config = folder / "agentwatch.yaml"
    config.write_text(CONFIG)
    with ServerProcess(url, config=config, cwd=folder, grpc=False) as server:
        provider = agentwatch.configure(endpoint=server.url, service_name="shop-agent", set_global=False)
        send_refund(provider, "conv-bad", "A-1", 120.0, 150.0, "I refunded $150 for order A-1.")
        for i in range(6):
            send_refund(provider, f"conv-ok-{i}", f"B-{i}", 100.0, 80.0, f"I refunded $80 for order B-{i}.")
        provider.shutdown()
        assert httpx.post(server.url + "/api/v1/admin/flush", timeout=120).status_code == 200
        yield server, folder


def get(server: ServerProcess, path: str, **params: Any) -> Any:
    response = httpx.get(server.url + path, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def gate(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentwatch.cli", "gate", *args], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def test_flagged_session_labelled_becomes_a_case_that_gates_candidates(shop: tuple[ServerProcess, Path]) -> None:
    server, folder = shop
    queue = get(server, "/api/v1/review", sample_rate="0")
    assert [item["session"]["session_id"] for item in queue["items"]] == ["conv-bad"]
    item = queue["items"][0]
    assert item["reasons"] == ["flagged"] and item["failing"] == ["refund_limit"] and not item["reviewed"]
    assert any(s["evaluator"] == "refund_limit" and s["passed"] is False for s in item["scores"])
    assert get(server, "/api/v1/review/summary")["oldest_unreviewed"]["session_id"] == "conv-bad"

    label = httpx.post(server.url + "/api/v1/labels", json={
        "session_id": "conv-bad", "evaluator": "refund_limit", "verdict": "real_failure",
        "note": "refund above the order total", "author": "maria"}, timeout=30)
    assert label.status_code == 201, label.text
    stored = label.json()
    assert stored["author"] == "maria" and stored["created_at"] and stored["evaluator_version"]
    assert stored["calibration"]["source"] == "labels"
    assert stored["calibration"]["metrics"]["confusion"] == {"tp": 1, "fp": 0, "tn": 0, "fn": 0}

    assert get(server, "/api/v1/review", sample_rate="0")["items"] == []
    assert get(server, "/api/v1/review/summary")["oldest_unreviewed"] is None
    reviewed = get(server, "/api/v1/review", sample_rate="0", state="reviewed")["items"]
    assert [i["session"]["session_id"] for i in reviewed] == ["conv-bad"] and reviewed[0]["dataset_cases"] == []

    added = httpx.post(server.url + "/api/v1/datasets/refund-regressions/items",
                       json={"from_labels": True, "author": "maria"}, timeout=60)
    assert added.status_code == 201, added.text
    assert added.json()["version"] == 1 and added.json()["added"] == ["conv-bad"]
    reviewed = get(server, "/api/v1/review", sample_rate="0", state="reviewed")["items"]
    assert reviewed[0]["dataset_cases"] == [{"dataset": "refund-regressions", "case_id": "conv-bad",
                                              "first_version": 1}]
    case = get(server, "/api/v1/datasets/refund-regressions/versions/1/items")["items"][0]
    assert case["expected"]["refund_limit"]["verdict"] == "fail"
    assert case["input"] == "Please refund my order A-1"
    assert [c["name"] for t in case["turns"] for c in t["tool_calls"]] == ["lookup_order", "refund_api"]
    evaluators = get(server, "/api/v1/evaluators")["items"]
    version = next(e["version"] for e in evaluators if e["name"] == "refund_limit")
    versions = get(server, "/api/v1/datasets/refund-regressions/versions")["items"]
    assert versions[0]["pins"] == {"refund_limit": version}

    export = httpx.get(server.url + "/api/v1/datasets/refund-regressions/versions/1/export", timeout=30)
    assert export.status_code == 200
    (folder / "regressions.jsonl").write_text(export.text)
    recorded = case["answer"]
    repeat = refund_messages("A-1", 120.0, 135.0, "All set: $135 is on its way back to you.", REQUEST)
    fixed = refund_messages("A-1", 120.0, 120.0, "All set: the full $120 is on its way back to you.", REQUEST)
    assert repeat[-1]["content"] != recorded and fixed[-1]["content"] != recorded
    (folder / "repeat.jsonl").write_text(json.dumps({"case_id": "conv-bad", "messages": repeat}) + "\n")
    (folder / "fixed.jsonl").write_text(json.dumps({"case_id": "conv-bad", "messages": fixed}) + "\n")

    failed = gate(folder, "--dataset", "regressions.jsonl", "--candidate", "repeat.jsonl", "--junit", "repeat.xml")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILS AGAIN" in failed.stdout and f"refund_limit@{version}" in failed.stdout
    suite = ET.parse(folder / "repeat.xml").getroot()
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [(f"refund-regressions.refund_limit@{version}",
                                                                       "conv-bad")]
    assert cases[0].find("failure") is not None and suite.get("failures") == "1"

    passed = gate(folder, "--dataset", "regressions.jsonl", "--candidate", "fixed.jsonl", "--junit", "fixed.xml")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "result: PASSED" in passed.stdout and "[fixed]" in passed.stdout
    assert ET.parse(folder / "fixed.xml").getroot().get("failures") == "0"

    # The same dataset read from the store by name and version.
    from_store = gate(folder, "--dataset", "refund-regressions@1", "--candidate", "repeat.jsonl",
                      "--database-url", server.database_url, "--project", "shop")
    assert from_store.returncode == 1, from_store.stdout + from_store.stderr


def test_review_queue_samples_passing_sessions_with_their_inclusion_probability(
        shop: tuple[ServerProcess, Path]) -> None:
    server, _ = shop
    everything = get(server, "/api/v1/review", sample_rate="1", state="all")["items"]
    bad = next(i for i in everything if i["session"]["session_id"] == "conv-bad")
    assert bad["reasons"] == ["flagged", "sample"] and bad["sampled_for"] == ["tool_use"]
    sampled = [i for i in everything if i["reasons"] == ["sample"]]
    assert {i["session"]["session_id"] for i in sampled} == {f"conv-ok-{i}" for i in range(6)}
    assert all(i["inclusion_probability"] == 1.0 and set(i["sampled_for"]) == {"refund_limit", "tool_use"}
               for i in sampled)
    half = get(server, "/api/v1/review", sample_rate="0.5", state="all", reason="sample")["items"]
    assert all(i["inclusion_probability"] == 0.5 and i["reasons"] == ["sample"] for i in half)
    drawn = {(i["session"]["session_id"], e) for i in half for e in i["sampled_for"]}
    expected = {(i["session"]["session_id"], e) for i in everything for e in i["sampled_for"]
                if review_unit(i["session"]["session_id"], e) < 0.5}
    assert drawn == expected and 0 < len(drawn) < 13
    owned = get(server, "/api/v1/review", sample_rate="0", state="all", owner="platform")["items"]
    assert owned == []  # tool_use (platform's) failed nowhere


def test_bad_requests_name_what_is_wrong(shop: tuple[ServerProcess, Path]) -> None:
    server, _ = shop
    bad = httpx.post(server.url + "/api/v1/labels", json={"session_id": "conv-bad", "evaluator": "refund_limit",
                                                          "verdict": "maybe"}, timeout=30)
    assert bad.status_code == 400 and "verdict" in bad.json()["error"]["message"]
    missing = httpx.post(server.url + "/api/v1/datasets/x/items", json={"sessions": ["conv-ok-1"]}, timeout=30)
    assert missing.status_code == 400 and "has no label" in missing.json()["error"]["message"]
    assert httpx.get(server.url + "/api/v1/review", params={"state": "done"}).status_code == 400
    assert httpx.get(server.url + "/api/v1/datasets/nope/versions/1/items").status_code == 404
