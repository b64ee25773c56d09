"""A changed evaluator makes a new version: old scores keep theirs, the new one shadow-scores its
baseline window, and backfill re-scores retained sessions."""

from __future__ import annotations

import random
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient

from agentwatch.api.app import create_app
from agentwatch.cli import main
from agentwatch.pipeline import Pipeline
from agentwatch.sample import included
from agentwatch.store import models as m
from agentwatch.store.store import Store
from agentwatch.testing import agent_session_request, configured_pipeline

T0 = 1_767_225_600_000_000_000
PB = {"content-type": "application/x-protobuf"}
CONFIG = """
sampling: {default_rate: 0.3}
retention: {payload_ttl: 30d}
evaluators:
  - {name: answered, kind: python, function: 'vchecks:answered', threshold: 0.5, sample_rate: 0.5}
"""


def start(db_url: str, tmp_path: Path, body: str) -> Pipeline:
    return configured_pipeline(db_url, tmp_path, CONFIG, {"vchecks": f"def answered(session):\n    return {body}\n"})


def scores(store: Store) -> list[tuple[str, str, bool]]:
    s = m.scores.c
    with store.engine.connect() as conn:
        return [(r[0], r[1], bool(r[2])) for r in conn.execute(select(s.session_id, s.evaluator_version, s.shadow))]


def test_edit_makes_a_new_version_with_shadow_scores_then_backfill(db_url: str, tmp_path: Path) -> None:
    rng = random.Random(5)
    first = start(db_url, tmp_path, "1.0")
    with TestClient(create_app(first.settings, first)) as client:
        session_ids = []
        for i in range(30):
            request, spec = agent_session_request(rng, start_ns=T0 + i * 60 * 10**9, tool_calls=1)
            client.post("/v1/traces", content=request.SerializeToString(), headers=PB)
            session_ids.append(spec.session_id)
        client.post("/api/v1/admin/flush")
        v1 = client.get("/api/v1/evaluators").json()["items"][0]["version"]
    v1_scores = scores(first.store)
    assert {sid for sid, _, _ in v1_scores} == {s for s in session_ids if included(s, 0.5)}
    assert {version for _, version, _ in v1_scores} == {v1}

    second = start(db_url, tmp_path, "0.9")
    with TestClient(create_app(second.settings, second)) as client:
        assert client.post("/api/v1/admin/flush").json()["evaluations_pending"] == 0
        listed = client.get("/api/v1/evaluators").json()["items"]
    versions = {item["version"]: item for item in listed}
    assert len(versions) == 2 and versions[v1]["current"] is False
    v2 = next(v for v, item in versions.items() if item["current"])
    after = scores(second.store)
    assert [r for r in after if r[1] == v1] == v1_scores, "old scores keep the old version"
    shadow = {sid for sid, version, is_shadow in after if version == v2}
    assert all(is_shadow for _, version, is_shadow in after if version == v2)
    # The session-level sample (0.3) and the evaluator's own sample (0.5) both hold; they nest.
    assert shadow == {s for s in session_ids if included(s, 0.3)}

    result = CliRunner().invoke(main, ["eval", "backfill", "--evaluator", "answered", "--since", "30d",
                                       "--config", str(tmp_path / "agentwatch.yaml"), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "queued 30 sessions" in result.output
    final = scores(second.store)
    assert {sid for sid, version, _ in final if version == v2} == {s for s in session_ids if included(s, 0.5)}
    assert len([r for r in final if r[1] == v2]) == len({s for s in session_ids if included(s, 0.5)})
