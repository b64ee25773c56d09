"""The ``routes`` section of ``agentwatch.yaml``: which alerts go to which notifiers.

::

    routes:
      - match: {severity: page}
        notifiers:
          - {type: pagerduty, name: oncall, routing_key: "${PD_ROUTING_KEY}"}
        continue: true
      - match: {kind: [drift, burn_rate], labels: {service: support-agent}}
        notifiers:
          - {type: slack, name: quality-channel, url: "${SLACK_WEBHOOK_URL}"}
          - {type: webhook, name: tickets, url: https://tickets.example.com/hook, headers: {X-Team: quality}}

Routes are tried in order; the first whose ``match`` holds takes the alert,
unless it says ``continue: true``, in which case the next ones are tried too.
An alert that no route takes goes to the ``log`` notifier. Every key of a
``match`` must hold; a value may be one string or a list of them (any of).

``${VAR}`` in ``url``, ``routing_key`` and header values is replaced by the
environment variable, so secrets need not be in the file. The values of
``url``, ``routing_key`` and ``headers`` are never logged nor shown in errors.
Errors raise :class:`~agentwatch.errors.ConfigError` naming the file, line and key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from agentwatch.alert.notifiers import NOTIFIER_TYPES
from agentwatch.alert.types import KINDS, LABEL_NAMES, SEVERITIES
from agentwatch.errors import ConfigError
from agentwatch.settings import config_line

#: Name of the notifier that takes the alerts no route takes.
FALLBACK = "log"

_MATCH_KEYS = ("kind", "severity", "evaluator", "rule", "owner", "labels")
_ROUTE_KEYS = ("match", "notifiers", "continue")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Notifier:
    """One configured destination. The secret fields are left out of ``repr``."""

    type: str
    name: str
    url: str | None = field(default=None, repr=False)
    routing_key: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings to blank out of any error text about this notifier."""
        values = [self.url, self.routing_key, *(v for _, v in self.headers)]
        return tuple(v for v in values if v)


@dataclass(frozen=True)
class Match:
    """Every given field must hold; each holds when the alert's value is one of those listed."""

    kind: frozenset[str] | None = None
    severity: frozenset[str] | None = None
    evaluator: frozenset[str] | None = None
    rule: frozenset[str] | None = None
    owner: frozenset[str] | None = None
    labels: tuple[tuple[str, frozenset[str]], ...] = ()

    def matches(self, alert: Mapping[str, Any]) -> bool:
        for name in ("kind", "severity", "evaluator", "rule", "owner"):
            wanted: frozenset[str] | None = getattr(self, name)
            if wanted is not None and (alert.get(name) or "") not in wanted:
                return False
        labels = alert.get("labels") or {}
        return all((labels.get(name) or "") in wanted for name, wanted in self.labels)


@dataclass(frozen=True)
class Route:
    match: Match
    notifiers: tuple[Notifier, ...]
    continue_: bool = False


@dataclass(frozen=True)
class Routes:
    """The parsed section; :meth:`notifiers_for` answers where one alert goes."""

    routes: tuple[Route, ...] = ()
    fallback: Notifier = Notifier("log", FALLBACK)

    def notifiers_for(self, alert: Mapping[str, Any]) -> list[Notifier]:
        """The notifiers of the first matching route (and of the next ones while ``continue``), each once;
        the log notifier when no route matches."""
        out: dict[str, Notifier] = {}
        matched = False
        for route in self.routes:
            if not route.match.matches(alert):
                continue
            matched = True
            for notifier in route.notifiers:
                out.setdefault(notifier.name, notifier)
            if not route.continue_:
                break
        if not matched:
            return [self.fallback]
        return list(out.values())

    def notifier(self, name: str) -> Notifier | None:
        """The notifier of that name (the outbox refers to notifiers by name)."""
        if name == self.fallback.name:
            return self.fallback
        for route in self.routes:
            for notifier in route.notifiers:
                if notifier.name == name:
                    return notifier
        return None


def load_routes(sections: Mapping[str, Any], config_path: str | None = None, *,
                environ: Mapping[str, str] | None = None) -> Routes:
    """Validate the ``routes`` section of the parsed config (``Settings.sections``)."""
    where = config_path or "agentwatch.yaml"
    env = os.environ if environ is None else environ
    entries = sections.get("routes")
    if entries is None:
        return Routes()
    if not isinstance(entries, list):
        raise ConfigError(f"{where}, line {config_line(sections, 'routes')}, key routes: expected a list of "
                          "{match: {...}, notifiers: [...]}")
    parsed: list[Route] = []
    by_name: dict[str, tuple[Notifier, str]] = {}
    last_line = config_line(sections, "routes")
    for index, entry in enumerate(entries):
        at = f"routes[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}, line {last_line}, key {at}: expected a mapping with match and notifiers")
        last_line = config_line(entry, None)

        def fail(mapping: Any, key: str | None, dotted: str, message: str) -> ConfigError:
            return ConfigError(f"{where}, line {config_line(mapping, key)}, key {dotted}: {message}")

        for key in entry:
            if key not in _ROUTE_KEYS:
                raise fail(entry, key, f"{at}.{key}", f"unknown key (known: {', '.join(_ROUTE_KEYS)})")
        match = _match(entry, at, fail)
        cont = entry.get("continue", False)
        if not isinstance(cont, bool):
            raise fail(entry, "continue", f"{at}.continue", f"expected true or false, got {cont!r}")
        raw = entry.get("notifiers")
        if not isinstance(raw, list):
            raise fail(entry, "notifiers", f"{at}.notifiers",
                       "required: a list of notifiers like {type: slack, url: ...} (an empty list drops the alerts)")
        notifiers: list[Notifier] = []
        for n, item in enumerate(raw):
            dotted = f"{at}.notifiers[{n}]"
            if not isinstance(item, Mapping):
                raise fail(entry, "notifiers", dotted, f"expected a mapping with type ({', '.join(NOTIFIER_TYPES)})")
            notifier = _notifier(item, dotted, env, fail)
            seen = by_name.get(notifier.name)
            if seen is not None and seen[0] != notifier:
                raise fail(item, "name" if "name" in item else "type", f"{dotted}.name",
                           f"the name {notifier.name!r} is already used by a different notifier ({seen[1]}); "
                           "give each notifier its own name")
            if notifier.name == FALLBACK and notifier.type != "log":
                raise fail(item, "name", f"{dotted}.name", f"the name {FALLBACK!r} is kept for the log notifier")
            by_name.setdefault(notifier.name, (notifier, dotted))
            notifiers.append(notifier)
        parsed.append(Route(match, tuple(notifiers), cont))
    return Routes(tuple(parsed))


def _values(value: Any) -> frozenset[str] | None:
    if isinstance(value, str) and value:
        return frozenset([value])
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return frozenset(value)
    return None


def _match(entry: Mapping[str, Any], at: str, fail: Any) -> Match:
    raw = entry.get("match")
    if raw is None:
        return Match()
    if not isinstance(raw, Mapping):
        raise fail(entry, "match", f"{at}.match", f"expected a mapping of {', '.join(_MATCH_KEYS)}")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{at}.match.{key}"
        if key not in _MATCH_KEYS:
            raise fail(raw, key, dotted, f"unknown key (known: {', '.join(_MATCH_KEYS)})")
        if key == "labels":
            if not isinstance(value, Mapping):
                raise fail(raw, key, dotted, f"expected a mapping of {', '.join(LABEL_NAMES)}")
            labels = []
            for name, wanted in value.items():
                if name not in LABEL_NAMES:
                    raise fail(value, name, f"{dotted}.{name}", f"unknown label (known: {', '.join(LABEL_NAMES)})")
                values = _values(wanted)
                if values is None:
                    raise fail(value, name, f"{dotted}.{name}", "expected a string or a list of strings")
                labels.append((str(name), values))
            fields["labels"] = tuple(labels)
            continue
        values = _values(value)
        if values is None:
            raise fail(raw, key, dotted, "expected a string or a list of strings")
        allowed = {"kind": KINDS, "severity": SEVERITIES}.get(key)
        if allowed is not None and not values <= set(allowed):
            bad = sorted(values - set(allowed))[0]
            raise fail(raw, key, dotted, f"unknown {key} {bad!r} (known: {', '.join(allowed)})")
        fields[key] = values
    return Match(**fields)


def _expand(value: str, env: Mapping[str, str], fail: Any, mapping: Any, key: str, dotted: str) -> str:
    def sub(found: re.Match[str]) -> str:
        name = found.group(1)
        if not env.get(name):
            raise fail(mapping, key, dotted, f"the environment variable {name} is not set")
        return env[name]

    return _ENV.sub(sub, value)


def _notifier(item: Mapping[str, Any], dotted: str, env: Mapping[str, str], fail: Any) -> Notifier:
    kind = item.get("type")
    if kind not in NOTIFIER_TYPES:
        raise fail(item, "type", f"{dotted}.type", f"expected one of {', '.join(NOTIFIER_TYPES)}, got {kind!r}")
    notifier_type = NOTIFIER_TYPES[kind]
    allowed = notifier_type.keys
    for key in item:
        if key not in allowed:
            raise fail(item, key, f"{dotted}.{key}",
                       f"a {kind} notifier does not take {key} (known: {', '.join(sorted(allowed))})")
    name = item.get("name", kind)
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(item, "name", f"{dotted}.name", "expected a name of letters, digits, '.', '_' or '-'")

    def secret(key: str, required: bool) -> str | None:
        value = item.get(key)
        if value is None:
            if required:
                raise fail(item, "type", f"{dotted}.{key}", f"required for a {kind} notifier")
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(item, key, f"{dotted}.{key}", "expected a non-empty string")
        return _expand(value.strip(), env, fail, item, key, f"{dotted}.{key}")

    url = secret("url", "url" in notifier_type.requires)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # The value is not repeated: a webhook URL is a secret.
            raise fail(item, "url", f"{dotted}.url", "expected an http:// or https:// URL")
    routing_key = secret("routing_key", "routing_key" in notifier_type.requires)
    if url is None:
        url = notifier_type.default_url
    headers: list[tuple[str, str]] = []
    raw_headers = item.get("headers")
    if raw_headers is not None:
        if not isinstance(raw_headers, Mapping):
            raise fail(item, "headers", f"{dotted}.headers", "expected a mapping of header name to value")
        for header, value in raw_headers.items():
            if not isinstance(header, str) or not header or not isinstance(value, str):
                raise fail(raw_headers, header, f"{dotted}.headers.{header}", "expected a string value")
            headers.append((header, _expand(value, env, fail, raw_headers, header, f"{dotted}.headers.{header}")))
    return Notifier(type=kind, name=name, url=url, routing_key=routing_key, headers=tuple(headers))
