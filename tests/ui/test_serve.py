"""``agentwatch serve`` prints the dashboard's address, and an empty server tells a new user what to do next."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from agentwatch.testing import ServerProcess


def test_serve_prints_the_dashboard_and_an_empty_one_says_how_to_send_traces(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'empty.db'}", grpc=False, cwd=tmp_path).start(timeout=60)
    try:
        assert f"agentwatch dashboard: {server.url}/" in server.log()
        overview = httpx.get(server.url + "/", timeout=30)
        assert overview.status_code == 200
        text = overview.text
        assert "No sessions yet" in text
        assert f"OTEL_EXPORTER_OTLP_ENDPOINT={server.url}" in text and f"{server.url}/v1/traces" in text
        assert f"agentwatch replay --url {server.url}" in text
        sessions = httpx.get(server.url + "/sessions", timeout=30).text
        assert "No sessions yet" in sessions
        for path, hint in (("/clusters", "No failure clusters"), ("/evaluators", "No evaluators configured"),
                           ("/dimensions", "No evaluators"), ("/alerts", "No alerts")):
            page = httpx.get(server.url + path, timeout=30)
            assert page.status_code == 200 and hint in page.text, path
        assert not re.search(r'(?:src|href)="https?://(?!127\.0\.0\.1)', text)
    finally:
        server.stop()
