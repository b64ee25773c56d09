"""The routes section: matching order, continue, the log fallback, env expansion, errors naming line and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentwatch.alert.notifiers import PAGERDUTY_URL
from agentwatch.alert.routes import load_routes
from agentwatch.errors import ConfigError
from agentwatch.settings import load_file

CONFIG = """\
project: shop
routes:
  - match: {severity: page}
    notifiers:
      - {type: pagerduty, name: oncall, routing_key: "${AW_PD_KEY}"}
    continue: true
  - match:
      kind: [drift, burn_rate]
      labels: {service: support-agent}
    notifiers:
      - {type: slack, name: quality, url: "${AW_SLACK_URL}"}
      - type: webhook
        url: https://hooks.example.com/aw
        headers: {Authorization: "Bearer ${AW_HOOK_TOKEN}"}
  - match: {owner: billing-team}
    notifiers: []
"""
ENV = {"AW_PD_KEY": "R0UT1NGKEY0000000000000000000001", "AW_SLACK_URL": "https://hooks.slack.com/services/T/B/secret",
       "AW_HOOK_TOKEN": "tok-123"}


def sections(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "agentwatch.yaml"
    path.write_text(text)
    return load_file(path)["sections"], str(path)


def alert(**kw: Any) -> dict[str, Any]:
    base = {"kind": "drift", "severity": "ticket", "rule": "r", "evaluator": "faithfulness", "owner": None,
            "labels": {"service": "support-agent", "agent_version": "1.0", "intent": ""}}
    base.update(kw)
    return base


def test_routing_order_continue_fallback_and_secrets(tmp_path: Path) -> None:
    routes = load_routes(*sections(tmp_path, CONFIG), environ=ENV)
    names = lambda a: [n.name for n in routes.notifiers_for(a)]  # noqa: E731
    assert names(alert()) == ["quality", "webhook"]
    assert names(alert(severity="page")) == ["oncall", "quality", "webhook"]  # continue: true
    assert names(alert(severity="page", kind="no_data")) == ["oncall"]
    assert names(alert(kind="rare_event")) == ["log"]  # no route: the log notifier
    assert names(alert(labels={"service": "billing"})) == ["log"]
    assert names(alert(kind="rare_event", owner="billing-team")) == []  # an empty list drops them

    oncall = routes.notifier("oncall")
    assert oncall is not None and oncall.routing_key == ENV["AW_PD_KEY"] and oncall.url == PAGERDUTY_URL
    hook = routes.notifier("webhook")
    assert hook is not None and hook.headers == (("Authorization", "Bearer tok-123"),)
    assert routes.notifier("log") is routes.fallback and routes.notifier("nope") is None
    shown = repr(routes)
    assert all(secret not in shown for secret in ENV.values())


def test_no_routes_means_log(tmp_path: Path) -> None:
    routes = load_routes(*sections(tmp_path, "project: x\n"))
    assert [n.type for n in routes.notifiers_for(alert())] == ["log"]


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("routes: {a: 1}\n", 1, "routes", "expected a list"),
    ("routes:\n  - match: {colour: red}\n    notifiers: []\n", 2, "routes[0].match.colour", "unknown key"),
    ("routes:\n  - match: {kind: drfit}\n    notifiers: []\n", 2, "routes[0].match.kind", "unknown kind 'drfit'"),
    ("routes:\n  - match:\n      labels: {region: eu}\n    notifiers: []\n", 3, "routes[0].match.labels.region",
     "unknown label"),
    ("routes:\n  - match: {}\n", 2, "routes[0].notifiers", "required"),
    ("routes:\n  - notifiers:\n      - type: slack\n        name: s\n", 3, "routes[0].notifiers[0].url", "required"),
    ("routes:\n  - notifiers:\n      - {type: pagerduty}\n", 3, "routes[0].notifiers[0].routing_key", "required"),
    ("routes:\n  - notifiers:\n      - {type: sms, url: x}\n", 3, "routes[0].notifiers[0].type", "expected one of"),
    ("routes:\n  - notifiers:\n      - type: webhook\n        url: ftp://h/x\n", 4, "routes[0].notifiers[0].url",
     "http:// or https://"),
    ("routes:\n  - notifiers:\n      - type: slack\n        url: ${AW_UNSET_VAR}\n", 4,
     "routes[0].notifiers[0].url", "AW_UNSET_VAR is not set"),
    ("routes:\n  - notifiers:\n      - {type: slack, url: 'http://a', routing_key: k}\n", 3,
     "routes[0].notifiers[0].routing_key", "does not take"),
    ("routes:\n  - notifiers: [{type: slack, url: 'http://a'}]\n  - notifiers:\n      - {type: slack, url: 'http://b'}\n",
     4, "routes[1].notifiers[0].name", "already used"),
    ("routes:\n  - notifiers: [{type: log}]\n    continue: yes please\n", 3, "routes[0].continue", "true or false"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_routes(*sections(tmp_path, text), environ={})
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'agentwatch.yaml'}, line {line}, key {key}:"), message
    assert words in message


def test_url_values_never_appear_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_routes(*sections(tmp_path, "routes:\n  - notifiers:\n      - {type: slack, url: 'hooks.slack.com/T/B/xyzzy'}\n"))
    assert "xyzzy" not in str(err.value)
