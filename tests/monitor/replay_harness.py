"""Replays of generated traffic through a real server, for the monitor's tests.

A replay starts at 2026-01-01T00:00Z. Its prefix, the seed's steady traffic
up to 09:30 on day 3, is built once per seed and engine and copied for each
test; the test then sends the rest (with an incident switched on at 10:00 on
day 3, or more steady days) over OTLP/HTTP, flushes, and reads the alerts
through the API.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import httpx

from agentwatch.testing import ServerProcess
from agentwatch.testing.judge import FakeJudgeServer, JudgeRequest, Reply
from agentwatch.traffic import GeneratedSession, Generator, flush, send

NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 60 * MINUTE
DAY = 24 * HOUR
START = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
INCIDENT = START + 2 * DAY + 10 * HOUR  # 10:00 on day 3
PREFIX_END = INCIDENT - HOUR // 2
CONFIG = Path(__file__).with_name("agentwatch.yaml")
#: The fields of an alert that a replay must reproduce exactly (wall-time fields may differ).
STABLE = ("kind", "rule", "dimension", "evaluator_version", "severity", "labels", "started_at", "resolved_at",
          "session_ids")


def judge_reply(request: JudgeRequest) -> Reply:
    """A deterministic judge: most sessions are helpful, one in eight (by content) is not."""
    digest = sum(request.prompt.encode()) % 8
    return Reply.verdict(0.2 if digest == 0 else 0.9, "judged from the transcript")


def sessions_between(seed: int, since_ns: int, until_ns: int, incidents: Sequence[Any] = ()) -> Iterator[
        GeneratedSession]:
    """The seed's sessions that start in [since, until), without generating the earlier ones."""
    gen = Generator(seed, START, sessions_per_hour=120, incidents=list(incidents))
    for index, start_ns in enumerate(gen.arrivals()):
        if start_ns >= until_ns:
            return
        if start_ns >= since_ns:
            yield gen.session(index, start_ns)


@dataclass
class Replay:
    """One server on one database, with the loopback judge."""

    db_url: str
    judge: FakeJudgeServer
    server: ServerProcess = field(init=False)

    def __post_init__(self) -> None:
        self.server = ServerProcess(self.db_url, config=CONFIG, grpc=False,
                                    env={"AGENTWATCH_TEST_JUDGE_URL": self.judge.base_url})

    def __enter__(self) -> Replay:
        self.server.start(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def send(self, seed: int, since_ns: int, until_ns: int, incidents: Sequence[Any] = ()) -> int:
        result = send(sessions_between(seed, since_ns, until_ns, incidents), self.url, concurrency=8)
        return result.sessions

    def flush(self) -> dict[str, Any]:
        return flush(self.url, timeout=1800)

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = httpx.post(self.url + path, json=body, timeout=60)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def notifications(self) -> list[dict[str, Any]]:
        """The outbox rows the monitor wrote (what the notifiers were, or will be, sent), oldest first."""
        from sqlalchemy import create_engine, select

        from agentwatch.store import models as m

        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                n = m.notifications.c
                rows = conn.execute(select(n.alert_id, n.notifier, n.event).order_by(n.id)).all()
        finally:
            engine.dispose()
        return [dict(r._mapping) for r in rows]

    def alerts(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get("/api/v1/alerts", limit=1000, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return sorted(items, key=lambda a: (a["started_at"], a["kind"], a["rule"], a["id"]))


def stable(alerts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(repr(a[name]) for name in STABLE) for a in alerts]


def copy_sqlite(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an API time (``2026-01-03T10:05:00.000000000Z``)."""
    from datetime import UTC, datetime

    head, _, fraction = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
    return seconds * NS + int((fraction or "0").ljust(9, "0")[:9])
