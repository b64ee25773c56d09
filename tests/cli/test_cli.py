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
