"""A judge that is down: ingest goes on, the backlog stays queued and bounded, and drains when it returns."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agentwatch.api.app import create_app
from agentwatch.pipeline import Pipeline
from agentwatch.settings import load_settings
from agentwatch.store import evaluations as ev
from agentwatch.store.store import Store
from agentwatch.testing import agent_session_request
from agentwatch.testing.judge import FakeJudgeServer, JudgeRequest, Reply

T0 = 1_767_225_600_000_000_000
PB = {"content-type": "application/x-protobuf"}


def test_backlog_waits_for_the_judge_and_drains(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"down": True}

    def answer(request: JudgeRequest) -> Reply:
        return Reply.error(503, "overloaded") if state["down"] else Reply.verdict(0.8, "fine")

    with FakeJudgeServer(handler=answer) as judge:
        (tmp_path / "agentwatch.yaml").write_text(
            "sampling: {default_rate: 1.0}\nevaluators:\n  - name: goal\n    kind: llm\n    params: {base_url: '"
            + judge.base_url + "', model: m, api_key_env: OUTAGE_JUDGE_KEY, max_retries: 0, timeout_s: 5}\n")
        store = Store(db_url)
        store.migrate()
        settings = load_settings(tmp_path / "agentwatch.yaml", environ={}, database_url=db_url, decode_workers=0)
        monkeypatch.setenv("OUTAGE_JUDGE_KEY", "k")
        pipeline = Pipeline(settings, store)
        pipeline.worker.retry_base_s = 0.2
        rng = random.Random(9)
        with TestClient(create_app(settings, pipeline)) as client:
            for i in range(20):
                request, _ = agent_session_request(rng, start_ns=T0 + i * 10**9, tool_calls=1)
                assert client.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
            pipeline.writer.call(pipeline.sessions.flush).result()
            deadline = time.monotonic() + 30
            while pipeline.worker.postponed < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pipeline.worker.postponed >= 20, "every session met the judge down"
            assert ev.pending(store.engine) == 20, "the backlog is the queue: one job per session, no more"
            assert client.get("/api/v1/scores").json()["items"] == [], "no error recorded while it may pass"
            # Ingest is never blocked by the judge.
            for i in range(20, 30):
                request, _ = agent_session_request(rng, start_ns=T0 + i * 10**9, tool_calls=1)
                started = time.monotonic()
                assert client.post("/v1/traces", content=request.SerializeToString(), headers=PB).status_code == 200
                assert time.monotonic() - started < 2.0
            state["down"] = False
            result = client.post("/api/v1/admin/flush").json()
            assert result["evaluations_pending"] == 0
            scores = client.get("/api/v1/scores", params={"limit": 100}).json()["items"]
        assert len(scores) == 30 and all(s["status"] == "ok" and s["score"] == 0.8 for s in scores)
