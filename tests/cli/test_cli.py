"""The command line, in-process: version, migrate, keys, and serve's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agentwatch import __version__
from agentwatch.cli import is_loopback, main
from agentwatch.store.engine import head_revision
from agentwatch.store.store import Store, hash_key


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version() -> None:
    result = run("version")
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_migrate_then_keys_lifecycle(db_url: str) -> None:
    result = run("migrate", "--database-url", db_url)
    assert result.exit_code == 0 and f"schema at revision {head_revision()}" in result.output
    created = CliRunner().invoke(main, ["keys", "create", "--project", "team-a", "--name", "ci",
                                        "--database-url", db_url])
    assert created.exit_code == 0
    plaintext = created.stdout.strip().splitlines()[0]
    assert plaintext.startswith("aw_") and len(plaintext) > 30
    store = Store(db_url)
    try:
        keys = store.active_keys()
        assert list(keys) == [hash_key(plaintext)], "only the hash is stored"
        listing = run("keys", "list", "--database-url", db_url).output
        assert "team-a" in listing and "active" in listing and plaintext not in listing
        assert run("keys", "revoke", plaintext[:10], "--database-url", db_url).exit_code == 0
        assert store.active_keys() == {}
        assert "revoked" in run("keys", "list", "--database-url", db_url).output
        missing = CliRunner().invoke(main, ["keys", "revoke", "aw_nothing", "--database-url", db_url])
        assert missing.exit_code != 0 and "no API key" in missing.output
    finally:
        store.close()


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--database-url",
                                       f"sqlite:///{tmp_path / 'a.db'}"])
    assert result.exit_code != 0
    assert "refusing to listen on 0.0.0.0 without API keys" in result.output


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "agentwatch.yaml"
    config.write_text("sessions:\n  idle_timeout: later\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config), "--database-url",
                                       f"sqlite:///{tmp_path / 'a.db'}"])
    assert result.exit_code != 0
    assert f"{config}, line 2, key sessions.idle_timeout" in result.output


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                ("0.0.0.0", False), ("10.1.2.3", False)])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.slow
def test_the_demo_fires_the_alerts_the_readme_promises(tmp_path: Path) -> None:
    """README's first command: the demo's history carries a new tool error and an off-policy refund; both alert."""
    import time

    import httpx

    from agentwatch.testing import ServerProcess

    with ServerProcess(f"sqlite:///{tmp_path / 'demo.db'}", grpc=False, cwd=tmp_path, extra_args=["--demo"]) as server:
        deadline = time.monotonic() + 400
        kinds: set[str] = set()
        alerts: list[dict[str, object]] = []
        while time.monotonic() < deadline and not {"rare_event", "new_cluster"} <= kinds:
            time.sleep(2)
            alerts = httpx.get(server.url + "/api/v1/alerts", timeout=30).json()["items"]
            kinds = {str(a["kind"]) for a in alerts}
        assert {"rare_event", "new_cluster"} <= kinds, server.log()[-3000:]
        rare = next(a for a in alerts if a["kind"] == "rare_event")
        assert rare["severity"] == "page" and rare["owner"] == "payments-oncall"
        assert str(rare["link"]).startswith(server.url + "/api/v1/alerts/")
        # The command printed the dashboard's address, and the overview shows the SLOs and these alerts.
        assert f"agentwatch dashboard: {server.url}/" in server.log()
        overview = httpx.get(server.url + "/", timeout=30).text
        for alert in alerts:
            if alert["state"] == "firing":
                assert f'data-alert-id="{alert["id"]}"' in overview
        for slo in httpx.get(server.url + "/api/v1/slos", timeout=30).json()["items"]:
            assert f'data-slo="{slo["name"]}"' in overview
