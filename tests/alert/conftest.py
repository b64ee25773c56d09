"""Loopback HTTP receivers that record what notifiers send, and a migrated database."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, delete

from agentwatch.store import models as m
from agentwatch.store.store import Store


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Receiver:
    """Answers the scripted statuses first (with their headers), then ``default``."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    default: int = 202
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *replies: int | tuple[int, dict[str, str]] | tuple[int, dict[str, str], str]) -> None:
        for reply in replies:
            if isinstance(reply, int):
                self.script.append((reply, {}, ""))
            elif len(reply) == 2:
                self.script.append((reply[0], reply[1], ""))
            else:
                self.script.append(reply)  # type: ignore[arg-type]

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.body for r in self.requests]


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def make() -> Receiver:
        rec = Receiver()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                import time

                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with rec.lock:
                    rec.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                 json.loads(raw) if raw else None, time.monotonic()))
                    status, headers, text = rec.script.pop(0) if rec.script else (rec.default, {}, "")
                data = (text or json.dumps({"status": "success"})).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        rec.url = f"http://127.0.0.1:{server.server_address[1]}"
        return rec

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def migrated(module_db: tuple[str, Any]) -> Iterator[Store]:
    """One migrated database per module and engine (creating one per test costs seconds on PostgreSQL)."""
    store = Store(module_db[0])
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def db(migrated: Store) -> Engine:
    """The module's database with no alerts, silences nor notifications."""
    with migrated.engine.begin() as conn:
        for table in (m.notifications, m.silences, m.alerts):
            conn.execute(delete(table))
    return migrated.engine
