"""The sections of agentwatch.yaml read through one reader: every error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentwatch.errors import ConfigError
from agentwatch.monitor.config import MonitorConfig
from agentwatch.normalize.redact import Redactor
from agentwatch.settings import Section, load_settings
from agentwatch.store.retention import RetentionPolicy


def sections(tmp_path: Path, text: str) -> tuple[str, dict[str, Any]]:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(text)
    settings = load_settings(path, environ={})
    return str(path), settings.sections


def error_of(tmp_path: Path, text: str, read: Any, name: str) -> str:
    where, found = sections(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read(found.get(name), where)
    assert info.value.message.startswith(where + ", ")
    return info.value.message.removeprefix(where + ", ")


@pytest.mark.parametrize(("text", "expected"), [
    ("alerts:\n  drift:\n    window: soon\n", "line 3, key alerts.drift.window: expected a duration"),
    ("alerts:\n  drift:\n    z: -1\n", "line 3, key alerts.drift.z: expected a number >= 0.0, got -1"),
    ("alerts:\n  drift:\n    min_effect: 2\n", "line 3, key alerts.drift.min_effect: expected a number >= 0.0 and <= 1"),
    ("alerts:\n  drift:\n    statistic: median\n",
     "line 3, key alerts.drift.statistic: expected one of auto, mean, pass_rate, got 'median'"),
    ("alerts:\n  drift:\n    colour: red\n", "line 3, key alerts.drift.colour: unknown setting (known: baseline, "),
    ("alerts:\n  check_interval: 5m\n  colour: red\n", "line 3, key alerts.colour: unknown setting (known: "),
    ("alerts:\n  clusters: 3\n", "line 2, key alerts.clusters: expected a mapping"),
    ("alerts:\n  no_data:\n    services: [a, 3]\n", "line 3, key alerts.no_data.services: expected a list of names"),
    ("alerts:\n  check_interval: 7m\n", "line 2, key alerts.check_interval: must divide a day"),
])
def test_alerts_section_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text, MonitorConfig.from_section, "alerts")


def test_alerts_section_values(tmp_path: Path) -> None:
    where, found = sections(tmp_path, "alerts:\n  drift: {window: 2h, z: 3}\n  no_data: {services: checkout}\n"
                                      "  repeat_interval: {page: 1h}\n")
    config = MonitorConfig.from_section(found["alerts"], where)
    assert config.drift.window_s == 7200 and config.drift.z_threshold == 3.0 and config.drift.hold_s == 900
    assert config.no_data.services == ("checkout",) and config.repeat_interval_s == {"page": 3600, "ticket": 86400}


def test_retention_and_redaction_errors_list_keys_in_their_order(tmp_path: Path) -> None:
    message = error_of(tmp_path, "retention:\n  sampled: 3d\n  forever: 1d\n", RetentionPolicy.from_section,
                       "retention")
    assert message == "line 3, key retention.forever: unknown setting (known: payload_ttl, sampled, flagged)"
    message = error_of(tmp_path, "retention:\n  flagged: someday\n", RetentionPolicy.from_section, "retention")
    assert message.startswith("line 2, key retention.flagged: expected a duration")
    message = error_of(tmp_path, "redaction:\n  emails: yes please\n", Redactor.from_section, "redaction")
    assert message == "line 2, key redaction.emails: expected true or false, got 'yes please'"
    message = error_of(tmp_path, "redaction:\n  phones: true\n", Redactor.from_section, "redaction")
    assert message == "line 2, key redaction.phones: unknown setting (known: emails, cards, patterns)"


def test_a_missing_key_points_at_the_mappings_first_line() -> None:
    class Lined(dict):  # type: ignore[type-arg]
        lines = {"window": 7, "z": 8}

    error = Section("f.yaml", Lined(window=1, z=2), "alerts.drift").error("min_n", "required")
    assert error.message == "f.yaml, line 7, key alerts.drift.min_n: required"
    assert Section("f.yaml", {}, "").error("alerts", "expected a mapping").message == (
        "f.yaml, line ?, key alerts: expected a mapping")
