"""Datasets, calibration runs and the gate in process, on both engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from feedback_helpers import CONFIG
from feedback_helpers import refund_messages as refund
from sqlalchemy import insert, text, update
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

import agentwatch
from agentwatch.api.app import create_app
from agentwatch.errors import BadRequest
from agentwatch.feedback import datasets
from agentwatch.feedback.datasets import DatasetIntegrityError
from agentwatch.feedback.gate import load_dataset, run_agent, run_gate
from agentwatch.feedback.snapshot import view_from_messages
from agentwatch.store import models as m
from agentwatch.testing import configured_pipeline
from agentwatch.traffic.importer import conversation_request

T0 = 1_767_225_600 * 10**9
PB = {"content-type": "application/x-protobuf"}


SESSIONS = {  # session id: (total, amount)
    "s-over-1": (100.0, 140.0), "s-over-2": (50.0, 55.0), "s-over-3": (70.0, 90.0),
    "s-ok-1": (100.0, 100.0), "s-ok-2": (80.0, 20.0), "s-ok-3": (60.0, 10.0),
}


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    pipeline = configured_pipeline(db_url, tmp_path, CONFIG)
    with TestClient(create_app(pipeline.settings, pipeline)) as c:
        for i, (session_id, (total, amount)) in enumerate(SESSIONS.items()):
            body = conversation_request(session_id, refund(session_id, total, amount), T0 + i * 60 * 10**9,
                                        service="shop").SerializeToString()
            assert c.post("/v1/traces", content=body, headers=PB).status_code == 200
        assert c.post("/api/v1/admin/flush").status_code == 200
        yield c
    pipeline.store.close()


def label(c: TestClient, session_id: str, verdict: str, evaluator: str = "refund_limit") -> dict[str, Any]:
    response = c.post("/api/v1/labels", json={"session_id": session_id, "evaluator": evaluator, "verdict": verdict,
                                              "author": "rev"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def engine_of(c: TestClient) -> Any:
    return c.app.state.pipeline.store.engine  # type: ignore[attr-defined]


def test_adding_cases_makes_a_new_version_and_old_versions_never_change(client: TestClient) -> None:
    c = client
    label(c, "s-over-1", "real_failure")
    label(c, "s-over-2", "real_failure")
    first = c.post("/api/v1/datasets/regressions/items", json={"from_labels": True}).json()
    assert first["version"] == 1 and sorted(first["added"]) == ["s-over-1", "s-over-2"]
    v1 = c.get("/api/v1/datasets/regressions/versions/1/items").json()
    label(c, "s-over-3", "real_failure")
    second = c.post("/api/v1/datasets/regressions/items", json={"from_labels": True}).json()
    assert second["version"] == 2 and second["added"] == ["s-over-3"] and sorted(second["unchanged"]) == [
        "s-over-1", "s-over-2"]
    assert c.get("/api/v1/datasets/regressions/versions/1/items").json() == v1
    assert [v["case_count"] for v in c.get("/api/v1/datasets/regressions/versions").json()["items"]] == [3, 2]
    again = c.post("/api/v1/datasets/regressions/items", json={"from_labels": True})
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["version"] == 2

    engine = engine_of(c)
    for table, values in ((m.dataset_cases, {"content": {"case_id": "x"}}), (m.dataset_versions, {"case_count": 0}),
                          (m.dataset_members, {"case_row_id": 999})):
        with pytest.raises(DBAPIError, match="immutable"):
            with engine.begin() as conn:
                conn.execute(update(table).values(**values))
    with engine.begin() as conn:  # sneaking a case into version 1 is found on read
        version_id = conn.execute(text("SELECT id FROM dataset_versions WHERE version = 1")).scalar()
        extra = conn.execute(text("SELECT id FROM dataset_cases WHERE case_id = 's-over-3'")).scalar()
        conn.execute(insert(m.dataset_members).values(version_id=version_id, case_row_id=extra))
    broken = c.get("/api/v1/datasets/regressions/versions/1/items")
    assert broken.status_code == 500 and "not the ones it was made with" in broken.json()["error"]["message"]
    assert c.get("/api/v1/datasets/regressions/versions/2/items").status_code == 200


def test_an_exported_version_reads_back_and_a_tampered_file_is_refused(client: TestClient, tmp_path: Path) -> None:
    c = client
    label(c, "s-over-1", "real_failure")
    label(c, "s-ok-1", "false_positive")
    assert c.post("/api/v1/datasets/mixed/items", json={"from_labels": True}).status_code == 201
    exported = c.get("/api/v1/datasets/mixed/versions/latest/export").text
    path = tmp_path / "mixed.jsonl"
    path.write_text(exported)
    dataset = load_dataset(str(path))
    assert dataset.ref == "mixed@1" and [case["case_id"] for case in dataset.cases] == ["s-ok-1", "s-over-1"]
    assert {case["case_id"]: case["expected"]["refund_limit"]["verdict"] for case in dataset.cases} == {
        "s-ok-1": "pass", "s-over-1": "fail"}
    path.write_text(exported.replace('"total":100.0', '"total":1000.0', 1))
    with pytest.raises(DatasetIntegrityError, match="do not match the digest"):
        load_dataset(str(path))
    # A re-import into another dataset keeps every case and its expectations.
    header, cases = datasets.read_lines(exported, "mixed.jsonl")
    assert header is not None and header["version"] == 1
    copied = c.post("/api/v1/datasets/copy/items", json={"cases": cases}).json()
    assert copied["version"] == 1 and copied["case_count"] == 2


def test_calibration_run_reports_agreement_disagreements_and_is_stamped_on_the_version(client: TestClient) -> None:
    c = client
    for session_id in ("s-over-1", "s-over-2", "s-over-3", "s-ok-1", "s-ok-2"):
        label(c, session_id, "correct")
    run_after_label = label(c, "s-ok-3", "false_negative")["calibration"]
    assert run_after_label["n"] == 6 and run_after_label["metrics"]["confusion"] == {
        "tp": 3, "fp": 0, "tn": 2, "fn": 1}
    # The monitor's calibration alert cites the run that the latest label triggered.
    from agentwatch.monitor.config import CalibrationConfig, MonitorConfig
    from agentwatch.monitor.events import calibration

    pipeline = c.app.state.pipeline  # type: ignore[attr-defined]
    with engine_of(c).connect() as conn:
        (alert,) = calibration(conn, pipeline.default_project_id, T0 + 86400 * 10**9, pipeline.catalogue.specs,
                               MonitorConfig(calibration=CalibrationConfig(floor=0.9, min_labels=5)))
    assert alert.figures["calibration_run"] == run_after_label["id"]
    assert alert.figures["confusion"] == run_after_label["metrics"]["confusion"]
    sessions = [{"session_id": s} for s in SESSIONS]
    assert c.post("/api/v1/datasets/calib/items", json={"sessions": sessions}).status_code == 201
    response = c.post("/api/v1/calibration-runs", json={"evaluator": "refund_limit", "dataset": "calib@1"})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["source"] == "dataset" and run["dataset_version"] == 1 and run["n"] == 6
    metrics = run["metrics"]
    assert metrics["confusion"] == {"tp": 3, "fp": 0, "tn": 2, "fn": 1}
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["ci95"]["accuracy"][0] < 5 / 6 <= metrics["ci95"]["accuracy"][1]
    assert [(d["case_id"], d["kind"]) for d in run["disagreements"]] == [("s-ok-3", "false_negative")]
    assert metrics["recommended_threshold"]["positives"] == 4
    listed = c.get("/api/v1/calibration-runs", params={"evaluator": "refund_limit", "source": "dataset"}).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]]
    stamped = next(e for e in c.get("/api/v1/evaluators").json()["items"] if e["name"] == "refund_limit")
    assert stamped["calibration"]["run_id"] == run["id"] and stamped["calibration"]["dataset"] == "calib"


def test_recorded_conversations_seed_a_dataset(client: TestClient, shared_data: Path) -> None:
    records = json.loads((shared_data / "tau-bench" / "gpt-4o-airline-dev.json").read_text())[:12]
    response = client.post("/api/v1/datasets/tau/items", json={"conversations": records,
                                                               "reward_dimension": "tool_use"})
    assert response.status_code == 201, response.text
    cases = client.get("/api/v1/datasets/tau/versions/1/items", params={"spans": "false"}).json()["items"]
    assert len(cases) == 12 and all("spans" not in case for case in cases)
    expected = {f"{r['task_id']}-{r.get('trial', 0)}": "pass" if r["reward"] >= 1 else "fail" for r in records}
    assert {case["case_id"]: case["expected"]["tool_use"]["verdict"] for case in cases} == expected
    first = next(case for case in cases if case["case_id"] == f"{records[0]['task_id']}-{records[0].get('trial', 0)}")
    user_turns = [m["content"] for m in records[0]["traj"] if m["role"] == "user"]
    assert first["input"] == user_turns[0]


def test_the_gate_runs_an_agent_in_process_and_captures_its_spans(client: TestClient, tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    c = client
    label(c, "s-over-1", "real_failure")
    label(c, "s-ok-1", "false_positive")
    c.post("/api/v1/datasets/gate/items", json={"from_labels": True})
    path = tmp_path / "gate.jsonl"
    path.write_text(c.get("/api/v1/datasets/gate/versions/1/export").text)
    dataset = load_dataset(str(path))
    provider = TracerProvider()
    totals = {case["case_id"]: SESSIONS[case["case_id"]][0] for case in dataset.cases}

    def agent(refund_factor: float) -> Any:
        def run(case: Any) -> None:
            order = case.input.split()[2]
            with agentwatch.tool_call("lookup_order", {"order_id": order}, tracer_provider=provider) as tool:
                tool.result({"order_id": order, "total": totals[case.case_id]})
            with agentwatch.tool_call("refund_api", {"order_id": order, "amount": totals[case.case_id] * refund_factor},
                                      tracer_provider=provider) as tool:
                tool.result({"status": "ok"})
        return run

    careless = run_agent(dataset, agent(1.5), tracer_provider=provider)
    assert not careless.passed
    assert [(r.case_id, r.outcome) for r in careless.results] == [("s-ok-1", "failed"), ("s-over-1", "failed")]
    assert [r.case_id for r in careless.problems] == ["s-over-1"]
    careful = run_agent(dataset, agent(1.0), tracer_provider=provider, floors={"refund_limit": 1.0})
    assert careful.passed, careful.summary()
    floor = run_gate(dataset, {}, floors={"refund_limit": 0.5})
    assert not floor.passed and [r.outcome for r in floor.results] == ["missing", "missing"]
    with pytest.raises(BadRequest, match="no case"):
        run_gate(dataset, {}, floors={"faithfulness": 0.9})


def test_candidates_in_otlp_json_lines_are_matched_by_case_attribute(tmp_path: Path) -> None:
    import base64

    from google.protobuf.json_format import MessageToDict

    from agentwatch.feedback.gate import load_candidates

    request = conversation_request("run-7", refund("A", 10.0, 10.0), T0)
    for span in request.resource_spans[0].scope_spans[0].spans:
        attribute = span.attributes.add()
        attribute.key, attribute.value.string_value = "agentwatch.case_id", "case-a"
    path = tmp_path / "traces.json"
    document = MessageToDict(request)
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:  # OTLP/JSON spells ids in hex
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64decode(span[key]).hex()
    path.write_text(json.dumps(document) + "\n")
    found = load_candidates(path)
    assert list(found) == ["case-a"] and found["case-a"].session_id == "run-7"
    binary = tmp_path / "traces.pb"
    binary.write_bytes(request.SerializeToString())
    assert list(load_candidates(binary)) == ["case-a"]
    view = view_from_messages("m", refund("B", 5.0, 1.0))
    assert [c.name for c in view.tool_calls] == ["lookup_order", "refund_api"]


def test_review_pages_cover_the_queue_once_newest_first_and_alerts_bring_their_sessions(client: TestClient) -> None:
    from agentwatch.store.models import utcnow

    c = client
    seen: list[str] = []
    cursor = None
    while True:
        page = c.get("/api/v1/review", params={"state": "all", "sample_rate": "1", "limit": 2,
                                               **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["session"]["session_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(SESSIONS))
    flagged = c.get("/api/v1/review", params={"sample_rate": "0"}).json()["items"]
    assert [i["session"]["session_id"] for i in flagged] == ["s-over-3", "s-over-2", "s-over-1"]
    pipeline = c.app.state.pipeline  # type: ignore[attr-defined]
    now = utcnow()
    with engine_of(c).begin() as conn:
        alert_id = conn.execute(insert(m.alerts).values(
            project_id=pipeline.default_project_id, dedup_key="k", kind="burn_rate", rule="work_time",
            dimension="_session", evaluator="", evaluator_version="", severity="ticket", state="firing",
            started_ns=T0, detected_at=now, updated_at=now, summary="slow", labels={}, figures={},
            session_ids=["s-ok-2", "s-over-1"], trace_ids=[])).inserted_primary_key[0]
    behind = c.get("/api/v1/review", params={"alert": str(alert_id), "state": "all"}).json()["items"]
    assert [(i["session"]["session_id"], i["reasons"]) for i in behind] == [("s-ok-2", ["alert"]),
                                                                           ("s-over-1", ["alert"])]
    queue = c.get("/api/v1/review", params={"sample_rate": "0"}).json()["items"]
    assert [(i["session"]["session_id"], i["reasons"], i["alert_ids"]) for i in queue] == [
        ("s-ok-2", ["alert"], [alert_id]), ("s-over-3", ["flagged"], []), ("s-over-2", ["flagged"], []),
        ("s-over-1", ["flagged", "alert"], [alert_id])]
    assert c.get("/api/v1/review", params={"alert": "999999"}).status_code == 404
