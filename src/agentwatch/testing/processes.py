"""Real processes for tests and benchmarks: ``agentwatch serve`` on free ports, and their children.

``ServerProcess`` runs ``agentwatch serve`` on free loopback ports and waits
until it is ready; ``child_processes`` lists a process's children from
``/proc``. ``CHROMIUM_PATH`` and ``CHROMIUM_ARGS`` start the headless browser
of the dashboard's tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def child_processes(pid: int) -> list[tuple[int, str]]:
    """``(pid, name)`` of each live child of ``pid``, read from ``/proc`` (Linux): the name is what the
    process calls itself (``aw-evaluate-0``; ``python3`` for most)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                out.append((int(entry.name), (entry / "comm").read_text().strip()))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``agentwatch serve`` in a child process on free loopback ports."""

    def __init__(self, database_url: str, *, config: str | os.PathLike[str] | None = None, grpc: bool = True,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.config = config
        self.env = env or {}
        self.cwd = cwd
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        args = [sys.executable, "-m", "agentwatch.cli", "serve", "--port", str(self.port),
                "--grpc-port", str(self.grpc_port), "--database-url", self.database_url, *self.extra_args]
        if self.config:
            args += ["--config", str(self.config)]
        env = {**os.environ, **self.env}
        import tempfile

        log = tempfile.NamedTemporaryFile(prefix="agentwatch-server-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        self.proc = subprocess.Popen(args, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Headless Chromium for the dashboard's browser tests and screenshots: Debian's package, never a download.
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
