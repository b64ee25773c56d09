"""Erasure of one user's data, on both engines, through the API and the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from agentwatch.api.app import create_app
from agentwatch.cli import main
from agentwatch.pipeline import Pipeline
from agentwatch.settings import load_settings
from agentwatch.store import models as m
from agentwatch.store.erase import email_mark, erase_user, user_forms
from agentwatch.store.store import Store
from agentwatch.testing import agent_session_request, kv, make_span, traces_request

T0 = 1_767_225_600_000_000_000
PB = {"content-type": "application/x-protobuf"}
GONE = "erase-me-u1"
KEPT = "keep-me-u2"
EMAIL = "Erase.Me@Example.com"

CONFIG = """
sampling: {default_rate: 1.0}
evaluators:
  - {name: tool_use, kind: rule, rule: tool_error, threshold: 1.0, sample_rate: 1.0}
  - {name: external:helpfulness, kind: external, threshold: 0.7}
"""

ZERO = {"sessions": 0, "spans": 0, "scores": 0, "labels": 0}


def test_email_mark_and_forms() -> None:
    assert email_mark("a@b.co") == email_mark("A@B.CO")
    assert user_forms(" " + EMAIL + " ")[-1] == email_mark(EMAIL)
    assert email_mark("a@b.co").startswith("[email:") and len(email_mark("a@b.co")) == len("[email:12345678]")
    assert user_forms("user-1") == ["user-1"]
    assert user_forms(EMAIL) == [EMAIL, email_mark(EMAIL)]


class World:
    """Two projects' data: two users in alpha, the same user id in beta, an e-mail user in alpha."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.config = tmp_path / "agentwatch.yaml"
        self.config.write_text(CONFIG)
        store = Store(db_url)
        store.migrate()
        _, self.alpha_key = store.create_key("alpha")
        _, self.beta_key = store.create_key("beta")
        self.pipeline = Pipeline(load_settings(self.config, environ={}, database_url=db_url, decode_workers=0), store)
        self.alpha = store.ensure_project("alpha")
        self.beta = store.ensure_project("beta")
        self.rng = random.Random(7)
        self.sessions: dict[tuple[str, str], list[str]] = {}
        self.traces: dict[tuple[str, str], list[str]] = {}
        self.i = 0

    def headers(self, project: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.alpha_key if project == 'alpha' else self.beta_key}"}

    def send(self, client: TestClient, project: str, user: str, n: int, *, evaluation: bool = False) -> None:
        for _ in range(n):
            self.i += 1
            request, spec = agent_session_request(self.rng, start_ns=T0 + self.i * 10**9, tool_calls=2,
                                                  user_id=user, tool_error_rate=0.5)
            r = client.post("/v1/traces", content=request.SerializeToString(), headers={**PB, **self.headers(project)})
            assert r.status_code == 200, r.text
            self.sessions.setdefault((project, user), []).append(spec.session_id)
            self.traces.setdefault((project, user), []).append(spec.trace_id)
            if evaluation:
                logs = ExportLogsServiceRequest()
                record = logs.resource_logs.add().scope_logs.add().log_records.add(
                    trace_id=bytes.fromhex(spec.trace_id), span_id=bytes.fromhex(spec.span_ids[0]),
                    event_name="gen_ai.evaluation.result", observed_time_unix_nano=T0)
                record.attributes.extend([kv("gen_ai.evaluation.name", "helpfulness"),
                                          kv("gen_ai.evaluation.score.value", 0.9),
                                          kv("gen_ai.evaluation.explanation", f"fine for {user}")])
                r = client.post("/v1/logs", content=logs.SerializeToString(), headers={**PB, **self.headers(project)})
                assert r.status_code == 200, r.text

    def send_mixed(self, client: TestClient) -> str:
        """A session whose root names another user and whose child span names GONE."""
        session_id = "sess-mixed-erase-1"
        trace_id = "ab" * 16
        spans = [
            make_span(trace_id, "a1", name="invoke_agent mixed", start_ns=T0, duration_ms=50,
                      attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": session_id,
                                  "user.id": "anon-7"}),
            make_span(trace_id, "a2", parent="a1", name="chat", start_ns=T0 + 10**6,
                      attributes={"gen_ai.operation.name": "chat", "gen_ai.conversation.id": session_id,
                                  "user.id": GONE}),
        ]
        r = client.post("/v1/traces", content=traces_request(spans).SerializeToString(),
                        headers={**PB, **self.headers("alpha")})
        assert r.status_code == 200
        self.sessions.setdefault(("alpha", GONE), []).append(session_id)
        self.traces.setdefault(("alpha", GONE), []).append(trace_id)
        return session_id

    def populate(self, client: TestClient) -> None:
        self.send(client, "alpha", GONE, 3, evaluation=True)
        self.send_mixed(client)
        self.send(client, "alpha", KEPT, 2, evaluation=True)
        self.send(client, "beta", GONE, 2, evaluation=True)
        self.send(client, "alpha", EMAIL, 1)
        self.send(client, "alpha", email_mark(EMAIL), 1)
        for project in ("alpha", "beta"):
            flushed = client.post("/api/v1/admin/flush", headers=self.headers(project)).json()
            assert flushed["evaluations_pending"] == 0
        # One more session of GONE whose evaluation stays queued (no worker).
        self.pipeline.worker.stop()
        self.send(client, "alpha", GONE, 1)
        client.post("/api/v1/admin/flush", headers=self.headers("alpha"))
        assert self.count(m.eval_jobs, self.alpha) >= 1

    def count(self, table: Any, project_id: int, session_ids: list[str] | None = None) -> int:
        query = select(func.count()).select_from(table).where(table.c.project_id == project_id)
        if session_ids is not None:
            query = query.where(table.c.session_id.in_(session_ids))
        with self.pipeline.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def snapshot(self, project: str, user: str) -> dict[str, int]:
        pid = self.alpha if project == "alpha" else self.beta
        ids = self.sessions[(project, user)]
        return {"sessions": self.count(m.sessions, pid, ids), "spans": self.count(m.spans, pid, ids),
                "scores": self.count(m.scores, pid, ids)}

    def dump(self, project_id: int | None = None) -> str:
        """Every row of every table as text (of one project, and rows of no project)."""
        out = []
        with self.pipeline.store.engine.connect() as conn:
            for table in m.metadata.sorted_tables:
                query = select(table)
                if project_id is not None and "project_id" in table.c:
                    query = query.where(table.c.project_id == project_id)
                for row in conn.execute(query):
                    out.append(f"{table.name}: {json.dumps(list(row), default=str)}")
        return "\n".join(out)


def assert_erased(world: World, project: str, user: str) -> None:
    """Nothing of the user remains in any row of the project (nor in rows of no project)."""
    text = world.dump(world.alpha if project == "alpha" else world.beta)
    for needle in [user, *world.sessions[(project, user)], *world.traces[(project, user)]]:
        assert needle not in text, f"{needle!r} is still stored"


def test_api_erases_one_user_of_one_project(db_url: str, tmp_path: Path) -> None:
    world = World(db_url, tmp_path)
    with TestClient(create_app(world.pipeline.settings, world.pipeline)) as client:
        world.populate(client)
        kept = world.snapshot("alpha", KEPT)
        beta = world.snapshot("beta", GONE)
        before = world.snapshot("alpha", GONE)
        assert before["sessions"] == 5 and before["scores"] > 0
        eval_jobs = world.count(m.eval_jobs, world.alpha, world.sessions[("alpha", GONE)])
        assert eval_jobs == 1

        assert client.delete("/api/v1/sessions", headers=world.headers("alpha")).status_code == 400
        assert client.delete("/api/v1/sessions", params={"user_id": " "}, headers=world.headers("alpha")).status_code == 400
        assert client.delete("/api/v1/sessions", params={"user_id": GONE}).status_code == 401
        assert client.delete("/api/v1/sessions", params={"user_id": GONE, "x": "1"},
                             headers=world.headers("alpha")).status_code == 400

        r = client.delete("/api/v1/sessions", params={"user_id": GONE}, headers=world.headers("alpha"))
        assert r.status_code == 200, r.text
        assert r.json() == {"removed": {**before, "labels": 0}}
        assert world.snapshot("alpha", GONE) == {"sessions": 0, "spans": 0, "scores": 0}
        assert world.count(m.eval_jobs, world.alpha, world.sessions[("alpha", GONE)]) == 0
        with world.pipeline.store.engine.connect() as conn:
            e, ts = m.span_events.c, m.trace_sessions.c
            traces = world.traces[("alpha", GONE)]
            assert conn.execute(select(func.count()).select_from(m.span_events).where(
                e.project_id == world.alpha, e.trace_id.in_(traces))).scalar_one() == 0
            assert conn.execute(select(func.count()).select_from(m.trace_sessions).where(
                ts.project_id == world.alpha, ts.trace_id.in_(traces))).scalar_one() == 0
        assert_erased(world, "alpha", GONE)
        assert GONE in world.dump(world.beta)
        assert world.snapshot("alpha", KEPT) == kept, "the other user is intact"
        assert world.snapshot("beta", GONE) == beta, "the same user id in another project is intact"
        listed = client.get("/api/v1/sessions", params={"user_id": GONE}, headers=world.headers("alpha")).json()
        assert listed["items"] == []
        assert len(client.get("/api/v1/sessions", params={"user_id": GONE},
                              headers=world.headers("beta")).json()["items"]) == 2

        again = client.delete("/api/v1/sessions", params={"user_id": GONE}, headers=world.headers("alpha"))
        assert again.json() == {"removed": ZERO}

        # An e-mail address also removes the sessions stored under its redaction mark.
        r = client.delete("/api/v1/sessions", params={"user_id": EMAIL.lower()}, headers=world.headers("alpha"))
        assert r.json()["removed"]["sessions"] == 2
        text = world.dump()
        assert EMAIL not in text and email_mark(EMAIL) not in text
        assert world.snapshot("alpha", KEPT) == kept
        # The spans of a session arriving after the erasure are filed afresh, not under a stale cache.
        world.send(client, "alpha", GONE, 1)
        assert client.post("/api/v1/admin/flush", headers=world.headers("alpha")).status_code == 200


def test_cli_erases_like_the_api(db_url: str, tmp_path: Path) -> None:
    world = World(db_url, tmp_path)
    with TestClient(create_app(world.pipeline.settings, world.pipeline)) as client:
        world.populate(client)
    kept = world.snapshot("alpha", KEPT)
    beta = world.snapshot("beta", GONE)
    before = world.snapshot("alpha", GONE)
    world.pipeline.store.close()
    runner = CliRunner()
    args = ["erase", "--user-id", GONE, "--project", "alpha", "--config", str(world.config), "--database-url", db_url]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    counts = dict(part.split("=") for part in result.stdout.split())
    assert {k: int(v) for k, v in counts.items()} == {**before, "labels": 0}
    assert_erased(world, "alpha", GONE)
    assert GONE in world.dump(world.beta)
    assert world.snapshot("alpha", KEPT) == kept and world.snapshot("beta", GONE) == beta
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and again.stdout.split() == ["sessions=0", "spans=0", "scores=0", "labels=0"]
    missing = runner.invoke(main, ["erase", "--user-id", GONE, "--project", "nope", "--database-url", db_url])
    assert missing.exit_code != 0 and "no project 'nope'" in missing.output
    assert runner.invoke(main, ["erase", "--database-url", db_url]).exit_code != 0


def test_alerts_labels_and_failure_hits_are_erased(db_url: str, tmp_path: Path) -> None:
    """Labels and template hits of the user's sessions go; alerts keep their rows with the ids scrubbed."""
    from agentwatch.store import labels as label_store
    from agentwatch.store.models import utcnow

    world = World(db_url, tmp_path)
    with TestClient(create_app(world.pipeline.settings, world.pipeline)) as client:
        world.send(client, "alpha", GONE, 2)
        world.send(client, "alpha", KEPT, 1)
        client.post("/api/v1/admin/flush", headers=world.headers("alpha"))
    gone, kept = world.sessions[("alpha", GONE)], world.sessions[("alpha", KEPT)]
    engine = world.pipeline.store.engine
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(m.alerts.insert(), [{
            "project_id": world.alpha, "dedup_key": "k", "kind": "rare_event", "rule": "failure", "dimension": "d",
            "evaluator": "d", "evaluator_version": "v", "severity": "page", "state": "firing", "started_ns": 1,
            "detected_at": now, "updated_at": now, "summary": f"user {GONE} in {gone[0]} failed",
            "labels": {}, "figures": {"user": GONE}, "session_ids": [gone[1], kept[0]], "trace_ids": []}])
        conn.execute(m.template_hits.insert(), [
            {"project_id": world.alpha, "template_id": 1, "event_ns": 1, "session_id": sid, "user_id": None,
             "weight": 1.0, "message": "boom"} for sid in gone + kept])
    for session_id in gone + kept:
        label_store.add_label(engine, world.alpha, {"session_id": session_id, "evaluator": "answered",
                                                    "verdict": "correct", "expected_score": None,
                                                    "note": None, "author": None})
    removed = erase_user(engine, world.alpha, GONE)
    assert removed["labels"] == 2 and removed["sessions"] == 2
    with engine.connect() as conn:
        assert conn.execute(select(m.labels.c.session_id)).scalars().all() == kept
        # (the monitor mines the sessions' own failures too: only the kept user's hits remain)
        assert set(conn.execute(select(m.template_hits.c.session_id)).scalars().all()) == set(kept)
        summary, figures, session_ids = conn.execute(
            select(m.alerts.c.summary, m.alerts.c.figures, m.alerts.c.session_ids)).one()
    assert summary == "user [erased] in [erased] failed"
    assert figures == {"user": "[erased]"} and session_ids == ["[erased]", kept[0]]


def test_unknown_user_erases_nothing(db_url: str, tmp_path: Path) -> None:
    world = World(db_url, tmp_path)
    assert erase_user(world.pipeline.store.engine, world.alpha, "nobody") == ZERO
