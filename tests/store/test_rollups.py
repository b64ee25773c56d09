"""Rollups: weighted sums per event-time minute, written with the scores and the completions, exactly once."""

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
from agentwatch.store import models as m
from agentwatch.store import rollups
from agentwatch.testing import agent_session_request, configured_pipeline

T0 = 1_767_225_600_000_000_000
MIN = rollups.MINUTE_NS
PB = {"content-type": "application/x-protobuf"}
CONFIG = """
sampling: {default_rate: 1.0}
evaluators:
  - {name: errors, kind: rule, rule: tool_error, threshold: 1.0}
  - {name: half, kind: python, function: 'rollchecks:half', threshold: 0.7, sample_rate: 0.5}
"""


@pytest.fixture
def pipeline(db_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    yield configured_pipeline(db_url, tmp_path, CONFIG, {
        "rollchecks": "def half(s):\n    return 0.5 if s.intent == 'refund' else 1.0\n"})
    sys.modules.pop("rollchecks", None)


def test_rollups_match_the_scores_they_summarize(pipeline: Pipeline) -> None:
    rng = random.Random(11)
    specs = []
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        for i in range(40):
            intent = "refund" if i % 2 else "billing"
            request, spec = agent_session_request(rng, start_ns=T0 + i * 20 * 10**9, tool_calls=2, intent=intent,
                                                  tool_error_rate=0.3)
            assert client.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
            specs.append((spec, intent))
        assert client.post("/api/v1/admin/flush").json()["evaluations_pending"] == 0
        # A second flush and a re-run of one session's scores must not count anything twice.
        client.post("/api/v1/admin/flush")
        client.post("/api/v1/evaluate", json={"session_id": specs[0][0].session_id})
    pid = pipeline.default_project_id
    with pipeline.store.engine.connect() as conn:
        end = T0 + 3600 * 10**9
        sessions = rollups.totals(conn, pid, rollups.SESSION_DIMENSION, since_ns=T0, until_ns=end)
        assert sessions.count == 40
        errors = rollups.totals(conn, pid, "errors", since_ns=T0, until_ns=end)
        assert errors.count == 40
        with_errors = sum(1 for spec, _ in specs if spec.tool_errors)
        assert errors.failures == with_errors and errors.weighted_failures == with_errors
        half = rollups.totals(conn, pid, "half", since_ns=T0, until_ns=end)
        sampled = [(spec, intent) for spec, intent in specs if included(spec.session_id, 0.5)]
        assert half.count == len(sampled)
        # Horvitz-Thompson: each score weighs 1 / 0.5.
        assert half.weighted_count == pytest.approx(2 * len(sampled))
        expected_sum = sum(2 * (0.5 if intent == "refund" else 1.0) for _, intent in sampled)
        assert half.weighted_sum == pytest.approx(expected_sum)
        refunds = rollups.totals(conn, pid, "half", since_ns=T0, until_ns=end, intent="refund")
        assert refunds.mean == pytest.approx(0.5) and refunds.failure_ratio == pytest.approx(1.0)
        # Buckets are event-time minutes: three sessions end in each minute here.
        minutes = conn.execute(select(func.count(func.distinct(m.rollups.c.minute_ns)))
                               .where(m.rollups.c.dimension == rollups.SESSION_DIMENSION)).scalar_one()
        assert 13 <= minutes <= 15
        p50 = rollups.quantile(conn, pid, "work_ms", 0.5, since_ns=T0, until_ns=end)
        p100 = rollups.quantile(conn, pid, "work_ms", 1.0, since_ns=T0, until_ns=end)
        assert p50 is not None and p100 is not None and 0 < p50 <= p100
        assert rollups.quantile(conn, pid, "cost_usd", 0.5, since_ns=end, until_ns=end + MIN) is None


def test_sketches_survive_their_bytes() -> None:
    sketch = rollups.new_sketch()
    for value in range(1, 1001):
        sketch.add(float(value))
    again = rollups.sketch_from_bytes(rollups.sketch_to_bytes(sketch))
    assert again.count == 1000
    assert again.get_quantile_value(0.5) == pytest.approx(500, rel=0.02)
    assert again.get_quantile_value(0.99) == pytest.approx(990, rel=0.02)
