"""Settings: file, environment and arguments, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.errors import ConfigError
from agentwatch.settings import SETTINGS, load_settings, parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert (s.project, s.idle_timeout, s.allowed_lateness) == ("default", 300.0, 60.0)
    assert s.database_url == "sqlite:///./agentwatch.db"
    assert s.intent_attributes == ("agentwatch.intent", "app.intent", "intent")


def test_file_then_environment_then_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, "project: support\nsessions: {idle_timeout: 2m, allowed_lateness: 30s}\n"
                           "pricing: {my-model: {input: 1.5, output: 3}}\n"
                           "database_url: sqlite:///from-file.db\n")
    s = load_settings(path, environ={"AGENTWATCH_DATABASE_URL": "sqlite:///from-env.db"})
    assert (s.project, s.idle_timeout, s.allowed_lateness) == ("support", 120.0, 30.0)
    assert s.pricing == {"my-model": {"input": 1.5, "output": 3.0}}
    assert s.database_url == "sqlite:///from-env.db"
    s = load_settings(path, environ={"AGENTWATCH_DATABASE_URL": "sqlite:///from-env.db"},
                      database_url="sqlite:///from-arg.db")
    assert s.database_url == "sqlite:///from-arg.db"


def test_sections_of_later_stages_are_kept(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "sampling: {default_rate: 0.1}\n"), environ={})
    assert s.sections == {"sampling": {"default_rate": 0.1}}


@pytest.mark.parametrize(("text", "expected"), [
    ("project: a\nsessions:\n  idle_timout: 5m\n", "line 3, key sessions.idle_timout: unknown setting"),
    ("project: a\nsessions:\n  idle_timeout: soon\n", "line 3, key sessions.idle_timeout: expected a duration"),
    ("project: a\nsesions: {}\n", "line 2, key sesions: unknown top-level key"),
    ("ingest:\n  max_body_bytes: -1\n", "line 2, key ingest.max_body_bytes: expected a positive integer"),
    ("pricing:\n  m: {input: cheap}\n", "line 1, key pricing: m.input: expected a price"),
    ("project: [unclosed\n", "line 2: the YAML does not parse"),
    ("- just\n- a list\n", "line 1: the top level must be a mapping"),
    ("sessions: 5\n", "line 1, key sessions: expected a mapping"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path) in info.value.message
    assert expected in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml", environ={})


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0),
                                                 ("14d", 14 * 86400.0), ("250ms", 0.25)])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "-1", True, "m"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_every_setting_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.key}`" in docs, f"docs/settings.md does not document {setting.key}"
