"""Evaluation in processes of its own (``evaluation.workers``), through a real ``agentwatch serve``.

One of the server's two evaluation processes is killed with SIGKILL: the server starts another. Sessions
sent over OTLP/HTTP, before and after a second kill, are then scored exactly once per evaluator,
``/metrics`` adds up what the processes report, and stopping the server leaves no process behind. (A job
that a killed process held is taken again when its lease runs out; tests/evaluate/test_queue.py shows that.)
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from agentwatch.testing import ServerProcess, agent_session_request, child_processes

CONFIG = """
sessions:
  idle_timeout: 30s
  allowed_lateness: 0s
evaluation:
  workers: 2
evaluators:
  - name: tool_use
    kind: rule
    rule: tool_error
    threshold: 1.0
  - name: faithfulness
    kind: faithfulness
    threshold: 0.5
"""
PROTOBUF = {"content-type": "application/x-protobuf"}


def evaluation_processes(server_pid: int) -> list[int]:
    return [pid for pid, name in child_processes(server_pid) if name.startswith("aw-evaluate")]


def wait_for(condition, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout}s")


def send(server: ServerProcess, rng: random.Random, sessions: int, start_ns: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(sessions):
            request, spec = agent_session_request(rng, start_ns=start_ns + i * 10**9, message_bytes=200)
            response = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
            assert response.status_code == 200, response.text
            ids.append(spec.session_id)
    return ids


def test_sessions_are_scored_once_by_evaluation_processes_that_survive_a_kill(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "agentwatch.yaml"
    config.write_text(CONFIG)
    rng = random.Random(7)
    with ServerProcess(db_url, config=config, cwd=tmp_path, grpc=False) as server:
        assert server.proc is not None
        first = wait_for(lambda: len(found := evaluation_processes(server.proc.pid)) == 2 and found)
        os.kill(first[0], signal.SIGKILL)
        revived = wait_for(lambda: len(found := evaluation_processes(server.proc.pid)) == 2
                           and found != first and found)
        assert first[1] in revived and first[0] not in revived
        ids = send(server, rng, 30, time.time_ns() - 3600 * 10**9)
        ids += send(server, rng, 30, time.time_ns() - 1800 * 10**9)
        flushed = httpx.post(server.url + "/api/v1/admin/flush", timeout=120)
        assert flushed.status_code == 200, flushed.text
        assert flushed.json()["evaluations_pending"] == 0

        engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT session_id, evaluator, count(*) FROM scores "
                                         "GROUP BY session_id, evaluator")).all()
                queued = conn.execute(text("SELECT count(*) FROM eval_jobs")).scalar_one()
        finally:
            engine.dispose()
        assert queued == 0
        assert {(sid, name) for sid, name, _ in rows} == {(sid, name) for sid in ids
                                                          for name in ("tool_use", "faithfulness")}
        assert all(count == 1 for _, _, count in rows), [r for r in rows if r[2] != 1]

        def reported() -> dict[str, float]:
            metrics = httpx.get(server.url + "/metrics", timeout=30).text
            values: dict[str, float] = {}
            for line in metrics.splitlines():
                if line.startswith(("agentwatch_evaluations_done_total ", 'agentwatch_scores_total{evaluator="tool_use"')):
                    name, value = line.rsplit(" ", 1)
                    values[name] = values.get(name, 0.0) + float(value)
            return values

        # The processes report about once a second; the killed one's reports before its death stay counted.
        values = wait_for(lambda: (v := reported()).get("agentwatch_evaluations_done_total", 0) >= 50 and v)
        assert sum(v for k, v in values.items() if k.startswith("agentwatch_scores_total")) >= 50
    # The server stopped its evaluation processes on the way out (an orphan would outlive it).
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in revived), timeout=10)


def test_a_sigterm_to_the_server_and_its_processes_at_once_stops_them_all(db_url: str, tmp_path: Path) -> None:
    """As ``timeout``, a container runtime or a service manager stop a server: SIGTERM to every process."""
    config = tmp_path / "agentwatch.yaml"
    config.write_text(CONFIG)
    server = ServerProcess(db_url, config=config, cwd=tmp_path, grpc=False).start()
    try:
        assert server.proc is not None
        children = wait_for(lambda: len(found := evaluation_processes(server.proc.pid)) == 2 and found)
        send(server, random.Random(3), 5, time.time_ns() - 3600 * 10**9)
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)  # the signal reaches them first, wherever they are
        os.kill(server.proc.pid, signal.SIGTERM)
        # uvicorn shuts down gracefully, then raises the signal it caught again: -15 is a clean stop.
        assert server.proc.wait(30) in (0, -signal.SIGTERM), server.log()
        assert "Traceback" not in server.log() and "killing it" not in server.log(), server.log()
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), timeout=10)
    finally:
        server.kill()
