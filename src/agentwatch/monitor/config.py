"""The ``alerts`` section of ``agentwatch.yaml``: what each check of the monitor is configured with.

Each check's section (drift, clusters, rare events, calibration, no data,
evaluator errors) is read into a frozen dataclass here, with every bad value
named by file, line and key; :class:`MonitorConfig` holds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from agentwatch.errors import ConfigError
from agentwatch.settings import Section


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
        top = Section(where, section, "alerts").only(
            {"check_interval", "fast_check_interval", "drift", "clusters", "rare_events", "calibration", "no_data",
             "evaluator_errors", "repeat_interval"})
        d = top.section("drift", {"window", "new_version_window", "new_version_z", "baseline", "z", "min_n",
                                  "min_effect", "for", "warmup", "cusum_k", "cusum_h", "min_baseline_n", "statistic"})
        drift = DriftConfig(
            window_s=d.duration("window", 3600.0),
            new_version_window_s=d.duration("new_version_window", 6 * 3600.0),
            new_version_z=d.number("new_version_z", 4.0),
            baseline_s=d.duration("baseline", 7 * 86400.0),
            z_threshold=d.number("z", 4.0), min_n=d.number("min_n", 20.0, low=1),
            min_effect=d.number("min_effect", 0.05, high=1), hold_s=d.duration("for", 900.0),
            warmup_s=d.duration("warmup", 86400.0), cusum_k=d.number("cusum_k", 0.5),
            cusum_h=d.number("cusum_h", 8.0, low=0.1),
            min_baseline_n=d.number("min_baseline_n", 200.0),
            statistic=d.choice("statistic", ("auto", "mean", "pass_rate")))
        c = top.section("clusters", {"window", "baseline", "min_count", "min_sessions", "min_users", "surge_p",
                                     "surge_min_count", "similarity", "warmup", "keep_firing_for", "reason_kinds"})
        clusters = ClusterConfig(
            window_s=c.duration("window", 3600.0),
            baseline_s=c.duration("baseline", 7 * 86400.0),
            min_count=c.number("min_count", 5.0, low=1),
            min_sessions=int(c.number("min_sessions", 3, low=1)),
            min_users=int(c.number("min_users", 2, low=1)),
            surge_p=c.number("surge_p", 1e-4, high=1),
            surge_min_count=c.number("surge_min_count", 10.0, low=1),
            similarity=c.number("similarity", 0.5, low=0.01, high=1),
            warmup_s=c.duration("warmup", 86400.0),
            keep_firing_for_s=c.duration("keep_firing_for", 3600.0),
            reason_kinds=c.names("reason_kinds", among=REASON_KINDS, noun="evaluator kinds",
                                 default=("rule", "python")))
        r = top.section("rare_events", {"window"})
        rare = RareEventConfig(window_s=r.duration("window", 3600.0))
        k = top.section("calibration", {"floor", "min_labels", "window"})
        calibration = CalibrationConfig(
            floor=k.number("floor", 0.85, high=1),
            min_labels=int(k.number("min_labels", 30, low=1)),
            window_s=k.duration("window", 14 * 86400.0))
        n = top.section("no_data", {"services", "evaluators", "period", "warmup"})
        no_data = NoDataConfig(
            services=n.names("services"), evaluators=n.names("evaluators"),
            period_s=n.duration("period", 1800.0), warmup_s=n.duration("warmup", 86400.0))
        e = top.section("evaluator_errors", {"floor", "window", "min_n"})
        errors = EvaluatorErrorsConfig(
            floor=e.number("floor", 0.2, high=1), window_s=e.duration("window", 3600.0),
            min_n=e.number("min_n", 10.0, low=1))
        repeat = top.section("repeat_interval", {"page", "ticket"})
        check = top.duration("check_interval", 300.0)
        fast = top.duration("fast_check_interval", min(60.0, check))
        if fast <= 0 or check <= 0 or round(check / fast) * fast != check or 86400 % check:
            raise top.error("check_interval", f"must divide a day and be a multiple of fast_check_interval "
                                              f"({fast:g}s); got {check:g}s")
        return cls(
            check_interval_s=check, fast_check_interval_s=fast,
            drift=drift, clusters=clusters, rare_events=rare, calibration=calibration, no_data=no_data,
            evaluator_errors=errors,
            repeat_interval_s={"page": repeat.duration("page", 4 * 3600.0),
                               "ticket": repeat.duration("ticket", 86400.0)})
