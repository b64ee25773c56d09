"""Role processes on one PostgreSQL database: two ingest, three workers, two monitor candidates on loopback.

Sessions stream through both ingest endpoints, the later ones with their turns
split between the two processes; mid-stream a worker and the
monitor that holds the lock are killed with SIGKILL. Afterwards every session
is stored once, every session is scored once per evaluator, the standby
monitor has taken over, and the replayed incident (one off-policy refund)
paged once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import create_engine, func, select

from agentwatch.store import models as m
from agentwatch.store.store import Store
from agentwatch.testing import ServerProcess
from agentwatch.traffic import Generator, send
from agentwatch.traffic.incidents import OffPolicyRefund

NS = 1_000_000_000
HOUR = 3600 * NS
START = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
INCIDENT = START + HOUR
END = START + 2 * HOUR
CONFIG = """\
project: roles
sessions: {idle_timeout: 5m, allowed_lateness: 1m}
evaluators:
  - name: tool_use
    kind: rule
    rule: tool_error
    threshold: 1.0
  - name: refund_policy
    kind: rule
    rule: date_window
    params:
      tool: refund_api
      date_from: {tool: lookup_order, field: delivered_on, match: [order_id]}
      max_days: 30
    threshold: 1.0
    severity: page
    owner: payments-oncall
    filter: {called_tool: refund_api}
"""
#: Processes take a killed worker's jobs again this soon, and decode and score in their own process.
ENV = {"AGENTWATCH_EVALUATION_LEASE": "5s", "AGENTWATCH_EVALUATION_WORKERS": "0", "AGENTWATCH_DECODE_WORKERS": "0"}


def test_sqlite_refuses_roles_other_than_all(tmp_path: Path) -> None:
    proc = ServerProcess(f"sqlite:///{tmp_path / 'a.db'}", grpc=False, extra_args=["--role", "worker"])
    with pytest.raises(RuntimeError, match="role worker needs PostgreSQL"):
        proc.start(timeout=30)


@pytest.fixture
def pg_url(pg_databases) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = pg_databases.create()
    try:
        yield pg_databases.url(name)
    finally:
        pg_databases.drop(name)


def split_by_trace(request: ExportTraceServiceRequest) -> tuple[ExportTraceServiceRequest, ExportTraceServiceRequest]:
    """The request's spans in two requests: those of its even traces (in order of appearance), and the rest."""
    order: dict[bytes, int] = {}
    halves = (ExportTraceServiceRequest(), ExportTraceServiceRequest())
    for rs in request.resource_spans:
        targets = [half.resource_spans.add() for half in halves]
        for target in targets:
            target.resource.CopyFrom(rs.resource)
        for ss in rs.scope_spans:
            scopes = [target.scope_spans.add() for target in targets]
            for scope in scopes:
                scope.scope.CopyFrom(ss.scope)
            for span in ss.spans:
                index = order.setdefault(span.trace_id, len(order))
                scopes[index % 2].spans.append(span)
    return halves


def _span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _holder(monitors: list[ServerProcess]) -> ServerProcess:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        holding = [p for p in monitors if "now runs the monitor" in p.log()]
        if holding:
            assert len(holding) == 1, [p.log() for p in monitors]
            return holding[0]
        time.sleep(0.2)
    raise AssertionError("no monitor candidate took the lock:\n" + "\n".join(p.log() for p in monitors))


def test_roles_share_the_work_and_survive_sigkill(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "agentwatch.yaml").write_text(CONFIG)
    Store(pg_url).migrate()  # once, before processes start side by side

    def role(name: str) -> ServerProcess:
        return ServerProcess(pg_url, config=tmp_path / "agentwatch.yaml", grpc=False, env=ENV, cwd=tmp_path,
                             extra_args=["--role", name])

    ingest = [role("ingest").start(timeout=60) for _ in range(2)]
    workers = [role("worker").start(timeout=60) for _ in range(3)]
    monitors = [role("monitor").start(timeout=60) for _ in range(2)]
    ui = role("ui").start(timeout=60)
    processes = [*ingest, *workers, *monitors, ui]
    try:
        # A process that does not ingest says where to send OTLP.
        refused = httpx.post(workers[0].url + "/v1/traces", content=b"", timeout=10)
        assert refused.status_code == 404 and "--role ingest" in refused.json()["error"]["message"]

        gen = Generator(7, START, sessions_per_hour=300, incidents=[OffPolicyRefund(INCIDENT)])
        sessions = []
        for index, start_ns in enumerate(gen.arrivals()):
            if start_ns >= END:
                break
            sessions.append(gen.session(index, start_ns))
        incident = [s.session_id for s in sessions if s.truth.policy_violations]
        assert len(incident) == 1
        half = len(sessions) // 2
        first, rest = sessions[:half], sessions[half:]
        # Both ingest endpoints at once: even sessions to one, odd to the other.
        sent = send(first[0::2], ingest[0].url, concurrency=4).sessions + send(first[1::2], ingest[1].url,
                                                                                  concurrency=4).sessions
        workers[0].kill()
        holder = _holder(monitors)
        holder.kill()
        standby = next(p for p in monitors if p is not holder)
        # The rest with each session's turns split: its even traces to one process, its odd ones to the other.
        halves = [split_by_trace(s.request) for s in rest]
        assert sum(1 for a, b in halves if _span_count(a) and _span_count(b)) >= len(rest) // 4  # multi-turn ones
        send([a for a, _ in halves if _span_count(a)], ingest[0].url, concurrency=4)
        send([b for _, b in halves if _span_count(b)], ingest[1].url, concurrency=4)
        assert sent == len(first)
        for proc in ingest:
            response = httpx.post(proc.url + "/api/v1/admin/flush", timeout=300)
            assert response.status_code == 200, response.text

        # The monitor checks every tick up to the last event's once the last sessions are scored.
        last_tick = max(s.end_ns for s in sessions) // (60 * NS) * (60 * NS)
        engine = create_engine(pg_url)
        try:
            deadline = time.monotonic() + 240
            while True:
                with engine.connect() as conn:
                    queued = conn.execute(select(func.count()).select_from(m.eval_jobs)).scalar_one()
                    alerts = conn.execute(select(m.alerts.c.kind, m.alerts.c.evaluator, m.alerts.c.session_ids)
                                          .where(m.alerts.c.kind == "rare_event")).all()
                    tick = conn.execute(select(m.monitor_state.c.last_tick_ns)).scalar()
                if not queued and alerts and tick is not None and tick >= last_tick:
                    break
                assert time.monotonic() < deadline, (queued, alerts, tick, standby.log()[-3000:])
                time.sleep(0.5)
            with engine.connect() as conn:
                stored = conn.execute(select(func.count()).select_from(m.sessions)).scalar_one()
                complete = conn.execute(select(func.count()).select_from(m.sessions)
                                        .where(m.sessions.c.complete.is_(True))).scalar_one()
                spans = conn.execute(select(func.count()).select_from(m.spans)).scalar_one()
                sc = m.scores.c
                twice = conn.execute(select(sc.session_id, sc.evaluator).group_by(sc.session_id, sc.evaluator)
                                     .having(func.count() > 1)).all()
                tool_use = conn.execute(select(func.count()).select_from(m.scores)
                                        .where(sc.evaluator == "tool_use")).scalar_one()
                refunds = conn.execute(select(func.count()).select_from(m.scores)
                                       .where(sc.evaluator == "refund_policy")).scalar_one()
                refunding = conn.execute(select(func.count(m.spans.c.session_id.distinct()))
                                         .where(m.spans.c.tool_name == "refund_api")).scalar_one()
        finally:
            engine.dispose()
        expected_spans = sum(len(ss.spans) for s in sessions for rs in s.request.resource_spans
                             for ss in rs.scope_spans)
        assert stored == complete == len(sessions)
        assert spans == expected_spans
        assert not twice
        assert tool_use == len(sessions)
        assert refunds == refunding > 0
        # The standby took over the monitor and paged the incident once, naming its session.
        assert "now runs the monitor" in standby.log()
        assert len(alerts) == 1 and alerts[0].evaluator == "refund_policy" and incident[0] in alerts[0].session_ids
    finally:
        for proc in processes:
            proc.stop()
