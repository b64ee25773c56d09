"""The worker claims, loads and writes in batches, and never loads back a session nothing scores."""

from __future__ import annotations

import random
import sys
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
'''

#: Only refund sessions have an applicable evaluator.
CONFIG = """
sampling: {default_rate: 0.5}
evaluators:
  - {name: answered, kind: python, function: 'bchecks:answered', threshold: 1.0, sample_rate: 1.0,
     filter: {intent: [refund]}}
  - {name: lookups, kind: rule, rule: tool_error, threshold: 1.0, sample_rate: 1.0,
     filter: {called_tool: lookup_order, intent: [billing]}}
"""


@pytest.fixture
def pipeline(db_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    (tmp_path / "bchecks.py").write_text(CHECKS)
    (tmp_path / "agentwatch.yaml").write_text(CONFIG)
    store = Store(db_url)
    store.migrate()
    yield Pipeline(load_settings(tmp_path / "agentwatch.yaml", environ={}, database_url=db_url, decode_workers=0),
                   store)
    sys.modules.pop("bchecks", None)


def send(client: TestClient, n: int, seed: int, **kw) -> list:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        request, spec = agent_session_request(rng, start_ns=T0 + i * 10**9, tool_calls=2, **kw)
        assert client.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
        specs.append(spec)
    return specs


def scores_by_session(pipeline: Pipeline) -> dict[str, int]:
    s = m.scores.c
    with pipeline.store.engine.connect() as conn:
        return dict(conn.execute(select(s.session_id, func.count()).group_by(s.session_id)).all())  # type: ignore[arg-type]


def test_every_session_of_a_large_batch_is_scored_and_marked_once(pipeline: Pipeline) -> None:
    pipeline.worker.batch = 7  # batches that do not divide the sessions evenly
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        refunds = send(client, 40, seed=1, intent="refund")
        others = send(client, 25, seed=2, intent="shipping")
        result = client.post("/api/v1/admin/flush").json()
        assert result["completed_sessions"] == 65 and result["evaluations_pending"] == 0
        counts = scores_by_session(pipeline)
        assert counts == {spec.session_id: 1 for spec in refunds}
        c = m.sessions.c
        with pipeline.store.engine.connect() as conn:
            rows = conn.execute(select(c.session_id, c.evaluated_at, c.sampled, c.flagged)).all()
        assert len(rows) == 65
        for session_id, evaluated_at, sampled, flagged in rows:
            assert evaluated_at is not None, f"{session_id} was never marked evaluated"
            assert sampled is included(session_id, 0.5)
            assert flagged is False
        rollup = m.rollups.c
        with pipeline.store.engine.connect() as conn:
            counted = conn.execute(select(func.sum(rollup.count)).where(rollup.dimension == "answered")).scalar()
        assert counted == 40, "each score is counted once in the rollups"
        assert {s.session_id for s in others}.isdisjoint(counts)


def test_a_session_nothing_scores_is_not_loaded_back(pipeline: Pipeline) -> None:
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        [refund] = send(client, 1, seed=3, intent="refund")
        [shipping] = send(client, 1, seed=4, intent="shipping")
        [billing] = send(client, 1, seed=5, intent="billing")  # calls lookup_order: the rule applies
        # A span of its own carrying an OpenInference evaluation: an external score, so it is loaded.
        [tagged] = send(client, 1, seed=6, intent="shipping")
        extra = traces_request([make_span(tagged.trace_id, "abc", parent=tagged.span_ids[-1], start_ns=T0,
                                          attributes={"evaluations.0.evaluation.name": "helpfulness",
                                                      "evaluations.0.evaluation.score": 0.9})])
        assert client.post("/v1/traces", content=extra.SerializeToString(), headers=PB).status_code == 200
        pipeline.worker.stop()  # claim the jobs here instead
        client.post("/api/v1/admin/flush")
        jobs = ev.claim(pipeline.store.engine, 10)
        prepared = {job.session_id: (view, skip) for job, view, skip in pipeline.scorer.prepare(jobs)}
    assert set(prepared) == {refund.session_id, shipping.session_id, billing.session_id, tagged.session_id}
    view, skip = prepared[shipping.session_id]
    assert skip and view is not None and view.spans == [] and view.end_ns > 0
    for spec in (refund, billing, tagged):
        view, skip = prepared[spec.session_id]
        assert not skip and view is not None and len(view.spans) >= len(spec.span_ids)
    tagged_view = prepared[tagged.session_id][0]
    assert tagged_view is not None
    assert any(span.evaluations for span in tagged_view.spans)


def test_a_session_gone_from_a_batch_drops_only_its_job(pipeline: Pipeline) -> None:
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        kept = send(client, 3, seed=7, intent="refund")
        gone = send(client, 2, seed=8, intent="refund")
        pipeline.worker.stop()
        client.post("/api/v1/admin/flush")
        assert ev.pending(pipeline.store.engine) == 5
        c = m.sessions.c
        with pipeline.store.engine.begin() as conn:  # as when a trace's spans move to the session it names
            conn.execute(m.sessions.delete().where(c.session_id.in_([s.session_id for s in gone])))
        pipeline.worker._stop.clear()  # noqa: SLF001 - start the same worker again
        pipeline.worker.start()
        result = client.post("/api/v1/admin/flush").json()
        assert result["evaluations_pending"] == 0
        counts = scores_by_session(pipeline)
    assert counts == {spec.session_id: 1 for spec in kept}
