"""Secrets never leak: a full run against a real server, then a grep of everything it left behind.

API keys (valid, revoked and wrong ones) and the judge's key must not appear in
the server log, in any API response (bodies and headers), nor in the database
file, where API keys are kept only as hashes.
"""

from __future__ import annotations

import itertools
import random
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

from agentwatch.store import models as m
from agentwatch.store.store import hash_key
from agentwatch.testing import ServerProcess, agent_session_request
from agentwatch.testing.judge import FakeJudgeServer, JudgeRequest, Reply

PB = {"content-type": "application/x-protobuf"}
KEY_ENV = "AW_TEST_SECRET_JUDGE_KEY"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentwatch.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=True)


def judge_handler(judge_key: str):  # type: ignore[no-untyped-def]
    """Answers that echo the key: 500s and 400s in the error message, a reason and raw text that name it."""
    counter = itertools.count()
    lock = threading.Lock()

    def handle(request: JudgeRequest) -> Reply:
        with lock:
            n = next(counter)
        kind = n % 5
        if kind == 0:
            return Reply.error(500, f"upstream failure for Authorization: Bearer {judge_key}")
        if kind == 1:
            return Reply.error(400, f"invalid request with api key {judge_key}")
        if kind == 2:
            return Reply(content=f"not a verdict; key={judge_key}")
        if kind == 3:
            return Reply.verdict(0.4, f"graded with key {judge_key}")
        return Reply.verdict(0.9, "fine")

    return handle


def test_no_secret_appears_in_logs_responses_or_the_database(tmp_path: Path) -> None:
    judge_key = "sk-judge-" + secrets.token_hex(20)
    db_path = tmp_path / "agentwatch.db"
    db_url = f"sqlite:///{db_path}"
    bodies: list[str] = []

    def keep(response: httpx.Response) -> httpx.Response:
        bodies.append(response.text)
        bodies.append("\n".join(f"{k}: {v}" for k, v in response.headers.items()))
        return response

    with FakeJudgeServer(api_key=judge_key, handler=judge_handler(judge_key)) as judge:
        config = tmp_path / "agentwatch.yaml"
        config.write_text(f"""
sampling: {{default_rate: 1.0}}
evaluators:
  - name: judged
    kind: llm
    sample_rate: 1.0
    threshold: 0.5
    params: {{base_url: '{judge.base_url}', api_key_env: {KEY_ENV}, model: gpt-4o-mini,
              prompt: 'Rate this answer: {{answer}}', max_retries: 1, backoff_base_s: 0.01,
              backoff_cap_s: 0.05, timeout_s: 5}}
  - {{name: tool_use, kind: rule, rule: tool_error, threshold: 1.0, sample_rate: 1.0}}
""")
        cli("migrate", "--database-url", db_url, cwd=tmp_path)
        alpha = cli("keys", "create", "--project", "alpha", "--database-url", db_url, cwd=tmp_path).stdout.strip()
        beta = cli("keys", "create", "--project", "beta", "--name", "b", "--database-url", db_url,
                   cwd=tmp_path).stdout.strip()
        revoked = cli("keys", "create", "--project", "alpha", "--name", "old", "--database-url", db_url,
                      cwd=tmp_path).stdout.strip()
        listed = cli("keys", "list", "--database-url", db_url, cwd=tmp_path)
        cli("keys", "revoke", revoked[:10], "--database-url", db_url, cwd=tmp_path)
        wrong = ["aw_" + secrets.token_urlsafe(32), "sk-wrong-" + secrets.token_hex(16)]
        api_keys = [alpha, beta, revoked]
        assert all(k.startswith("aw_") for k in api_keys)
        for key in api_keys:
            assert key not in listed.stdout + listed.stderr

        with ServerProcess(db_url, config=config, env={KEY_ENV: judge_key}, cwd=tmp_path,
                           extra_args=["--log-level", "debug"]) as server:
            rng = random.Random(3)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                def auth(key: str) -> dict[str, str]:
                    return {"authorization": f"Bearer {key}"}

                sessions = []
                for i, key in enumerate([alpha] * 6 + [beta] * 2):
                    request, spec = agent_session_request(rng, tool_calls=1, message_bytes=100,
                                                          tool_error_rate=0.3)
                    headers = {**PB, **(auth(key) if i % 2 else {"x-api-key": key})}
                    r = keep(client.post("/v1/traces", content=request.SerializeToString(), headers=headers))
                    assert r.status_code == 200, r.text
                    sessions.append((key, spec.session_id))
                request, _ = agent_session_request(rng, tool_calls=1)
                for key in [*wrong, revoked]:
                    for headers in (auth(key), {"x-api-key": key}):
                        r = keep(client.post("/v1/traces", content=request.SerializeToString(),
                                             headers={**PB, **headers}))
                        assert r.status_code == 401
                        assert keep(client.get("/api/v1/sessions", headers=headers)).status_code == 401
                        assert keep(client.post("/api/v1/admin/flush", headers=headers)).status_code == 401
                assert keep(client.get("/api/v1/sessions")).status_code == 401
                assert keep(client.get("/api/v1/sessions", headers={"authorization": f"Basic {alpha}"})
                            ).status_code == 401
                # Error endpoints, with a valid key.
                for method, path, kwargs in [
                    ("GET", "/api/v1/sessions?limit=abc", {}),
                    ("GET", f"/api/v1/sessions?bogus={alpha}", {}),
                    ("GET", "/api/v1/sessions/no-such-session", {}),
                    ("GET", "/api/v1/traces/zz", {}),
                    ("GET", "/api/v1/scores?cursor=bad", {}),
                    ("GET", "/no/such/endpoint", {}),
                    ("PUT", "/api/v1/sessions", {}),
                    ("DELETE", "/api/v1/sessions", {}),
                    ("POST", "/v1/traces", {"content": b"\x00garbage", "headers": PB}),
                    ("POST", "/v1/traces", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
                    ("POST", "/v1/logs", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
                    ("POST", "/api/v1/evaluate", {"content": b"not json"}),
                    ("POST", "/api/v1/evaluate", {"json": {"session_id": "missing"}}),
                ]:
                    headers = {**kwargs.pop("headers", {}), **auth(alpha)}
                    r = keep(client.request(method, path, headers=headers, **kwargs))
                    assert r.status_code >= 400, (method, path, r.status_code)
                for path in ("/healthz", "/readyz", "/openapi.json"):
                    assert keep(client.get(path)).status_code == 200
                assert keep(client.get("/metrics", headers=auth(alpha))).status_code == 200
                assert keep(client.get("/metrics")).status_code == 401
                for key in (alpha, beta):
                    flushed = keep(client.post("/api/v1/admin/flush", headers=auth(key)))
                    assert flushed.status_code == 200, flushed.text
                    assert keep(client.get("/api/v1/sessions", headers=auth(key))).status_code == 200
                    assert keep(client.get("/api/v1/scores", params={"limit": 1000},
                                           headers=auth(key))).status_code == 200
                evaluators = keep(client.get("/api/v1/evaluators", headers=auth(alpha))).json()["items"]
                assert any(e["name"] == "judged" for e in evaluators)
                for key, session_id in sessions:
                    assert keep(client.get(f"/api/v1/sessions/{session_id}", headers=auth(key))).status_code == 200
                inline = keep(client.post("/api/v1/evaluate", json={"session_id": sessions[0][1]},
                                          headers=auth(alpha)))
                assert inline.status_code == 200, inline.text
                erased = keep(client.delete("/api/v1/sessions", params={"user_id": "user-1"}, headers=auth(beta)))
                assert erased.status_code == 200 and erased.json()["removed"]["sessions"] == 2
        log = server.log()
        # The run exercised what it meant to: the judge was called with its key, and failed sometimes.
        calls = judge.requests
        assert calls, log[-4000:]
        assert all(r.headers.get("authorization") == f"Bearer {judge_key}" for r in calls)

    engine = create_engine(db_url)
    with engine.connect() as conn:
        statuses = set(conn.execute(select(m.scores.c.status).where(m.scores.c.evaluator == "judged")).scalars())
        hashes = set(conn.execute(select(m.api_keys.c.key_hash)).scalars())
    engine.dispose()
    assert "error" in statuses and "ok" in statuses, statuses
    assert "<redacted>" in "\n".join(bodies), "the judge echoed its key and the server scrubbed it"
    assert hashes == {hash_key(k) for k in api_keys}, "the api_keys table holds only hashes"

    database = b"".join(p.read_bytes() for p in tmp_path.glob("agentwatch.db*"))
    assert log.strip(), "the server wrote a log"
    places = {"server log": log, "API responses": "\n".join(bodies),
              "database file": database.decode("latin-1")}
    for name, secret in [("judge key", judge_key), *((f"API key {i}", k) for i, k in enumerate(api_keys + wrong))]:
        for place, text in places.items():
            assert secret not in text, f"the {name} appears in the {place}"
