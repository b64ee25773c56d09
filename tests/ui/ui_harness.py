"""Servers for the dashboard's tests, filled once per engine by a replay and shared by the page and browser tests.

The replay is eight hours of the simulated shop from 2026-01-01T00:00Z, with
a tool failing in a way never seen before from 06:30 and off-policy refunds
from 07:00, then a flush: the monitor has checked every tick, so the SLOs,
drift series, clusters and the incidents' alerts are all in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentwatch.testing import ServerProcess
from agentwatch.traffic import INCIDENTS, Generator, flush, send

NS = 1_000_000_000
HOUR = 3600 * NS
START = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
END = START + 8 * HOUR
CONFIG = Path(__file__).with_name("agentwatch.yaml")


@dataclass
class Filled:
    """A running server with the replay in it, and the API read back as a page would show it."""

    server: ServerProcess
    sessions: int

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def page(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=60)


class Replays:
    """Each engine's filled server, started on first use and stopped at the end of the session."""

    def __init__(self, tmp: pytest.TempPathFactory, request: pytest.FixtureRequest) -> None:
        self.tmp = tmp
        self.request = request
        self.filled: dict[str, Filled] = {}
        self.cleanups: list[Any] = []

    def get(self, engine: str) -> Filled:
        if engine not in self.filled:
            self.filled[engine] = self._fill(engine)
        return self.filled[engine]

    def _fill(self, engine: str) -> Filled:
        folder = self.tmp.mktemp(f"ui-{engine}")
        if engine == "sqlite":
            url = f"sqlite:///{folder / 'agentwatch.db'}"
        else:
            dbs = self.request.getfixturevalue("pg_databases")
            name = dbs.create()
            self.cleanups.append(lambda: dbs.drop(name))
            url = dbs.url(name)
        server = ServerProcess(url, config=CONFIG, grpc=False, cwd=folder)
        server.start(timeout=60)
        self.cleanups.insert(0, server.stop)
        incidents = [INCIDENTS["new_tool_error"](START + 6 * HOUR + HOUR // 2),
                     INCIDENTS["off_policy_refund"](START + 7 * HOUR)]
        generator = Generator(seed=1, start_ns=START, sessions_per_hour=120, incidents=incidents)
        result = send(generator.sessions(until_ns=END), server.url, concurrency=8)
        flush(server.url, timeout=900)
        return Filled(server, result.sessions)

    def close(self) -> None:
        for cleanup in self.cleanups:
            cleanup()
