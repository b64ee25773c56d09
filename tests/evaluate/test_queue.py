"""The evaluation queue on both engines: jobs survive restarts, duplicates never double a score."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from agentwatch.api.app import create_app
from agentwatch.pipeline import Pipeline
from agentwatch.sample import included
from agentwatch.settings import load_settings
from agentwatch.store import evaluations as ev
from agentwatch.store import models as m
from agentwatch.store.store import Store
from agentwatch.testing import agent_session_request, make_span, traces_request

T0 = 1_767_225_600_000_000_000
PB = {"content-type": "application/x-protobuf"}

CHECKS = '''
def answered(session):
    return (1.0 if session.answer else 0.0, f"{len(session.turns)} turn(s)")

def broken(session):
    raise RuntimeError("this evaluator is broken")

def no_tool_errors(session):
    failed = [c.name for c in session.tool_calls if not c.success]
    return (0.0 if failed else 1.0, ", ".join(failed) or "no failed tool call")
'''

CONFIG = """
sampling: {default_rate: 0.5}
evaluators:
  - {name: answered, kind: python, function: 'qchecks:answered', threshold: 1.0, sample_rate: 1.0}
  - {name: tools, kind: python, function: 'qchecks:no_tool_errors', threshold: 1.0, sample_rate: 1.0,
     filter: {intent: [refund]}}
  - {name: broken, kind: python, function: 'qchecks:broken', sample_rate: 0.25}
  - {name: external:helpfulness, kind: external, threshold: 0.7}
"""


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "qchecks.py").write_text(CHECKS)
    path = tmp_path / "agentwatch.yaml"
    path.write_text(CONFIG)
    yield path
    sys.modules.pop("qchecks", None)


def pipeline_for(db_url: str, config: Path) -> Pipeline:
    store = Store(db_url)
    store.migrate()
    return Pipeline(load_settings(config, environ={}, database_url=db_url, decode_workers=0), store)


def send(client: TestClient, n: int, seed: int = 1, **kw) -> list:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        request, spec = agent_session_request(rng, start_ns=T0 + i * 10**9, tool_calls=2, **kw)
        assert client.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
        specs.append(spec)
    return specs


def count_scores(store: Store, **where: str) -> int:
    s = m.scores.c
    query = select(func.count()).select_from(m.scores)
    for key, value in where.items():
        query = query.where(s[key] == value)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_flush_scores_every_completed_session_with_lineage(db_url: str, config: Path) -> None:
    pipeline = pipeline_for(db_url, config)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        refunds = send(client, 12, intent="refund", tool_error_rate=0.5)
        others = send(client, 8, seed=2, intent="billing")
        result = client.post("/api/v1/admin/flush").json()
        assert result["completed_sessions"] == 20 and result["evaluations_pending"] == 0
        store = pipeline.store
        assert count_scores(store, evaluator="answered") == 20
        assert count_scores(store, evaluator="tools") == 12, "the filter keeps it to refund sessions"
        sampled_broken = sum(1 for s in refunds + others if included(s.session_id, 0.25))
        assert count_scores(store, evaluator="broken") == sampled_broken
        errors = client.get("/api/v1/scores", params={"evaluator": "broken", "limit": 1000}).json()["items"]
        assert all(e["status"] == "error" and e["score"] is None and e["passed"] is None for e in errors)
        assert all("this evaluator is broken" in e["error"] for e in errors)

        detail = client.get(f"/api/v1/sessions/{refunds[0].session_id}").json()
        names = {s["evaluator"] for s in detail["scores"]}
        assert {"answered", "tools"} <= names
        score = next(s for s in detail["scores"] if s["evaluator"] == "tools")
        assert score["inclusion_probability"] == 1.0 and score["evaluator_version"]
        assert score["event_time"] == detail["session"]["end_time"]
        assert score["passed"] is (refunds[0].tool_errors == 0)
        # flagged: a failing score or an evaluation error.
        for spec in refunds:
            session = client.get(f"/api/v1/sessions/{spec.session_id}").json()
            failed = any(s["passed"] is False or s["status"] == "error" for s in session["scores"])
            assert session["session"]["flagged"] is failed
            assert session["session"]["sampled"] is included(spec.session_id, 0.5)

        evaluators = client.get("/api/v1/evaluators").json()["items"]
        by_name = {e["name"]: e for e in evaluators}
        assert by_name["broken"]["effective_sample_rate"] == 0.25 and by_name["answered"]["first_used_at"]


def test_late_span_does_not_requeue_and_flush_is_idempotent(db_url: str, config: Path) -> None:
    pipeline = pipeline_for(db_url, config)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        [spec] = send(client, 1, intent="refund")
        client.post("/api/v1/admin/flush")
        before = count_scores(pipeline.store)
        late = traces_request([make_span(spec.trace_id, "77", parent=spec.span_ids[-1], start_ns=T0 + 5 * 10**9,
                                         attributes={"gen_ai.operation.name": "execute_tool",
                                                     "gen_ai.tool.name": "late"})])
        assert client.post("/v1/traces", content=late.SerializeToString(), headers=PB).status_code == 200
        client.post("/api/v1/admin/flush")
        assert count_scores(pipeline.store) == before
        assert ev.pending(pipeline.store.engine) == 0


def test_external_evaluations_become_scores(db_url: str, config: Path) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from agentwatch.testing import kv

    pipeline = pipeline_for(db_url, config)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        [spec] = send(client, 1, intent="billing")
        logs = ExportLogsServiceRequest()
        records = logs.resource_logs.add().scope_logs.add().log_records
        for name, value in (("helpfulness", 0.9), ("helpfulness_v2", 0.2), ("toxicity", 7.0)):
            record = records.add(trace_id=bytes.fromhex(spec.trace_id), span_id=bytes.fromhex(spec.span_ids[0]),
                                 event_name="gen_ai.evaluation.result", observed_time_unix_nano=T0)
            record.attributes.extend([kv("gen_ai.evaluation.name", name), kv("gen_ai.evaluation.score.value", value)])
        assert client.post("/v1/logs", content=logs.SerializeToString(), headers=PB).status_code == 200
        client.post("/api/v1/admin/flush")
        scores = {s["evaluator"]: s for s in client.get("/api/v1/scores", params={"session_id": spec.session_id})
                  .json()["items"]}
        assert scores["external:helpfulness"]["passed"] is True
        assert scores["external:helpfulness"]["evaluator_version"] == "external"
        assert scores["external:helpfulness"]["inclusion_probability"] == 1.0
        assert scores["external:helpfulness_v2"]["passed"] is None, "no threshold declared for it"
        assert scores["external:toxicity"]["status"] == "error" and "7.0" in scores["external:toxicity"]["raw"]
        assert scores["external:helpfulness"]["span_id"] == spec.span_ids[0]


def test_a_restart_mid_queue_loses_and_duplicates_nothing(db_url: str, config: Path) -> None:
    pipeline = pipeline_for(db_url, config)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        pipeline.worker.stop()  # no worker: jobs pile up, durable
        specs = send(client, 10, intent="refund")
        pipeline.writer.call(pipeline.sessions.flush).result()
        assert ev.pending(pipeline.store.engine) == 10
        # A worker takes four jobs and dies before finishing them (lease taken, nothing written).
        claimed = ev.claim(pipeline.store.engine, 4, lease_s=0.5)
        assert len(claimed) == 4
        # One of them had in fact written its scores before dying: the rerun must not double them.
        rows = asyncio.run(pipeline.scorer.score(_view(pipeline, claimed[0].session_id)))
        pipeline.scorer.store_rows(claimed[0].project_id, _view(pipeline, claimed[0].session_id), rows, "complete")
    time.sleep(0.6)  # the dead worker's lease passes
    again = pipeline_for(db_url, config)
    with TestClient(create_app(again.settings, again)) as client:
        assert client.post("/api/v1/admin/flush").json()["evaluations_pending"] == 0
    for spec in specs:
        assert count_scores(again.store, session_id=spec.session_id, evaluator="answered") == 1
        assert count_scores(again.store, session_id=spec.session_id, evaluator="tools") == 1


def _view(pipeline: Pipeline, session_id: str):  # type: ignore[no-untyped-def]
    view = pipeline.scorer.load(pipeline.default_project_id, session_id)
    view.summary["project_id"] = pipeline.default_project_id
    return view


def test_concurrent_claims_never_share_a_job(db_url: str, config: Path) -> None:
    import concurrent.futures

    pipeline = pipeline_for(db_url, config)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        pipeline.worker.stop()
        send(client, 40, intent="billing")
        pipeline.writer.call(pipeline.sessions.flush).result()
        engine = pipeline.store.engine
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(lambda _: ev.claim(engine, 15), range(4)))
        ids = [job.id for batch in batches for job in batch]
        assert len(ids) == len(set(ids)) == 40, "every job claimed exactly once across concurrent workers"


def test_inline_evaluate_scores_now(db_url: str, config: Path) -> None:
    pipeline = pipeline_for(db_url, config)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        pipeline.worker.stop()
        [spec] = send(client, 1, intent="refund", tool_error_rate=1.0)
        answer = client.post("/api/v1/evaluate", json={"session_id": spec.session_id,
                                                      "evaluators": ["tools"]}).json()
        [score] = answer["scores"]
        assert score["evaluator"] == "tools" and score["passed"] is False and "lookup_order" in score["reason"]
        assert count_scores(pipeline.store, session_id=spec.session_id) == 1
        assert client.get(f"/api/v1/sessions/{spec.session_id}").json()["session"]["flagged"] is True
        bad = client.post("/api/v1/evaluate", json={"session_id": spec.session_id, "evaluators": ["nope"]})
        assert bad.status_code == 400 and "unknown evaluator" in bad.json()["error"]["message"]
        assert client.post("/api/v1/evaluate", json={"session_id": "missing"}).status_code == 404


def test_labels_record_the_scored_version_and_event_time(db_url: str, config: Path) -> None:
    from agentwatch.store.erase import erase_user

    pipeline = pipeline_for(db_url, config)
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        [spec] = send(client, 1, intent="refund", user_id="labelled-user")
        client.post("/api/v1/admin/flush")
        session = client.get(f"/api/v1/sessions/{spec.session_id}").json()
        version = next(s["evaluator_version"] for s in session["scores"] if s["evaluator"] == "answered")
        response = client.post("/api/v1/labels", json={"session_id": spec.session_id, "evaluator": "answered",
                                                       "verdict": "false_positive", "note": "fine", "author": "ana"})
        assert response.status_code == 201, response.text
        label = response.json()
        assert label["evaluator_version"] == version and label["event_time"] == session["session"]["end_time"]
        for body, field in [({"session_id": spec.session_id, "evaluator": "answered", "verdict": "maybe"}, "verdict"),
                            ({"session_id": spec.session_id, "verdict": "correct"}, "evaluator"),
                            ({"session_id": spec.session_id, "evaluator": "x", "verdict": "correct",
                              "expected_score": 2}, "expected_score")]:
            bad = client.post("/api/v1/labels", json=body)
            assert bad.status_code == 400 and field in bad.json()["error"]["message"]
        assert client.post("/api/v1/labels", json={"session_id": "nope", "evaluator": "answered",
                                                   "verdict": "correct"}).status_code == 404
    removed = erase_user(pipeline.store.engine, pipeline.default_project_id, "labelled-user")
    assert removed["labels"] == 1 and removed["sessions"] == 1
