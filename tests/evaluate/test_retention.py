"""Tail retention on event time: unsampled, unflagged payloads go first; flagged ones are kept longer."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from agentwatch.api.app import create_app
from agentwatch.errors import ConfigError
from agentwatch.pipeline import Pipeline
from agentwatch.sample import included
from agentwatch.store import models as m
from agentwatch.store.retention import RetentionPolicy
from agentwatch.store.store import Store
from agentwatch.testing import agent_session_request, configured_pipeline

T0 = 1_767_225_600_000_000_000
HOUR = 3600 * 10**9
DAY = 24 * HOUR
PB = {"content-type": "application/x-protobuf"}

CONFIG = """
sampling: {default_rate: 0.5}
retention: {payload_ttl: 1h, sampled: 2d, flagged: 2d}
evaluators:
  - {name: not_refund, kind: python, function: 'rchecks:not_refund', threshold: 1.0, sample_rate: 1.0}
"""


@pytest.fixture
def pipeline(db_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    yield configured_pipeline(db_url, tmp_path, CONFIG, {
        "rchecks": "def not_refund(s):\n    return 0.0 if s.intent == 'refund' else 1.0\n"})
    sys.modules.pop("rchecks", None)


def ids(sampled: bool, n: int) -> list[str]:
    out = []
    i = 0
    while len(out) < n:
        candidate = f"conv-ret-{i}"
        if included(candidate, 0.5) is sampled:
            out.append(candidate)
        i += 1
    return out


def payload(store: Store, session_id: str) -> tuple[int, int]:
    """(spans with a stored payload, spans in all) of a session."""
    s, p = m.spans.c, m.span_payloads.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(p.attributes).select_from(m.spans.outerjoin(
            m.span_payloads, (p.project_id == s.project_id) & (p.trace_id == s.trace_id) & (p.span_id == s.span_id)))
            .where(s.session_id == session_id)).all()
    return sum(1 for r in rows if r[0]), len(rows)


def test_retention_drops_by_class_and_age(pipeline: Pipeline) -> None:
    rng = random.Random(3)
    plain_old, plain_recent, plain_now = ids(False, 3)
    sampled_old, sampled_recent = ids(True, 2)
    layout = [  # (session id, start, intent) — flagged iff intent is refund
        (plain_old, T0, "billing"),
        ("conv-flag-old", T0, "refund"),
        (sampled_old, T0, "billing"),
        (plain_recent, T0 + int(2.5 * DAY), "billing"),
        ("conv-flag-recent", T0 + int(2.5 * DAY), "refund"),
        (sampled_recent, T0 + int(2.5 * DAY), "billing"),
        (plain_now, T0 + 3 * DAY, "billing"),
    ]
    with TestClient(create_app(pipeline.settings, pipeline)) as client:
        for session_id, start, intent in layout:
            request, _ = agent_session_request(rng, session_id=session_id, start_ns=start, intent=intent,
                                               tool_calls=1)
            assert client.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
        result = client.post("/api/v1/admin/flush").json()
        assert result["evaluations_pending"] == 0
        sessions = {s["session_id"]: s for s in client.get("/api/v1/sessions").json()["items"]}
    assert sessions["conv-flag-old"]["flagged"] and not sessions[plain_old]["flagged"]
    assert sessions[sampled_old]["sampled"] and not sessions[plain_old]["sampled"]
    store = pipeline.store
    dropped = {plain_old, "conv-flag-old", sampled_old, plain_recent}
    kept = {"conv-flag-recent", sampled_recent, plain_now}
    assert result["payloads_dropped"] == len(dropped)
    for session_id in dropped:
        with_payload, total = payload(store, session_id)
        assert total == 5 and with_payload == 0, session_id
    for session_id in kept:
        with_payload, total = payload(store, session_id)
        assert total == 5 and with_payload == 5, session_id
    # Rows and scores stay.
    assert set(sessions) == dropped | kept
    with store.engine.connect() as conn:
        scored = {r[0] for r in conn.execute(select(m.scores.c.session_id))}
    assert scored == dropped | kept


def test_retention_config_errors(tmp_path: Path) -> None:
    assert RetentionPolicy.from_section({"payload_ttl": "30m"}).payload_ttl_s == 1800
    with pytest.raises(ConfigError, match="retention.keep_all: unknown setting"):
        RetentionPolicy.from_section({"keep_all": True})
    with pytest.raises(ConfigError, match="retention.sampled: expected a duration"):
        RetentionPolicy.from_section({"sampled": "forever"})
