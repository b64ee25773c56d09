"""Drift of a scored dimension against its rolling baseline (methods.md §2).

Every evaluator is a dimension; its series are keyed by service, agent
version, intent and evaluator version, and also pooled over intents
(intent ``""``). At each tick the window's weighted mean is compared with
the baseline's: the 7 days before the window, the same service, intent and
evaluator version, over every agent version (so a new agent version is
compared with the ones before it). A baseline never mixes evaluator
versions: a new version is a new series, which shadow scoring gives a
baseline at once. The standard error is inflated by the over-dispersion
factor phi measured on the baseline's hours. The alert fires when
z < -N with at least ``min_n`` sessions in the window, a drop of at least
``min_effect`` and the condition held for ``for``; it stays firing while
z < -N/2. Hourly, a one-sided CUSUM of the standardized hourly means of the
pooled series catches slow drifts at ticket severity; it is clamped once it
alarms, reset when its ticket clears, and reset while a ``z`` page of the
series fires, so an episode that was alerted is never carried forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from sqlalchemy import Connection

from agentwatch.alert.types import Candidate
from agentwatch.monitor.config import DriftConfig
from agentwatch.store import rollups
from agentwatch.store.rollups import HOUR_NS, Totals

_NS = 1_000_000_000
SeriesKey = tuple[str, str, str, str]  # service, agent_version, intent, evaluator_version
BaselineKey = tuple[str, str, str]  # service, intent, evaluator_version


@dataclass(frozen=True)
class Baseline:
    mean: float
    variance: float
    n: float
    phi: float
    hours: int
    #: Agent versions seen in the baseline.
    versions: frozenset[str]


def statistic(spec: Any, configured: str = "auto") -> str:
    """``pass_rate`` (the share of sessions that pass) for an evaluator with a threshold, else ``mean``."""
    if configured != "auto":
        return configured
    return "pass_rate" if getattr(spec, "threshold", None) is not None else "mean"


def mean_of(totals: Totals, stat: str) -> float:
    """The window's weighted mean of the statistic (weighted_count must be positive)."""
    if stat == "pass_rate":
        return 1.0 - totals.weighted_failures / totals.weighted_count
    return totals.weighted_sum / totals.weighted_count


def scored(totals: Totals) -> float:
    """Sessions with a score: evaluation errors count in the buckets but carry no score."""
    return max(totals.count - totals.errors, 0.0)


def variance_of(totals: Totals, stat: str) -> float:
    """The statistic's variance, floored so that a flawless baseline (a week of passes) still has one."""
    if stat == "pass_rate":
        n = scored(totals)
        failures = totals.failures
        p = (failures + 0.5) / (n + 1)  # never 0 or 1: a rule that never failed can still fail
        return p * (1 - p)
    return max(totals.variance or 0.0, 1e-4)


def binomial_z(failures: float, n: float, p: float) -> float:
    """The normal quantile of the exact binomial tail P(X >= failures | n, p), as a (negative) z.

    For rare failures the normal approximation makes a handful of failures look far more unusual
    than they are; the exact tail does not.
    """
    k, trials = int(round(failures)), int(round(n))
    if trials <= 0 or k <= trials * p:
        return 0.0
    p = min(max(p, 1e-9), 1 - 1e-9)
    log_q, log_p = math.log1p(-p), math.log(p)
    # Sum P(X = i) for i >= k in log space.
    terms = [math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1) + i * log_p
             + (trials - i) * log_q for i in range(k, trials + 1)]
    top = max(terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in terms)
    tail = min(max(tail, 1e-300), 0.5)
    return NormalDist().inv_cdf(tail)


def _pool(groups: dict[tuple[str, ...], Totals], *, by_intent: bool) -> dict[tuple[str, ...], Totals]:
    out: dict[tuple[str, ...], Totals] = {}
    for key, value in groups.items():
        service, version, intent, ev = key
        pooled = (service, version, intent if by_intent else "", ev)
        out[pooled] = out[pooled] + value if pooled in out else value
    return out


def _baseline(hours: dict[int, Totals], stat: str, versions: frozenset[str]) -> Baseline | None:
    total = rollups.ZERO
    for value in hours.values():
        total = total + value
    if not total.weighted_count:
        return None
    mean, variance = mean_of(total, stat), variance_of(total, stat)
    phi = 1.0
    terms = [scored(h) * (mean_of(h, stat) - mean) ** 2 / variance
             for h in hours.values() if scored(h) >= 5 and h.weighted_count]
    if terms:
        phi = max(1.0, sum(terms) / len(terms))
    return Baseline(mean, variance, scored(total), phi, len(hours), versions)


class DriftDetector:
    """Stateless but for a per-hour cache of baselines; its hold and CUSUM state live in the monitor's state."""

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self._raw: dict[tuple[int, str, int], dict[BaselineKey, dict[str, dict[int, Totals]]]] = {}
        self._baselines: dict[tuple[Any, ...], Baseline | None] = {}

    def _hours(self, conn: Connection, project_id: int, dimension: str, until_ns: int
               ) -> dict[BaselineKey, dict[str, dict[int, Totals]]]:
        """The whole hours of [until - baseline, until) per service, intent (and pooled), evaluator version
        and agent version; cached for the hour."""
        hour_end = until_ns - until_ns % HOUR_NS
        cache_key = (project_id, dimension, hour_end)
        cached = self._raw.get(cache_key)
        if cached is not None:
            return cached
        since = hour_end - int(self.config.baseline_s * _NS)
        raw: dict[BaselineKey, dict[str, dict[int, Totals]]] = {}
        # A new evaluator version's shadow scores of the past sessions are its baseline from the start.
        for series in (dimension, rollups.SHADOW_PREFIX + dimension):
            hourly = rollups.hourly_totals(conn, project_id, series, since_ns=since, until_ns=hour_end)
            for (service, agent_version, intent, ev), hours in hourly.items():
                for pooled_intent in {intent, ""}:
                    into = raw.setdefault((service, pooled_intent, ev), {}).setdefault(agent_version, {})
                    for hour, value in hours.items():
                        into[hour] = into[hour] + value if hour in into else value
        for stale in [k for k in self._raw if k[:2] == (project_id, dimension) and k[2] < hour_end]:
            del self._raw[stale]
        self._raw[cache_key] = raw
        self._baselines.clear()
        return raw

    def baseline(self, conn: Connection, project_id: int, dimension: str, until_ns: int, stat: str,
                 key: BaselineKey, agent_version: str) -> tuple[Baseline | None, bool]:
        """The baseline of a series and whether its agent version is new.

        An agent version with a day of its own history and enough sessions in the baseline period is
        compared with its own past; a new one with the earlier versions only, so that its own drifted
        sessions never dilute the baseline it is judged against.
        """
        raw = self._hours(conn, project_id, dimension, until_ns).get(key)
        if not raw:
            return None, agent_version not in (raw or {})
        own = raw.get(agent_version, {})
        own_count = sum(scored(t) for t in own.values())
        established = (own_count >= self.config.min_baseline_n and own
                       and (until_ns - until_ns % HOUR_NS) - min(own) >= int(self.config.warmup_s * _NS))
        versions = [agent_version] if established else [v for v in raw if v != agent_version]
        memo = (project_id, dimension, stat, key, tuple(sorted(versions)))
        if memo not in self._baselines:
            hours: dict[int, Totals] = {}
            for version in versions:
                for hour, value in raw[version].items():
                    hours[hour] = hours[hour] + value if hour in hours else value
            self._baselines[memo] = _baseline(hours, stat, frozenset(versions))
        return self._baselines[memo], not established

    def check(self, conn: Connection, project_id: int, tick_ns: int, spec: Any, state: dict[str, Any],
              warm: set[str], firing: set[str]) -> tuple[list[Candidate], dict[tuple[str, ...], Totals]]:
        """Candidates of one evaluator's series at ``tick_ns``; also answers the window totals it read.

        ``state`` holds ``hold`` (series key -> first tick the condition held) and ``cusum``; ``warm`` is
        the services past their warm-up; ``firing`` the dedup keys of this rule's firing alerts.
        """
        cfg = self.config
        window_start = tick_ns - int(cfg.window_s * _NS)
        groups = rollups.series_totals(conn, project_id, spec.name, since_ns=window_start, until_ns=tick_ns)
        per_intent = _pool(groups, by_intent=True)
        pooled = _pool(groups, by_intent=False)
        windows = {**per_intent, **pooled}
        stat = statistic(spec, cfg.statistic)
        # A pass rate is always higher-is-better; a mean score follows the evaluator's direction.
        sign = 1.0 if stat == "pass_rate" or spec.direction == "higher_is_better" else -1.0
        #: dedup key -> [dimension, first tick the condition held]
        hold: dict[str, list[Any]] = state.setdefault("holds", {})
        out: list[Candidate] = []
        seen: set[str] = set()
        for (service, agent_version, intent, ev), window in sorted(windows.items()):
            if service not in warm or not window.weighted_count:
                continue
            base, new_version = self.baseline(conn, project_id, spec.name, window_start, stat, (service, intent, ev),
                                              agent_version)
            window_s = cfg.window_s
            if new_version and cfg.new_version_window_s > cfg.window_s:
                # A new agent version is judged on all its sessions so far (up to new_version_window), as a
                # canary is: its sessions did not exist before it appeared.
                window_s = cfg.new_version_window_s
                labels = {"service": service, "agent_version": agent_version, "evaluator_version": ev}
                if intent:
                    labels["intent"] = intent
                window = rollups.totals(conn, project_id, spec.name, since_ns=tick_ns - int(window_s * _NS),
                                        until_ns=tick_ns, **labels)
            n = scored(window)
            if base is None or base.n < cfg.min_baseline_n or n <= 0:
                continue
            mean = mean_of(window, stat)
            inflation = base.phi + n / base.n  # over-dispersion and the baseline's own uncertainty
            if stat == "pass_rate":
                # The baseline's failure rate, floored like its variance: after a flawless week one failure is
                # not a page.
                fail_rate = max(1.0 - base.mean, 0.5 / (base.n + 1))
                z = binomial_z(window.failures, n, fail_rate) / math.sqrt(inflation)
            else:
                z = (mean - base.mean) / math.sqrt(base.variance * inflation / n)
            drop = sign * (base.mean - mean)
            candidate = Candidate(
                kind="drift", rule="z", severity="page", dimension=spec.name, evaluator=spec.name,
                evaluator_version=ev, labels={"service": service, "agent_version": agent_version, "intent": intent},
                owner=spec.owner, summary="", figures={})
            key = candidate.dedup_key
            seen.add(key)
            limit = cfg.new_version_z if new_version else cfg.z_threshold
            threshold = limit / 2 if key in firing else limit
            holds = sign * z < -threshold and n >= cfg.min_n and (drop >= cfg.min_effect or key in firing)
            if not holds:
                hold.pop(key, None)
                continue
            first = int(hold.setdefault(key, [spec.name, tick_ns])[1])
            # A new version's window is cumulative (all its sessions so far), so it needs no hold to settle.
            if key not in firing and not new_version and tick_ns - first < int(cfg.hold_s * _NS):
                continue
            compared = "earlier agent versions" if new_version else "the 7 days before"
            where = " ".join(p for p in (service, agent_version, intent and f"intent={intent}") if p)
            what = "pass rate" if stat == "pass_rate" else "mean score"
            candidate.summary = (
                f"{spec.name}@{ev[:8]} {what} {mean:.3f} over the last {window_s / 3600:g}h for {where} vs "
                f"{base.mean:.3f} in {compared} (z={z:.1f}, n={n:.0f})")
            candidate.figures = {
                "observed": round(mean, 6), "baseline": round(base.mean, 6), "z": round(z, 3), "n": n,
                "baseline_n": base.n, "phi": round(base.phi, 3), "effect": round(-drop, 6),
                "window_s": window_s, "new_agent_version": new_version, "statistic": stat,
                "cause": "agent" if new_version else "unknown"}
            out.append(candidate)
        for key in [k for k, (dimension, _) in hold.items() if dimension == spec.name and k not in seen]:
            del hold[key]
        return out, groups

    def cusum(self, conn: Connection, project_id: int, tick_ns: int, spec: Any, state: dict[str, Any],
              warm: set[str], paged: frozenset[tuple[str, str, str]] = frozenset()
              ) -> tuple[list[Candidate], set[str]]:
        """At an hour boundary: feed the last hour's standardized mean of each pooled series to its CUSUM.

        Answers the tickets that hold and the dedup keys of alarmed series that could not be judged this
        hour (too few sessions, no baseline): their tickets stay as they are. ``paged``: the (service,
        agent version, evaluator version) series whose ``z`` page fires; the page has that episode, so the
        sum starts afresh instead of carrying it forward.

        The sum S = max(0, S - x - k) alarms above h. Once alarmed it is clamped at h, so it holds as much
        of the episode as the alarm needed and no more; the ticket stays while S > h / 2 and resolves
        below, and then S is reset to 0. A long incident therefore cannot leave behind a sum that takes
        days to decay, re-opening a ticket after the series is back within its baseline.
        """
        cfg = self.config
        hour_start = tick_ns - HOUR_NS
        groups = rollups.series_totals(conn, project_id, spec.name, since_ns=hour_start, until_ns=tick_ns)
        pooled = _pool(groups, by_intent=False)
        stat = statistic(spec, cfg.statistic)
        sums: dict[str, float] = state.setdefault("cusum", {})
        #: Dedup keys of the series whose ticket fires (the sum passed h and has not fallen to h / 2 since).
        alarms: dict[str, bool] = state.setdefault("cusum_alarms", {})
        sign = 1.0 if stat == "pass_rate" or spec.direction == "higher_is_better" else -1.0
        out: list[Candidate] = []
        kept: set[str] = set()
        seen: set[str] = set()
        for (service, agent_version, _, ev), window in sorted(pooled.items()):
            candidate = Candidate(
                kind="drift", rule="cusum", severity="ticket", dimension=spec.name, evaluator=spec.name,
                evaluator_version=ev, labels={"service": service, "agent_version": agent_version},
                owner=spec.owner, summary="")
            key = candidate.dedup_key
            seen.add(key)
            if (service, agent_version, ev) in paged:
                sums.pop(key, None)
                alarms.pop(key, None)
                continue
            if service not in warm or scored(window) < cfg.min_n or not window.weighted_count:
                if key in alarms:
                    kept.add(key)
                continue
            base, _ = self.baseline(conn, project_id, spec.name, hour_start, stat, (service, "", ev), agent_version)
            if base is None or base.n < cfg.min_baseline_n or base.variance <= 0:
                if key in alarms:
                    kept.add(key)
                continue
            mean = mean_of(window, stat)
            x = sign * (mean - base.mean) / math.sqrt(base.variance * base.phi / scored(window))
            total = max(0.0, sums.get(key, 0.0) - x - cfg.cusum_k)
            alarmed = key in alarms
            if not alarmed and total > cfg.cusum_h:
                alarmed = alarms[key] = True
            elif alarmed and total <= cfg.cusum_h / 2:
                # Back within its baseline: the episode is over, and the next one starts from nothing.
                alarmed = False
                del alarms[key]
                total = 0.0
            if alarmed:
                total = min(total, cfg.cusum_h)
            if total > 0:
                sums[key] = total
            else:
                sums.pop(key, None)
            if alarmed:
                candidate.summary = (
                    f"{spec.name}@{ev[:8]} drifting down slowly for {service} {agent_version}: CUSUM {total:.1f} "
                    f"(alarm above {cfg.cusum_h:g}, clears at {cfg.cusum_h / 2:g}; last hour mean {mean:.3f} vs "
                    f"baseline {base.mean:.3f})")
                candidate.figures = {"observed": round(mean, 6), "baseline": round(base.mean, 6),
                                     "cusum": round(total, 3), "h": cfg.cusum_h, "k": cfg.cusum_k,
                                     "x": round(x, 3), "n": scored(window), "phi": round(base.phi, 3)}
                out.append(candidate)
        # A series with no session in the hour (a version rolled back, a service gone) ends its episode.
        mine = f"drift:cusum:{spec.name}:"
        for gone in [k for k in (*sums, *alarms) if k.startswith(mine) and k not in seen]:
            sums.pop(gone, None)
            alarms.pop(gone, None)
        return out, kept
