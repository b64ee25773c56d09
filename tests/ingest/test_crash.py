"""Crash safety: a 200 means the spans are durable, even across SIGKILL.

Several senders stream 1,100 agent sessions (22,000 spans). At a random
point, after at least five 200 answers and while requests are in flight,
the server is killed with SIGKILL. A new server on the same database must
hold every span of every request that was answered 200, each request's
spans must be all there or all absent (a request is committed in one
transaction), and every session row must agree with its spans. The senders
then resend what failed to the new server, and finally all 22,000 spans
are there exactly once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from agentwatch.testing import ServerProcess, agent_session_request

REQUESTS = 1100
SENDERS = 6
PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def stream() -> list[tuple[bytes, list[tuple[str, str]]]]:
    """1,100 requests of one 20-span session each: body and (trace id, span id) pairs."""
    rng = random.Random(2024)
    out = []
    for _ in range(REQUESTS):
        request, spec = agent_session_request(rng, message_bytes=120)
        out.append((request.SerializeToString(), [(spec.trace_id, s) for s in spec.span_ids]))
    assert sum(len(ids) for _, ids in out) >= 20_000
    return out


@pytest.fixture
def database(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'agentwatch.db'}"
        return
    dbs = request.getfixturevalue("pg_databases")
    name = dbs.create()
    try:
        yield dbs.url(name)
    finally:
        dbs.drop(name)


@dataclass
class Senders:
    """Worker threads that send every request once with 200, following the current server."""

    bodies: list[bytes]
    url: str
    next_index: int = 0
    answered: dict[int, int] = field(default_factory=dict)  # request index -> phase of its 200
    failures: list[tuple[int, int, float]] = field(default_factory=list)  # (index, phase, attempt start)
    unexpected: list[tuple[int, int, str]] = field(default_factory=list)
    phase: int = 1
    parked: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    resumed: threading.Event = field(default_factory=threading.Event)

    def _take(self) -> int | None:
        with self.cond:
            if self.next_index >= len(self.bodies):
                return None
            self.next_index += 1
            return self.next_index - 1

    def run(self) -> None:
        client = httpx.Client(timeout=30)
        index = self._take()
        while index is not None:
            with self.cond:
                url, phase = self.url, self.phase
            started = time.monotonic()
            try:
                response = client.post(url + "/v1/traces", content=self.bodies[index], headers=PROTOBUF)
            except httpx.TransportError:
                with self.cond:
                    self.failures.append((index, phase, started))
                    self.parked += 1
                    self.cond.notify_all()
                if phase != 1 or not self.resumed.wait(60):
                    return  # a second failure, or nobody restarted: the test fails on the counts
                client.close()
                client = httpx.Client(timeout=30)
                continue  # the same request again, to the new server
            with self.cond:
                if response.status_code == 200:
                    self.answered[index] = phase
                else:
                    self.unexpected.append((index, response.status_code, response.text[:200]))
                self.cond.notify_all()
            index = self._take()
        client.close()
        with self.cond:
            self.parked += 1
            self.cond.notify_all()


def _stored(url: str) -> tuple[set[tuple[str, str]], dict[str, tuple[int, int]]]:
    """Every (trace id, span id) in the database, and per session (row's span count, spans counted)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            spans = {(r[0], r[1]) for r in conn.execute(text("select trace_id, span_id from spans"))}
            counted = dict(conn.execute(text("select session_id, count(*) from spans group by session_id")).all())
            rows = dict(conn.execute(text("select session_id, spans from sessions")).all())
    finally:
        engine.dispose()
    sessions = {sid: (rows.get(sid, -1), counted.get(sid, 0)) for sid in set(rows) | set(counted)}
    return spans, sessions


def test_sigkill_loses_no_acknowledged_span(
    dialect: str, database: str, tmp_path: Path, stream: list[tuple[bytes, list[tuple[str, str]]]]
) -> None:
    seed = random.randrange(1_000_000)
    kill_after = random.Random(seed).randint(5, 900)
    about = f"(seed {seed}: kill after {kill_after} answers)"
    senders = Senders([body for body, _ in stream], url="")
    first = ServerProcess(database, cwd=tmp_path).start()
    second: ServerProcess | None = None
    threads = [threading.Thread(target=senders.run, name=f"sender-{i}", daemon=True) for i in range(SENDERS)]
    try:
        senders.url = first.url
        for thread in threads:
            thread.start()
        with senders.cond:
            assert senders.cond.wait_for(lambda: len(senders.answered) >= kill_after, timeout=40), about
            killed_at = time.monotonic()
        first.kill()
        assert first.proc is not None and first.proc.returncode == -9
        with senders.cond:
            assert senders.cond.wait_for(lambda: senders.parked == SENDERS, timeout=40), about
            acknowledged = [i for i, phase in senders.answered.items() if phase == 1]
            failed = [i for i, phase, _ in senders.failures if phase == 1]
            in_flight = [i for i, phase, started in senders.failures if phase == 1 and started < killed_at]
            assert not senders.unexpected, senders.unexpected[:3]
        assert len(acknowledged) >= max(5, kill_after), about
        assert len(acknowledged) < REQUESTS, f"the stream ended before the kill {about}"
        assert failed, f"no request failed after the kill {about}"
        assert in_flight, f"no request was in flight at the kill {about}"

        second = ServerProcess(database, cwd=tmp_path).start()
        spans, sessions = _stored(database)
        missing = [i for i in acknowledged if not set(stream[i][1]) <= spans]
        assert not missing, f"{len(missing)} requests answered 200 lost spans after SIGKILL {about}"
        for i in range(REQUESTS):
            present = len(set(stream[i][1]) & spans)
            assert present in (0, 20), f"request {i} is half stored ({present} of 20 spans) {about}"
        torn = {sid: counts for sid, counts in sessions.items() if counts[0] != counts[1]}
        assert not torn, f"session rows disagree with their spans: {list(torn.items())[:3]} {about}"
        # The in-flight requests were either committed whole or not at all; now resend everything unanswered.
        with senders.cond:
            senders.url, senders.phase = second.url, 2
        senders.resumed.set()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert not senders.unexpected, senders.unexpected[:3]
        assert sorted(senders.answered) == list(range(REQUESTS)), about
        assert not [f for f in senders.failures if f[1] == 2], "the restarted server failed requests"

        spans, sessions = _stored(database)
        expected = {pair for _, ids in stream for pair in ids}
        assert spans == expected
        assert len(sessions) == REQUESTS
        assert all(row == counted == 20 for row, counted in sessions.values()), about
        listed = httpx.get(f"{second.url}/api/v1/sessions", params={"limit": 5}, timeout=30).json()["items"]
        assert len(listed) == 5 and all(s["spans"] == 20 for s in listed)
    finally:
        senders.resumed.set()
        first.kill()
        if second is not None:
            second.stop()
