"""The ``alerts`` section of ``agentwatch.yaml``: what each check of the monitor is configured with.

Each check's section (drift, clusters, rare events, calibration, no data,
evaluator errors) is read into a frozen dataclass here, with every bad value
named by file, line and key; :class:`MonitorConfig` holds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from agentwatch.errors import ConfigError
from agentwatch.settings import config_line, parse_duration


def _duration(section: Mapping[str, Any], key: str, default: float, where: str, dotted: str) -> float:
    if key not in section:
        return default
    try:
        return parse_duration(section[key])
    except ValueError as exc:
        raise ConfigError(f"{where}, line {config_line(section, key)}, key {dotted}.{key}: {exc}") from exc


def _number(section: Mapping[str, Any], key: str, default: float, where: str, dotted: str, *,
            low: float = 0.0, high: float | None = None) -> float:
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
            high is not None and value > high):
        bound = f"a number >= {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{where}, line {config_line(section, key)}, key {dotted}.{key}: expected {bound}, "
                          f"got {value!r}")
    return float(value)


def _choice(section: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str, dotted: str) -> str:
    value = section.get(key, choices[0])
    if value not in choices:
        raise ConfigError(f"{where}, line {config_line(section, key)}, key {dotted}.{key}: expected one of "
                          f"{', '.join(choices)}, got {value!r}")
    return str(value)


def _names(section: Mapping[str, Any], key: str, where: str, dotted: str) -> tuple[str, ...]:
    value = section.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}, line {config_line(section, key)}, key {dotted}.{key}: expected a list of names")
    return tuple(value)


def _kinds(section: Mapping[str, Any], key: str, default: tuple[str, ...], where: str, dotted: str
           ) -> tuple[str, ...]:
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v in REASON_KINDS for v in value):
        raise ConfigError(f"{where}, line {config_line(section, key)}, key {dotted}.{key}: expected a list of "
                          f"evaluator kinds among {', '.join(REASON_KINDS)}, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class DriftConfig:
    window_s: float = 3600.0
    #: A new agent version's window: every session it has had, up to this long ...
    new_version_window_s: float = 6 * 3600.0
    #: ... and the z it must pass (a canary comparison; lower it to catch smaller regressions sooner).
    new_version_z: float = 4.0
    baseline_s: float = 7 * 86400.0
    #: Fire when z < -z_threshold ...
    z_threshold: float = 4.0
    #: ... with at least min_n scored sessions in the window ...
    min_n: float = 20.0
    #: ... a drop of the mean of at least min_effect ...
    min_effect: float = 0.05
    #: ... held this long.
    hold_s: float = 900.0
    warmup_s: float = 86400.0
    cusum_k: float = 0.5
    cusum_h: float = 8.0
    #: Least baseline sessions for a series to be checked at all.
    min_baseline_n: float = 200.0
    #: auto (pass_rate for evaluators with a threshold, else mean) | mean | pass_rate
    statistic: str = "auto"


@dataclass(frozen=True)
class ClusterConfig:
    window_s: float = 3600.0
    baseline_s: float = 7 * 86400.0
    min_count: float = 5.0
    min_sessions: int = 3
    min_users: int = 2
    #: A known template surges when P(X >= c | baseline rate) is below this, with c at least surge_min_count.
    surge_p: float = 1e-4
    surge_min_count: float = 10.0
    similarity: float = 0.5
    warmup_s: float = 86400.0
    #: A cluster alert keeps firing this long after its condition last held (hysteresis: one alert, not a flap).
    keep_firing_for_s: float = 3600.0
    #: The evaluator kinds whose failing reasons are failure messages, and mined (the others' reasons explain
    #: a score: a count of supported claims, a judge's opinion; drift watches those scores).
    reason_kinds: tuple[str, ...] = ("rule", "python")


#: Evaluator kinds (as the catalogue knows them) that ``alerts.clusters.reason_kinds`` may name.
REASON_KINDS = ("rule", "python", "llm", "faithfulness", "external")


@dataclass(frozen=True)
class RareEventConfig:
    #: A rare-event alert stays firing while a failure of its evaluator is this recent.
    window_s: float = 3600.0


@dataclass(frozen=True)
class CalibrationConfig:
    floor: float = 0.85
    min_labels: int = 30
    window_s: float = 14 * 86400.0


@dataclass(frozen=True)
class NoDataConfig:
    services: tuple[str, ...] = ()
    evaluators: tuple[str, ...] = ()
    period_s: float = 1800.0
    warmup_s: float = 86400.0


@dataclass(frozen=True)
class EvaluatorErrorsConfig:
    floor: float = 0.2
    window_s: float = 3600.0
    min_n: float = 10.0


@dataclass(frozen=True)
class MonitorConfig:
    """The ``alerts`` section, with the defaults of ``docs/alerts.md``."""

    check_interval_s: float = 300.0
    #: Rare events and new clusters are checked this often (a multiple of it is check_interval).
    fast_check_interval_s: float = 60.0
    drift: DriftConfig = DriftConfig()
    clusters: ClusterConfig = ClusterConfig()
    rare_events: RareEventConfig = RareEventConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    no_data: NoDataConfig = NoDataConfig()
    evaluator_errors: EvaluatorErrorsConfig = EvaluatorErrorsConfig()
    repeat_interval_s: dict[str, float] = field(default_factory=lambda: {"page": 4 * 3600.0, "ticket": 86400.0})

    @classmethod
    def from_section(cls, section: Any, where: str = "agentwatch.yaml") -> MonitorConfig:
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}, key alerts: expected a mapping")
        known = {"check_interval", "fast_check_interval", "drift", "clusters", "rare_events", "calibration", "no_data",
                 "evaluator_errors", "repeat_interval"}
        for key in section:
            if key not in known:
                raise ConfigError(f"{where}, line {config_line(section, key)}, key alerts.{key}: unknown setting "
                                  f"(known: {', '.join(sorted(known))})")

        def sub(name: str, keys: set[str]) -> Mapping[str, Any]:
            value = section.get(name) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}, line {config_line(section, name)}, key alerts.{name}: expected a mapping")
            for key in value:
                if key not in keys:
                    raise ConfigError(f"{where}, line {config_line(value, key)}, key alerts.{name}.{key}: unknown "
                                      f"setting (known: {', '.join(sorted(keys))})")
            return value

        d = sub("drift", {"window", "new_version_window", "new_version_z", "baseline", "z", "min_n", "min_effect",
                          "for", "warmup", "cusum_k", "cusum_h",
                          "min_baseline_n", "statistic"})
        w = "alerts.drift"
        drift = DriftConfig(
            window_s=_duration(d, "window", 3600.0, where, w),
            new_version_window_s=_duration(d, "new_version_window", 6 * 3600.0, where, w),
            new_version_z=_number(d, "new_version_z", 4.0, where, w),
            baseline_s=_duration(d, "baseline", 7 * 86400.0, where, w),
            z_threshold=_number(d, "z", 4.0, where, w), min_n=_number(d, "min_n", 20.0, where, w, low=1),
            min_effect=_number(d, "min_effect", 0.05, where, w, high=1), hold_s=_duration(d, "for", 900.0, where, w),
            warmup_s=_duration(d, "warmup", 86400.0, where, w), cusum_k=_number(d, "cusum_k", 0.5, where, w),
            cusum_h=_number(d, "cusum_h", 8.0, where, w, low=0.1),
            min_baseline_n=_number(d, "min_baseline_n", 200.0, where, w),
            statistic=_choice(d, "statistic", ("auto", "mean", "pass_rate"), where, w))
        c = sub("clusters", {"window", "baseline", "min_count", "min_sessions", "min_users", "surge_p",
                             "surge_min_count", "similarity", "warmup", "keep_firing_for", "reason_kinds"})
        w = "alerts.clusters"
        clusters = ClusterConfig(
            window_s=_duration(c, "window", 3600.0, where, w),
            baseline_s=_duration(c, "baseline", 7 * 86400.0, where, w),
            min_count=_number(c, "min_count", 5.0, where, w, low=1),
            min_sessions=int(_number(c, "min_sessions", 3, where, w, low=1)),
            min_users=int(_number(c, "min_users", 2, where, w, low=1)),
            surge_p=_number(c, "surge_p", 1e-4, where, w, high=1),
            surge_min_count=_number(c, "surge_min_count", 10.0, where, w, low=1),
            similarity=_number(c, "similarity", 0.5, where, w, low=0.01, high=1),
            warmup_s=_duration(c, "warmup", 86400.0, where, w),
            keep_firing_for_s=_duration(c, "keep_firing_for", 3600.0, where, w),
            reason_kinds=_kinds(c, "reason_kinds", ("rule", "python"), where, w))
        r = sub("rare_events", {"window"})
        rare = RareEventConfig(window_s=_duration(r, "window", 3600.0, where, "alerts.rare_events"))
        k = sub("calibration", {"floor", "min_labels", "window"})
        w = "alerts.calibration"
        calibration = CalibrationConfig(
            floor=_number(k, "floor", 0.85, where, w, high=1),
            min_labels=int(_number(k, "min_labels", 30, where, w, low=1)),
            window_s=_duration(k, "window", 14 * 86400.0, where, w))
        n = sub("no_data", {"services", "evaluators", "period", "warmup"})
        w = "alerts.no_data"
        no_data = NoDataConfig(
            services=_names(n, "services", where, w), evaluators=_names(n, "evaluators", where, w),
            period_s=_duration(n, "period", 1800.0, where, w), warmup_s=_duration(n, "warmup", 86400.0, where, w))
        e = sub("evaluator_errors", {"floor", "window", "min_n"})
        w = "alerts.evaluator_errors"
        errors = EvaluatorErrorsConfig(
            floor=_number(e, "floor", 0.2, where, w, high=1), window_s=_duration(e, "window", 3600.0, where, w),
            min_n=_number(e, "min_n", 10.0, where, w, low=1))
        repeat = sub("repeat_interval", {"page", "ticket"})
        check = _duration(section, "check_interval", 300.0, where, "alerts")
        fast = _duration(section, "fast_check_interval", min(60.0, check), where, "alerts")
        if fast <= 0 or check <= 0 or round(check / fast) * fast != check or 86400 % check:
            raise ConfigError(f"{where}, line {config_line(section, 'check_interval')}, key alerts.check_interval: "
                              f"must divide a day and be a multiple of fast_check_interval ({fast:g}s); got {check:g}s")
        return cls(
            check_interval_s=check, fast_check_interval_s=fast,
            drift=drift, clusters=clusters, rare_events=rare, calibration=calibration, no_data=no_data,
            evaluator_errors=errors,
            repeat_interval_s={"page": _duration(repeat, "page", 4 * 3600.0, where, "alerts.repeat_interval"),
                               "ticket": _duration(repeat, "ticket", 86400.0, where, "alerts.repeat_interval")})
