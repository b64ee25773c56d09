"""docs/configuration.md against the code and the example configuration, in both directions.

The keys the code knows are read from the loaders themselves: each section is
given an unknown key, and the error it raises lists the known ones (every
loader names them: ``unknown setting (known: ...)``). So a key added to a
loader without a line in the reference, a line for a key that no loader
takes, or a key of ``examples/support-agent/agentwatch.yaml`` that the
reference does not list, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentwatch.alert.routes import load_routes
from agentwatch.errors import ConfigError
from agentwatch.evaluate.catalogue import load_catalogue
from agentwatch.evaluate.rules import RULES
from agentwatch.monitor.config import MonitorConfig
from agentwatch.monitor.slo import load_slos
from agentwatch.normalize.redact import Redactor
from agentwatch.settings import load_settings
from agentwatch.store.retention import RetentionPolicy

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "examples" / "support-agent" / "agentwatch.yaml"
PROBE = "zz_not_a_key"
_RULE = {"name": "e", "kind": "rule", "rule": "tool_error"}
_LOG = [{"type": "log", "name": "a"}]
LAYERS = ("system", "objective", "failure_mode")
NOTIFIER_TYPES = ("webhook", "slack", "pagerduty", "log")


def validate(path: Path) -> None:
    """Everything the server validates at start, section by section."""
    settings = load_settings(path)
    catalogue = load_catalogue(settings.sections, str(path))
    MonitorConfig.from_section(settings.sections.get("alerts"), str(path))
    load_slos(settings.sections, str(path), catalogue)
    load_routes(settings.sections, str(path))
    RetentionPolicy.from_section(settings.sections.get("retention"), str(path))
    Redactor.from_section(settings.sections.get("redaction"), str(path))


def known_keys(tmp_path: Path, config: dict[str, Any]) -> set[str]:
    """The keys a loader lists when ``config`` holds the probe key where the keys are asked for."""
    path = tmp_path / "agentwatch.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises((ConfigError, ValueError)) as caught:
        validate(path)
    message = str(caught.value)
    assert PROBE in message, message
    found = re.search(r"\bknown:? ([\w, ]+)", message) or re.search(r"unknown price \(([\w, ]+)\)", message)
    assert found, f"the error names no known keys: {message}"
    return {key.strip() for key in found.group(1).split(",")}


def probes() -> dict[str, dict[str, Any]]:
    """Documented prefix -> a config with the probe key under it."""
    out: dict[str, dict[str, Any]] = {
        "": {PROBE: 1},
        "sessions.": {"sessions": {PROBE: 1}},
        "ingest.": {"ingest": {PROBE: 1}},
        "evaluation.": {"evaluation": {PROBE: 1}},
        "pricing.MODEL.": {"pricing": {"m": {PROBE: 1}}},
        "sampling.": {"sampling": {PROBE: 1}},
        "evaluators[].": {"evaluators": [{**_RULE, PROBE: 1}]},
        "evaluators[].filter.": {"evaluators": [{**_RULE, "filter": {PROBE: 1}}]},
        "faithfulness.": {"evaluators": [{"name": "f", "kind": "faithfulness", "params": {PROBE: 1}}]},
        "llm.": {"evaluators": [{"name": "j", "kind": "llm",
                                 "params": {"base_url": "http://127.0.0.1:9", "model": "m", PROBE: 1}}]},
        "alerts.": {"alerts": {PROBE: 1}},
        "routes[].": {"routes": [{"match": {}, "notifiers": _LOG, PROBE: 1}]},
        "routes[].match.": {"routes": [{"match": {PROBE: 1}, "notifiers": _LOG}]},
        "routes[].match.labels.": {"routes": [{"match": {"labels": {PROBE: 1}}, "notifiers": _LOG}]},
        "retention.": {"retention": {PROBE: 1}},
        "redaction.": {"redaction": {PROBE: 1}},
        "redaction.patterns[].": {"redaction": {"patterns": [{PROBE: 1}]}},
    }
    for rule in RULES:
        out[f"{rule}."] = {"evaluators": [{"name": "e", "kind": "rule", "rule": rule, "params": {PROBE: 1}}]}
    for sub in ("drift", "clusters", "rare_events", "calibration", "no_data", "evaluator_errors", "repeat_interval"):
        out[f"alerts.{sub}."] = {"alerts": {sub: {PROBE: 1}}}
    return out


def reference_rows() -> dict[str, list[str]]:
    """Each documented key (the first cell of a table row) -> the row's other cells."""
    rows: dict[str, list[str]] = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([^`]+)` \|(.*)\|$", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is documented twice"
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def code_keys(tmp_path: Path) -> set[str]:
    keys: set[str] = set()
    for prefix, config in probes().items():
        keys |= {prefix + key for key in known_keys(tmp_path, config)}
    for layer in LAYERS:
        config = {"evaluators": [_RULE], "slos": [{"name": "s", "layer": layer, PROBE: 1}]}
        keys |= {"slos[]." + key for key in known_keys(tmp_path, config)}
    for kind in NOTIFIER_TYPES:
        config = {"routes": [{"match": {}, "notifiers": [{"type": kind, "name": "a", PROBE: 1}]}]}
        keys |= {"routes[].notifiers[]." + key for key in known_keys(tmp_path, config)}
    return keys


def test_every_key_the_code_knows_is_documented_and_every_documented_key_exists(tmp_path: Path) -> None:
    documented = set(reference_rows())
    known = code_keys(tmp_path)
    assert sorted(known - documented) == [], "keys the loaders take that docs/configuration.md does not list"
    assert sorted(documented - known) == [], "keys docs/configuration.md lists that no loader takes"


@pytest.mark.parametrize("layer", LAYERS)
def test_the_layers_of_each_slo_key_are_the_ones_the_loader_takes(tmp_path: Path, layer: str) -> None:
    config = {"evaluators": [_RULE], "slos": [{"name": "s", "layer": layer, PROBE: 1}]}
    taken = {"slos[]." + key for key in known_keys(tmp_path, config)}
    listed = {key for key, cells in reference_rows().items()
              if key.startswith("slos[].") and layer in cells[0].replace(" ", "").split(",")}
    assert listed == taken


@pytest.mark.parametrize("kind", NOTIFIER_TYPES)
def test_the_types_of_each_notifier_key_are_the_ones_the_loader_takes(tmp_path: Path, kind: str) -> None:
    config = {"routes": [{"match": {}, "notifiers": [{"type": kind, "name": "a", PROBE: 1}]}]}
    taken = {"routes[].notifiers[]." + key for key in known_keys(tmp_path, config)}
    listed = {key for key, cells in reference_rows().items()
              if key.startswith("routes[].notifiers[].") and kind in cells[0].replace(" ", "").split(",")}
    assert listed == taken


def example_keys(node: Any, prefix: str = "") -> set[str]:
    """Documented paths of every key in the example: list items as ``[]``, params by rule, judge or checker."""
    keys: set[str] = set()
    if isinstance(node, list):
        for item in node:
            keys |= example_keys(item, prefix + "[]")
        return keys
    if not isinstance(node, dict):
        return keys
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if prefix == "pricing":
            path = "pricing.MODEL"
        keys.add(path)
        if path == "evaluators[].params":
            owner = {"rule": node.get("rule"), "llm": "llm", "faithfulness": "faithfulness"}.get(node["kind"])
            if owner is not None:  # python evaluators take any params
                keys |= {f"{owner}.{param}" for param in value}
            continue
        if path in ("redaction.patterns", "routes[].notifiers") or not path.endswith(("params",)):
            if isinstance(value, (dict, list)):
                keys |= example_keys(value, path)
    return keys


def test_every_key_of_the_example_configuration_is_documented() -> None:
    keys = example_keys(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    # The nested values of these keys are data (a JSON Schema, {tool, field, match}), not configuration keys.
    keys = {k for k in keys if not re.match(r"(tool_schema\.result_schema|date_window\.date_from)\.", k)}
    assert len(keys) > 60
    assert sorted(keys - set(reference_rows())) == []


def test_the_example_configuration_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It loads with its judges off (no endpoint configured) and on (an endpoint configured)."""
    monkeypatch.delenv("AGENTWATCH_JUDGE_BASE_URL", raising=False)
    validate(EXAMPLE)
    off = load_catalogue(load_settings(EXAMPLE).sections, str(EXAMPLE))
    monkeypatch.setenv("AGENTWATCH_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    on = load_catalogue(load_settings(EXAMPLE).sections, str(EXAMPLE))
    judges = {s.name for s in on.specs if s.kind == "llm"}
    assert judges == {"goal_completion_judge", "tone_judge"}
    assert {s.name for s in on.specs} - {s.name for s in off.specs} == judges
