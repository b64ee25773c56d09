"""Settings: one frozen object, parsed once.

Precedence is explicit argument > ``AGENTWATCH_*`` environment variable >
``agentwatch.yaml`` > documented default. Only this module reads
``os.environ``. Every setting has a name, a default and help text in
:data:`SETTINGS`; ``docs/settings.md`` is checked against it by a test.

Durations in the config file are written ``30s``, ``5m``, ``1h``, ``14d`` (or a
bare number of seconds)::

    project: support-agent
    sessions: {idle_timeout: 5m, allowed_lateness: 1m}
    ingest: {max_body_bytes: 67108864, max_inflight_bytes: 134217728}
    pricing: {my-model: {input: 0.5, output: 1.5}}

A file that does not parse, or a key that is unknown or has the wrong type,
raises :class:`~agentwatch.errors.ConfigError` naming the file, line and key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from agentwatch.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./agentwatch.db"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"14d"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 5m, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 30s, 5m, 1h or 14d, got {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class Setting:
    """One documented setting: its dotted key in the file, default and help."""

    key: str
    default: Any
    help: str
    cast: Callable[[Any], Any]
    env: str | None = None


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _non_negative_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number >= 0, got {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _pricing(value: object) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of model name to {input, output, cache_read} prices")
    out: dict[str, dict[str, float]] = {}
    for model, prices in value.items():
        if not isinstance(prices, dict) or not prices:
            raise ValueError(f"{model}: expected {{input: usd_per_mtok, output: usd_per_mtok}}")
        for name, price in prices.items():
            if name not in ("input", "output", "cache_read", "cache_write"):
                raise ValueError(f"{model}.{name}: unknown price (input, output, cache_read, cache_write)")
            if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
                raise ValueError(f"{model}.{name}: expected a price in USD per million tokens, got {price!r}")
        out[str(model)] = {k: float(v) for k, v in prices.items()}
    return out


def _workers(value: object) -> int:
    if value == "auto":
        return -1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected auto or a number of processes (0: in the server process), got {value!r}")
    return value


def _synchronous(value: object) -> str:
    if value not in ("normal", "full"):
        raise ValueError(f"expected normal or full, got {value!r}")
    return str(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("project", "default", "Name of the project that data without an API key belongs to.", _str,
            "AGENTWATCH_PROJECT"),
    Setting("database_url", DEFAULT_DATABASE_URL,
            "SQLAlchemy URL of the store: sqlite:///path.db (default) or postgresql://user@host/db.", _str,
            "AGENTWATCH_DATABASE_URL"),
    Setting("public_url", None, "Base URL under which the server is reached; links in alerts use it.", _str,
            "AGENTWATCH_PUBLIC_URL"),
    Setting("sessions.idle_timeout", 300.0, "Event-time inactivity after which a session is complete.",
            parse_duration),
    Setting("sessions.allowed_lateness", 60.0, "How far behind the largest event time the watermark trails.",
            parse_duration),
    Setting("sessions.intent_attributes", ("agentwatch.intent", "app.intent", "intent"),
            "Span attributes read, in order, for a session's intent.", _str_list),
    Setting("ingest.max_body_bytes", 64 * 1024 * 1024,
            "Largest OTLP request body accepted, after decompression (413 beyond).", _positive_int),
    Setting("ingest.max_inflight_bytes", 128 * 1024 * 1024,
            "Bytes of requests decoded but not yet committed; beyond it ingest answers 429.", _positive_int),
    Setting("ingest.memory_limit_mb", 0,
            "Resident memory above which ingest answers 429 until it is back under (0: no limit).", _non_negative_int),
    Setting("ingest.max_batch_spans", 20000, "Most spans the writer commits in one transaction.", _positive_int),
    Setting("ingest.decode_workers", "auto",
            "Processes that decode and normalize OTLP/HTTP trace bodies: auto (one per core but one, at most 4) "
            "or a number; 0 decodes in the server process.", _workers, "AGENTWATCH_DECODE_WORKERS"),
    Setting("evaluation.workers", "auto",
            "Processes that score completed sessions: auto (one when the machine has two cores or more, else 0) "
            "or a number; 0 scores in the server process.", _workers, "AGENTWATCH_EVALUATION_WORKERS"),
    Setting("evaluation.lease", 300.0,
            "How long a claimed evaluation job is a worker's; a job whose worker died is taken again after it.",
            parse_duration, "AGENTWATCH_EVALUATION_LEASE"),
    Setting("ingest.sqlite_synchronous", "normal",
            "SQLite synchronous mode: normal survives a process crash, full also a power loss.", _synchronous),
    Setting("pricing", {}, "Extra or overriding model prices in USD per million tokens.", _pricing),
)

_BY_KEY = {s.key: s for s in SETTINGS}
_SECTIONS_OF_LATER_STAGES = {
    "sampling", "evaluators", "slos", "alerts", "routes", "retention", "redaction",
}


@dataclass(frozen=True)
class Settings:
    """Every setting, resolved. Components receive plain values from it."""

    project: str = "default"
    database_url: str = DEFAULT_DATABASE_URL
    public_url: str | None = None
    idle_timeout: float = 300.0
    allowed_lateness: float = 60.0
    intent_attributes: tuple[str, ...] = ("agentwatch.intent", "app.intent", "intent")
    max_body_bytes: int = 64 * 1024 * 1024
    max_inflight_bytes: int = 128 * 1024 * 1024
    max_batch_spans: int = 20000
    memory_limit_mb: int = 0
    #: -1 means auto.
    decode_workers: int = -1
    #: -1 means auto.
    evaluation_workers: int = -1
    evaluation_lease: float = 300.0
    sqlite_synchronous: str = "normal"
    pricing: dict[str, dict[str, float]] = field(default_factory=dict)
    config_path: str | None = None
    #: The top-level sections of the file that later stages read, kept as parsed.
    sections: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **values: Any) -> Settings:
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    @property
    def decode_processes(self) -> int:
        """How many decode worker processes to run."""
        if self.decode_workers >= 0:
            return self.decode_workers
        return max(0, min(4, (os.cpu_count() or 1) - 1))

    @property
    def evaluation_processes(self) -> int:
        """How many evaluation processes ``serve`` runs (0: the server process scores)."""
        if self.evaluation_workers >= 0:
            return self.evaluation_workers
        return 1 if (os.cpu_count() or 1) >= 2 else 0


_FIELD_OF_KEY = {
    "project": "project",
    "database_url": "database_url",
    "public_url": "public_url",
    "sessions.idle_timeout": "idle_timeout",
    "sessions.allowed_lateness": "allowed_lateness",
    "sessions.intent_attributes": "intent_attributes",
    "ingest.max_body_bytes": "max_body_bytes",
    "ingest.max_inflight_bytes": "max_inflight_bytes",
    "ingest.max_batch_spans": "max_batch_spans",
    "ingest.memory_limit_mb": "memory_limit_mb",
    "ingest.decode_workers": "decode_workers",
    "evaluation.workers": "evaluation_workers",
    "evaluation.lease": "evaluation_lease",
    "ingest.sqlite_synchronous": "sqlite_synchronous",
    "pricing": "pricing",
}


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    lines = {}
    for key_node, _ in node.value:
        lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
    return _Mapping(mapping, lines)


class _Mapping(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict[Any, Any], lines: dict[Any, int]):
        super().__init__(data)
        self.lines = lines


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(mapping: object, key: str) -> int | None:
    return getattr(mapping, "lines", {}).get(key)


def config_line(mapping: object, key: str | None) -> str:
    """For error messages: the config line of ``key`` in a parsed mapping; for a key that is missing (or
    None), the line where the mapping starts; ``?`` for a mapping that was not read from a file."""
    lines: dict[Any, int] = getattr(mapping, "lines", {})
    line = lines.get(key) if key is not None else None
    if line is None and lines:
        line = min(lines.values())
    return str(line) if line is not None else "?"


class Section:
    """One mapping of ``agentwatch.yaml`` read key by key; every error names the file, the line and the key.

    ``dotted`` is the mapping's path (``alerts.drift``, ``evaluators[2]``); an
    error about ``key`` reads ``<file>, line <n>, key <dotted>.<key>: <message>``,
    the line being the key's own, or the mapping's first when the key is missing.

    >>> Section("agentwatch.yaml", {"z": "x"}, "alerts.drift").number("z", 4.0)
    Traceback (most recent call last):
    ...
    agentwatch.errors.ConfigError: agentwatch.yaml, line ?, key alerts.drift.z: expected a number >= 0.0, got 'x'
    """

    def __init__(self, where: str, mapping: Mapping[str, Any], dotted: str) -> None:
        self.where = where
        self.mapping = mapping
        self.dotted = dotted

    def error(self, key: str | None, message: str) -> ConfigError:
        """The error about ``key`` (None: about the mapping itself)."""
        dotted = self.dotted if key is None else f"{self.dotted}.{key}" if self.dotted else key
        return ConfigError(f"{self.where}, line {config_line(self.mapping, key)}, key {dotted}: {message}")

    def only(self, known: Iterable[str]) -> Section:
        """Refuse a key not in ``known`` (listed in its order, a set sorted); answers the section."""
        listed = sorted(known) if isinstance(known, (set, frozenset)) else list(dict.fromkeys(known))
        for key in self.mapping:
            if key not in listed:
                raise self.error(key, f"unknown setting (known: {', '.join(listed)})")
        return self

    def section(self, key: str, known: Iterable[str]) -> Section:
        """The mapping under ``key`` (absent or empty: an empty one), refusing keys not in ``known``."""
        value = self.mapping.get(key) or {}
        if not isinstance(value, Mapping):
            raise self.error(key, "expected a mapping")
        return Section(self.where, value, f"{self.dotted}.{key}" if self.dotted else key).only(known)

    def duration(self, key: str, default: float) -> float:
        if key not in self.mapping:
            return default
        try:
            return parse_duration(self.mapping[key])
        except ValueError as exc:
            raise self.error(key, str(exc)) from exc

    def number(self, key: str, default: float, *, low: float = 0.0, high: float | None = None) -> float:
        if key not in self.mapping:
            return default
        value = self.mapping[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
                high is not None and value > high):
            bound = f"a number >= {low}" + (f" and <= {high}" if high is not None else "")
            raise self.error(key, f"expected {bound}, got {value!r}")
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        """One of ``choices``; the first when the key is missing."""
        value = self.mapping.get(key, choices[0])
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def names(self, key: str, *, among: tuple[str, ...] | None = None, noun: str = "names",
              default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A name or a list of names (``among``: each one of those, ``noun`` saying what they are)."""
        if key not in self.mapping:
            return default
        value = self.mapping[key]
        if isinstance(value, str):
            value = [value]
        if among is None:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise self.error(key, "expected a list of names")
        elif not isinstance(value, list) or not all(isinstance(v, str) and v in among for v in value):
            raise self.error(key, f"expected a list of {noun} among {', '.join(among)}, got {value!r}")
        return tuple(value)


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and validate a config file into ``{setting field: value}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the config file is not UTF-8 text: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = getattr(exc, "position", None)
        if mark is not None:
            where = f"line {mark.line + 1}"
        elif position is not None:  # a character YAML does not allow (a NUL, a control character)
            where = f"line {text[:position].count(chr(10)) + 1}"
        else:
            where = "unknown line"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}, {where}: the YAML does not parse: {problem}") from exc
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # A tagged or implicit scalar its constructor refuses (``!!int x``, ``2020-13-45``).
        raise ConfigError(f"{path}, line {_failing_scalar_line(text)}: a value cannot be read: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}, line 1: the top level must be a mapping of settings")
    sections = _Mapping({}, {})
    values: dict[str, Any] = {"sections": sections}
    for key, value in data.items():
        line = _line_of(data, key)
        if key in _SECTIONS_OF_LATER_STAGES:
            sections[key] = value
            if line is not None:
                sections.lines[key] = line
            continue
        if key in ("project", "database_url", "public_url", "pricing"):
            _set(values, path, line, key, value)
            continue
        if key in ("sessions", "ingest", "evaluation"):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}, line {line}, key {key}: expected a mapping")
            for sub, subvalue in value.items():
                dotted = f"{key}.{sub}"
                if dotted not in _BY_KEY:
                    known = ", ".join(k.split(".", 1)[1] for k in _BY_KEY if k.startswith(key + "."))
                    raise ConfigError(
                        f"{path}, line {_line_of(value, sub)}, key {dotted}: unknown setting (known: {known})"
                    )
                _set(values, path, _line_of(value, sub), dotted, subvalue)
            continue
        known = ", ".join(sorted({k.split(".")[0] for k in _BY_KEY} | _SECTIONS_OF_LATER_STAGES))
        raise ConfigError(f"{path}, line {line}, key {key}: unknown top-level key (known: {known})")
    return values


def _failing_scalar_line(text: str) -> str:
    """The line of the first scalar the safe constructor refuses, found by composing without constructing."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return "?"
    loader = yaml.SafeLoader("")
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop(0)
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except Exception:  # noqa: BLE001 - any refusal is the one we are looking for
                return str(node.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                stack.extend((key_node, value_node))
    return "?"


def _set(values: dict[str, Any], path: Path, line: int | None, key: str, value: object) -> None:
    setting = _BY_KEY[key]
    try:
        values[_FIELD_OF_KEY[key]] = setting.cast(value)
    except ValueError as exc:
        raise ConfigError(f"{path}, line {line}, key {key}: {exc}") from exc


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve settings: ``overrides`` > environment > config file > defaults.

    ``config`` None means ``./agentwatch.yaml`` when that file exists.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path: Path | None = None
    if config is not None:
        config_path = Path(config)
        if not config_path.exists():
            raise ConfigError(f"{config_path}: config file not found")
    elif Path("agentwatch.yaml").exists():
        config_path = Path("agentwatch.yaml")
    if config_path is not None:
        values.update(load_file(config_path))
        values["config_path"] = str(config_path)
    for setting in SETTINGS:
        if setting.env and env.get(setting.env):
            try:
                values[_FIELD_OF_KEY[setting.key]] = setting.cast(env[setting.env])
            except ValueError as exc:
                raise ConfigError(f"environment variable {setting.env}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
