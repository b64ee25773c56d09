"""Drift: the z rule against a 7-day baseline (hold, gates, hysteresis, phi, versions) and the hourly CUSUM.

The buckets are written directly with ``rollups.add``: a baseline of 7 days at 150 scored sessions an hour
(one bucket per hour, which is all the baseline reads), then the window's traffic session by session, one
bucket per minute, so that any 60-minute window ending on a minute holds exactly 150 sessions.

For a pass rate, z is the normal quantile of the exact binomial tail P(X >= failures | n, baseline failure
rate), divided by sqrt(phi + n / baseline_n); ``z_of`` recomputes it in exact rational arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from statistics import NormalDist
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite

from agentwatch.alert.types import Candidate
from agentwatch.evaluate.catalogue import EvaluatorSpec
from agentwatch.monitor.config import DriftConfig
from agentwatch.monitor.drift import DriftDetector
from agentwatch.store import models as m
from agentwatch.store import rollups
from agentwatch.store.store import Store

S = 1_000_000_000
MIN = rollups.MINUTE_NS
HOUR = rollups.HOUR_NS
DAY = 24 * HOUR
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
D = T0 + 7 * DAY  # the first hour after the 7-day baseline
SVC = "support-agent"
SPEC = EvaluatorSpec(name="faithfulness", kind="faithfulness", threshold=0.8, owner="quality-team")
V = SPEC.version
#: Baseline: 6 failures in 150 sessions an hour, a pass rate of 0.96 (variance 0.0384).
BASE_FAILURES = 6
PER_HOUR = 150
#: The week's scored sessions and failures of a default baseline.
BASE_N = 7 * 24 * PER_HOUR
BASE_FAILED = 7 * 24 * BASE_FAILURES
#: 20 failures in 150 (0.867, a drop of 0.093): z = -4.54 against the default baseline with phi = 1.
DROP = BASE_FAILURES + 14


_SUMS = ("count", "weighted_count", "weighted_sum", "weighted_sum_sq", "failures", "weighted_failures", "errors")
_KEY = ("project_id", "minute_ns", "service", "agent_version", "intent", "dimension", "evaluator_version")


class Buckets:
    """Increments gathered in memory and written to the minute and hour tables in one statement each
    (what ``rollups.add`` does one bucket at a time)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.minutes: dict[tuple[Any, ...], list[float]] = {}

    def add(self, t: int, labels: dict[str, str], dimension: str, version: str, delta: dict[str, float]) -> None:
        key = (self.pid, t - t % MIN, labels.get("service", ""), labels.get("agent_version", ""),
               labels.get("intent", ""), dimension, version)
        into = self.minutes.setdefault(key, [0.0] * len(_SUMS))
        for i, name in enumerate(_SUMS):
            into[i] += delta.get(name, 0.0)

    def write(self, conn: Connection) -> None:
        hours: dict[tuple[Any, ...], list[float]] = {}
        for key, values in self.minutes.items():
            into = hours.setdefault((key[0], key[1] - key[1] % HOUR, *key[2:]), [0.0] * len(_SUMS))
            for i, value in enumerate(values):
                into[i] += value
        for table, rows in ((m.rollups, self.minutes), (m.rollups_hourly, hours)):
            stmt = sqlite.insert(table)
            stmt = stmt.on_conflict_do_update(index_elements=list(_KEY),
                                              set_={name: table.c[name] + stmt.excluded[name] for name in _SUMS})
            conn.execute(stmt, [{**dict(zip(_KEY, key)), **dict(zip(_SUMS, values))} for key, values in rows.items()])
        self.minutes.clear()


@contextmanager
def buckets(store: Store, pid: int) -> Iterator[Buckets]:
    b = Buckets(pid)
    yield b
    with store.engine.begin() as conn:
        b.write(conn)


def put(b: Buckets, t: int, n: int, failures: int, *, errors: int = 0, agent_version: str = "1.0",
        intent: str = "refund", version: str = V, service: str = SVC, dimension: str = "faithfulness",
        good: float = 0.9, bad: float = 0.3) -> None:
    """n scored sessions (failures of them scoring ``bad``, the rest ``good``) and ``errors`` errored ones."""
    passed = n - failures
    b.add(t, {"service": service, "agent_version": agent_version, "intent": intent}, dimension, version,
          {"count": n + errors, "weighted_count": n, "weighted_sum": good * passed + bad * failures,
           "weighted_sum_sq": good * good * passed + bad * bad * failures, "failures": failures,
           "weighted_failures": failures, "errors": errors})


def baseline(b: Buckets, *, failures: int | list[int] = BASE_FAILURES, hours: int = 7 * 24, end: int = D,
             **kw: Any) -> None:
    """One bucket per hour (the baseline reads whole hours) of 150 scored sessions."""
    for h in range(hours):
        f = failures[h % len(failures)] if isinstance(failures, list) else failures
        put(b, end - (hours - h) * HOUR + 30 * MIN, PER_HOUR, f, **kw)


def traffic(b: Buckets, since: int, until: int, failures_per_hour: int, *, per_hour: int = PER_HOUR,
            **kw: Any) -> None:
    """Sessions evenly spread, failures spread evenly over each run of per_hour sessions (any hour: the same)."""
    step = 3600 * S // per_hour
    per_minute: dict[int, list[int]] = {}
    t, i = since, 0
    while t < until:
        k = i % per_hour
        bucket = per_minute.setdefault(t - t % MIN, [0, 0])
        bucket[0] += 1
        bucket[1] += (k + 1) * failures_per_hour // per_hour - k * failures_per_hour // per_hour
        t += step
        i += 1
    for minute, (n, f) in per_minute.items():
        put(b, minute, n, f, **kw)


def key_of(service: str = SVC, agent_version: str = "1.0", intent: str = "refund", version: str = V,
           rule: str = "z") -> str:
    labels = {"service": service, "agent_version": agent_version}
    if rule == "z":
        labels["intent"] = intent
    return Candidate(kind="drift", rule=rule, severity="page" if rule == "z" else "ticket", summary="",
                     dimension=SPEC.name, evaluator_version=version, labels=labels).dedup_key


def check(store: Store, pid: int, tick: int, detector: DriftDetector, state: dict[str, Any], *,
          spec: EvaluatorSpec = SPEC, warm: set[str] | None = None, firing: set[str] | None = None
          ) -> list[Candidate]:
    with store.engine.connect() as conn:
        found, _ = detector.check(conn, pid, tick, spec, state, {SVC} if warm is None else warm, firing or set())
    return found


def z_of(failures: int, n: int, base_failures: int = BASE_FAILED, base_n: int = BASE_N, phi: float = 1.0) -> float:
    """The pass rate's z: the normal quantile of P(X >= failures) for X ~ Binomial(n, base_failures / base_n),
    summed exactly, over sqrt(phi + n / base_n)."""
    p = Fraction(base_failures, base_n)
    tail = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(failures, n + 1))
    return NormalDist().inv_cdf(float(tail)) / math.sqrt(phi + n / base_n)


def phi_of(hourly_failures: list[int], n: int = PER_HOUR, hours: int = 7 * 24) -> float:
    """phi of a baseline whose hours cycle through ``hourly_failures`` of n scored sessions: the mean of
    n (p_h - p)^2 over the floored variance p~(1 - p~), p~ = (failures + 0.5) / (sessions + 1)."""
    failures = sum(hourly_failures[h % len(hourly_failures)] for h in range(hours))
    p = failures / (hours * n)
    floored = (failures + 0.5) / (hours * n + 1)
    spread = sum(n * (hourly_failures[h % len(hourly_failures)] / n - p) ** 2 for h in range(hours)) / hours
    return spread / (floored * (1 - floored))


# -- the z rule ------------------------------------------------------------------------------------------


def test_a_steady_window_fires_nothing(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        traffic(b, D, D + 2 * HOUR, 9)  # 0.94 vs 0.96: z = -1.04
    assert z_of(9, 150) == pytest.approx(-1.04, abs=5e-3)
    # A hold of another evaluator is not this evaluator's check to clear.
    elsewhere = {"drift:z:toxicity:0123456789abcdef": ["toxicity", D]}
    detector, state = DriftDetector(DriftConfig()), {"holds": dict(elsewhere)}
    for minute in range(60, 121, 5):
        assert check(store, pid, D + minute * MIN, detector, state) == []
    assert state["holds"] == elsewhere


def test_a_drop_fires_only_after_the_hold_time_with_labels_and_figures(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        traffic(b, D, D + 3 * HOUR, DROP)  # 0.96 -> 0.8667: a drop of 0.093
    detector, state = DriftDetector(DriftConfig()), {}
    seen = {minute: check(store, pid, D + minute * MIN, detector, state) for minute in range(60, 96, 5)}
    # The condition holds from the 60-minute tick; 15 minutes later it has held long enough.
    assert [minute for minute, found in seen.items() if found] == [75, 80, 85, 90, 95]
    # The hold state: dedup key -> [dimension, first tick the condition held].
    assert state["holds"] == {key_of(): [SPEC.name, D + 60 * MIN], key_of(intent=""): [SPEC.name, D + 60 * MIN]}
    by_intent = {c.labels["intent"]: c for c in seen[75]}
    assert set(by_intent) == {"refund", ""}, "the series per intent and pooled over intents"
    c = by_intent["refund"]
    assert (c.kind, c.rule, c.severity, c.dimension, c.evaluator, c.evaluator_version, c.owner) == (
        "drift", "z", "page", "faithfulness", "faithfulness", V, "quality-team")
    assert c.labels == {"service": SVC, "agent_version": "1.0", "intent": "refund"}
    f = c.figures
    assert f["n"] == 150 and f["baseline_n"] == 7 * 24 * 150 and f["window_s"] == 3600
    assert f["observed"] == pytest.approx(1 - 20 / 150, abs=1e-6) and f["baseline"] == pytest.approx(0.96)
    assert f["phi"] == 1.0 and f["statistic"] == "pass_rate"
    assert f["z"] == pytest.approx(z_of(20, 150), abs=1e-3)
    assert f["z"] == pytest.approx(-4.539, abs=1e-3)
    assert f["effect"] == pytest.approx(-14 / 150, abs=1e-6)
    assert f["new_agent_version"] is False and f["cause"] == "unknown"
    assert "the 7 days before" in c.summary and "pass rate 0.867 over the last 1h" in c.summary
    assert c.dedup_key == key_of()
    # A detector that starts over (no hold state) waits the hold time again.
    assert check(store, pid, D + 90 * MIN, DriftDetector(DriftConfig()), {}) == []


def test_the_hold_restarts_when_the_condition_breaks(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        traffic(b, D, D + 80 * MIN, 36)  # a drop to 0.76
        traffic(b, D + 80 * MIN, D + 200 * MIN, BASE_FAILURES)  # two steady hours
        traffic(b, D + 200 * MIN, D + 300 * MIN, 36)  # the drop again
    detector, state = DriftDetector(DriftConfig()), {}
    for minute in (60, 65, 70):
        assert check(store, pid, D + minute * MIN, detector, state) == []
    assert state["holds"] == {key_of(): [SPEC.name, D + 60 * MIN], key_of(intent=""): [SPEC.name, D + 60 * MIN]}
    assert check(store, pid, D + 140 * MIN, detector, state) == []
    assert state["holds"] == {}, "a tick at which the condition does not hold clears its hold timer"
    seen = {minute: check(store, pid, D + minute * MIN, detector, state) for minute in (260, 265, 270, 275)}
    # Without the reset the drop would fire at once at 260 (200 minutes after 60); it waits 15 minutes again.
    assert [minute for minute, found in seen.items() if found] == [275]


def test_a_new_agent_version_is_compared_with_the_earlier_ones_over_all_its_sessions(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)  # agent 1.0 only
        traffic(b, D, D + 2 * HOUR, BASE_FAILURES)  # 1.0 keeps steady
        traffic(b, D, D + 2 * HOUR, 40, agent_version="2.0")  # 2.0 fails much more
    found = check(store, pid, D + 2 * HOUR, DriftDetector(DriftConfig(hold_s=0)), {})
    assert {c.labels["agent_version"] for c in found} == {"2.0"}
    (c,) = [c for c in found if c.labels["intent"] == "refund"]
    f = c.figures
    assert f["new_agent_version"] is True and f["cause"] == "agent"
    # Judged on all its sessions of the last 6 hours (its 2 hours: 300, 80 failing), not the last hour's 150 ...
    assert f["window_s"] == 6 * 3600 and f["n"] == 300
    assert f["observed"] == pytest.approx(1 - 80 / 300, abs=1e-6)
    # ... against agent 1.0 only, over the 7 days before the last hour: its hours T0+1h .. D+1h, never 2.0's
    # own first hour (2.0 has 150 sessions in it, too few for a baseline of its own).
    assert f["baseline"] == pytest.approx(0.96) and f["baseline_n"] == 168 * 150 and f["phi"] == 1.0
    assert f["z"] == pytest.approx(z_of(80, 300), abs=1e-3)
    assert "earlier agent versions" in c.summary and "over the last 6h" in c.summary


def test_an_established_agent_version_is_compared_with_its_own_past_only(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)  # agent 1.0 at 0.96
        baseline(b, failures=40, hours=2 * 24, agent_version="2.0")  # 2.0 for two days, at 0.733
        traffic(b, D, D + 2 * HOUR, DROP)  # 1.0 drops to 0.867
        traffic(b, D, D + 2 * HOUR, 40, agent_version="2.0")  # 2.0 as it has been
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    # A baseline of both versions (0.91) would hide 1.0's drop (0.043, under min_effect) and make 2.0's usual
    # 0.733 a drop of 0.18.
    assert sorted((c.labels["agent_version"], c.labels["intent"]) for c in found) == [("1.0", ""), ("1.0", "refund")]
    for c in found:
        f = c.figures
        assert f["new_agent_version"] is False and f["window_s"] == 3600 and f["n"] == 150
        assert f["baseline"] == pytest.approx(0.96) and f["baseline_n"] == 168 * 150
        assert f["z"] == pytest.approx(z_of(DROP, 150), abs=1e-3)


def test_a_new_evaluator_version_has_no_baseline_and_versions_never_mix(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b, version="old")
        traffic(b, D, D + 2 * HOUR, 40)  # the current version V only, and far below 0.96
    assert check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}) == []
    # With a week of its own at 0.733, V is steady: it is never judged against the old version's 0.96
    # (a mixed baseline of about 0.85 would make it a drop of 0.11).
    with buckets(store, pid) as b:
        baseline(b, failures=40)
        traffic(b, D, D + 2 * HOUR, BASE_FAILURES, version="old")
    assert check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}) == []
    # ... and each version is still checked against its own: V dropping further (to 0.4) fires, with V's baseline.
    with buckets(store, pid) as b:
        traffic(b, D, D + 2 * HOUR, 140)
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    assert {c.evaluator_version for c in found} == {V}
    assert all(c.figures["baseline"] == pytest.approx(1 - 40 / 150) and c.figures["n"] == 300 for c in found)


def test_min_n_gate(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        traffic(b, D, D + 2 * HOUR, 8, per_hour=15)  # 15 sessions, 8 failing: z far below -4
    assert check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}) == []
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0, min_n=15)), {})
    assert found and all(c.figures["n"] == 15 and c.figures["z"] < -4 for c in found)
    assert all(c.figures["z"] == pytest.approx(z_of(8, 15), abs=1e-3) for c in found)


def test_min_effect_gate(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        traffic(b, D, D + 2 * HOUR, 120, per_hour=1500)  # 0.92: a drop of 0.04 with z = -6.76
    assert check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}) == []
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0, min_effect=0.03)), {})
    (c, _) = found
    assert c.figures["z"] == pytest.approx(z_of(120, 1500), abs=1e-3) and c.figures["z"] < -6.5
    assert c.figures["n"] == 1500 and c.figures["effect"] == pytest.approx(-0.04, abs=1e-6)


def test_while_firing_it_holds_down_to_half_the_threshold_without_the_effect_gate(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        baseline(b, intent="billing")
        traffic(b, D, D + 2 * HOUR, BASE_FAILURES + 7)  # 0.9133: z = -2.42, drop 0.047 < 0.05
        traffic(b, D, D + 2 * HOUR, BASE_FAILURES + 3, intent="billing")  # z = -1.04
    firing = {key_of(intent="refund"), key_of(intent="billing")}
    tick = D + 75 * MIN
    assert check(store, pid, tick, DriftDetector(DriftConfig()), {}) == []
    found = check(store, pid, tick, DriftDetector(DriftConfig()), {}, firing=firing)
    # Firing: refund (z -2.42 < -2) keeps holding at once, no hold time; billing (z -1.04) no longer does.
    assert [(c.labels["intent"], c.figures["effect"] > -0.05) for c in found] == [("refund", True)]
    assert -4 < found[0].figures["z"] < -2
    assert found[0].figures["z"] == pytest.approx(z_of(BASE_FAILURES + 7, 150), abs=1e-3)
    assert z_of(BASE_FAILURES + 3, 150) > -2


def test_over_dispersion_phi_widens_the_standard_error(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        # Hours alternate between 0 and 12 failures: mean 0.96, but each hour is 0.04 off it,
        # phi = 150 * 0.04^2 / p~(1 - p~) = 6.247 with p~ = 1008.5 / 25201 (binomial noise alone gives about 1).
        baseline(b, failures=[0, 12])
        traffic(b, D, D + 2 * HOUR, DROP)
        baseline(b, failures=[0, 12], service="other")
        traffic(b, D, D + 2 * HOUR, 45, service="other")
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}, warm={SVC, "other"})
    phi = phi_of([0, 12])
    assert round(phi, 3) == 6.247
    # The 0.093 drop that fires with phi = 1 (z = -4.54) is within the baseline's own hourly swings here ...
    assert z_of(DROP, 150) < -4 < z_of(DROP, 150, phi=phi)
    assert {c.labels["service"] for c in found} == {"other"}
    # ... while a drop to 0.70 still fires, with phi in the figures and in z.
    c = next(c for c in found if c.labels["intent"] == "refund")
    assert c.figures["phi"] == round(phi, 3) and c.figures["baseline"] == pytest.approx(0.96)
    assert c.figures["baseline_n"] == 25200
    assert c.figures["z"] == pytest.approx(z_of(45, 150, phi=phi), abs=1e-3)


def test_a_steady_binomial_baseline_has_phi_about_one(db: tuple[Store, int]) -> None:
    store, pid = db
    noisy = [2, 10, 6, 4, 8, 6, 3, 9]  # about binomial(150, 0.04): sd 2.4
    with buckets(store, pid) as b:
        baseline(b, failures=noisy)
        traffic(b, D, D + 2 * HOUR, 45)
    (c, _) = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    # 1008 failures in 25200 (p = 0.04): the mean of 150 (p_h - p)^2 is 7.25 / 150, over p~(1 - p~).
    floored = (1008 + 0.5) / (25200 + 1)
    expected = 7.25 / 150 / (floored * (1 - floored))
    assert expected == pytest.approx(phi_of(noisy)) and expected == pytest.approx(7.25 / 5.76, rel=1e-3)
    assert c.figures["phi"] == round(expected, 3)


def test_a_mean_statistic_follows_the_evaluators_direction(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = EvaluatorSpec(name="toxicity", kind="python", function="m:f", threshold=None, direction="lower_is_better")
    score = {"dimension": "toxicity", "version": spec.version, "good": 0.1, "bad": 0.5}
    with buckets(store, pid) as b:
        # 15 of 150 score 0.5, the rest 0.1: a mean of 0.14, for both intents.
        baseline(b, failures=15, **score)
        baseline(b, failures=15, intent="billing", **score)
        # refund gets worse (60 of 150 at 0.5: 0.26); billing gets much better (all at 0.0).
        traffic(b, D, D + 2 * HOUR, 60, **score)
        traffic(b, D, D + 2 * HOUR, 0, intent="billing", **{**score, "good": 0.0})
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}, spec=spec)
    # billing's z is -14 but a lower toxicity is no drift; the pooled mean (0.13) improved too.
    assert [c.labels["intent"] for c in found] == ["refund"]
    (c,) = found
    assert c.figures["statistic"] == "mean" and c.figures["observed"] == pytest.approx(0.26)
    assert c.figures["baseline"] == pytest.approx(0.14) and c.figures["effect"] == pytest.approx(-0.12)
    variance = 0.034 - 0.14 ** 2
    assert c.figures["z"] == pytest.approx(0.12 / math.sqrt(variance / 150 + variance / 25200), abs=1e-3)
    assert "mean score 0.260" in c.summary


def test_a_service_still_warming_up_is_not_checked(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        traffic(b, D, D + 2 * HOUR, 60)
    for warm in (set(), {"another-service"}):
        state: dict[str, Any] = {}
        assert check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), state, warm=warm) == []
        assert state["holds"] == {}
    assert check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}, warm={SVC})


# -- CUSUM -----------------------------------------------------------------------------------------------


def cusum(store: Store, pid: int, tick: int, detector: DriftDetector, state: dict[str, Any],
          warm: set[str] | None = None, paged: frozenset[tuple[str, str, str]] = frozenset()) -> list[Candidate]:
    found, _ = cusum_kept(store, pid, tick, detector, state, warm, paged)
    return found


def cusum_kept(store: Store, pid: int, tick: int, detector: DriftDetector, state: dict[str, Any],
               warm: set[str] | None = None, paged: frozenset[tuple[str, str, str]] = frozenset()
               ) -> tuple[list[Candidate], set[str]]:
    with store.engine.connect() as conn:
        return detector.cusum(conn, pid, tick, SPEC, state, {SVC} if warm is None else warm, paged)


def test_cusum_accumulates_a_small_persistent_drop_into_a_ticket_and_clears_after(db: tuple[Store, int]) -> None:
    store, pid = db
    drift_hours, normal_hours = 10, 30
    with buckets(store, pid) as b:
        baseline(b)
        # 11 failures an hour instead of 6: 0.927 vs 0.96, z = -2.1 an hour (never the z rule's -4).
        baseline(b, failures=11, hours=drift_hours, end=D + drift_hours * HOUR)
        baseline(b, hours=normal_hours, end=D + (drift_hours + normal_hours) * HOUR)
    detector, state = DriftDetector(DriftConfig()), {}
    key = key_of(rule="cusum")
    sums, fired = [], []
    for hour in range(1, drift_hours + normal_hours + 1):
        found = cusum(store, pid, D + hour * HOUR, detector, state)
        sums.append(state["cusum"].get(key, 0.0))
        fired.append(bool(found))
        if found:
            (c,) = found
            assert (c.kind, c.rule, c.severity, c.evaluator_version) == ("drift", "cusum", "ticket", V)
            assert c.labels == {"service": SVC, "agent_version": "1.0", "intent": ""}
            assert 4 < c.figures["cusum"] <= 8 and c.figures["h"] == 8 and c.figures["k"] == 0.5
            assert c.figures["n"] == 150 and c.figures["cusum"] == pytest.approx(sums[-1], abs=1e-3)
        with store.engine.connect() as conn:
            z_found, _ = detector.check(conn, pid, D + hour * HOUR, SPEC, {}, {SVC}, set())
        assert z_found == [], "the slow drift never reaches the z rule"
    # Each drifting hour adds about 2.1 - 0.5: the sum passes h = 8 on the 6th hour, not before ...
    assert all(b > a for a, b in zip(sums[:5], sums[1:5]))
    first = fired.index(True)
    assert first == 5 and sums[first - 1] <= 8
    # ... and from then on it is clamped at h: it holds what the alarm needed, not the whole drift.
    assert all(fired[first:drift_hours]) and all(total == 8 for total in sums[first:drift_hours])
    # Back to normal, the sum falls by at least k an hour; the ticket clears at h / 2, and the sum starts afresh.
    cleared = fired.index(False, first)
    assert drift_hours < cleared <= drift_hours + 8 and sums[cleared] == 0.0
    assert not any(fired[cleared:]), "the episode that alerted and cleared never re-opens"
    assert key not in state["cusum"] and key not in state["cusum_alarms"]


def test_cusum_after_a_long_incident_clears_within_hours_and_does_not_reopen(db: tuple[Store, int]) -> None:
    store, pid = db
    incident_hours, after_hours = 12, 48
    with buckets(store, pid) as b:
        baseline(b)
        # 30 failures an hour for 12 hours (x = -7.5 an hour), then the baseline's 6 again.
        baseline(b, failures=30, hours=incident_hours, end=D + incident_hours * HOUR)
        baseline(b, hours=after_hours, end=D + (incident_hours + after_hours) * HOUR)
    detector, state = DriftDetector(DriftConfig()), {}
    key = key_of(rule="cusum")
    fired = [bool(cusum(store, pid, D + hour * HOUR, detector, state))
             for hour in range(1, incident_hours + after_hours + 1)]
    first = fired.index(True)
    cleared = fired.index(False, first)
    # Unclamped, the sum would have reached 12 x 7 = 84 and taken over a day (at k = 0.5 an hour, more with the
    # incident in the baseline) to fall below h again; clamped, the ticket clears within h / 2 / k = 8 hours.
    assert first < 2 and incident_hours < cleared <= incident_hours + 8, fired
    assert not any(fired[cleared:]), fired
    assert key not in state["cusum"]


def test_cusum_starts_afresh_while_the_z_rule_pages_the_series(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        baseline(b, failures=30, hours=12, end=D + 12 * HOUR)
        baseline(b, hours=12, end=D + 24 * HOUR)
    detector, state = DriftDetector(DriftConfig()), {}
    key = key_of(rule="cusum")
    paged = frozenset({(SVC, "1.0", V)})
    for hour in range(1, 13):  # the incident, paged by the z rule all along: it has the episode
        assert cusum(store, pid, D + hour * HOUR, detector, state, paged=paged) == []
        assert key not in state["cusum"] and key not in state["cusum_alarms"]
    # The page resolved with the incident: nothing of it is carried forward into a ticket.
    assert not any(cusum(store, pid, D + hour * HOUR, detector, state) for hour in range(13, 25))
    # Another series' page does not reset this one.
    other = frozenset({(SVC, "2.0", V)})
    state = {}
    assert any(cusum(store, pid, D + hour * HOUR, detector, state, paged=other) for hour in range(1, 13))


def test_an_alarmed_cusum_keeps_its_ticket_through_an_hour_it_cannot_judge(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        baseline(b, failures=30, hours=3, end=D + 3 * HOUR)
        put(b, D + 3 * HOUR + 30 * MIN, 5, 3)  # 5 sessions in the 4th hour: fewer than min_n
        baseline(b, failures=30, hours=1, end=D + 5 * HOUR)
    detector, state = DriftDetector(DriftConfig()), {}
    key = key_of(rule="cusum")
    assert [bool(cusum(store, pid, D + hour * HOUR, detector, state)) for hour in (1, 2, 3)] == [True, True, True]
    found, kept = cusum_kept(store, pid, D + 4 * HOUR, detector, state)
    assert found == [] and kept == {key}, "left as it is, neither resolved nor updated"
    found, kept = cusum_kept(store, pid, D + 5 * HOUR, detector, state)
    assert [c.dedup_key for c in found] == [key] and kept == set()


def test_cusum_skips_cold_services(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b)
        baseline(b, failures=60, hours=3, end=D + 3 * HOUR)
    detector, state = DriftDetector(DriftConfig()), {}
    for hour in (1, 2, 3):
        assert cusum(store, pid, D + hour * HOUR, detector, state, warm=set()) == []
    assert state["cusum"] == {}


# -- scored sessions, intents, projects, perfect baselines and shadow scores -----------------------------------


def test_errored_evaluations_are_not_scored_sessions(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b, errors=50)  # 200 evaluations an hour, 150 of them scored
        # Every 4 minutes 10 evaluations, 9 of them errors: 15 scored sessions an hour, 8 of 15 failing.
        for j in range(30):
            put(b, D + j * 4 * MIN, 1, 1 if j % 15 < 8 else 0, errors=9)
    with store.engine.connect() as conn:
        window = rollups.totals(conn, pid, "faithfulness", since_ns=D + 15 * MIN, until_ns=D + 75 * MIN)
    assert (window.count, window.errors, window.weighted_count, window.failures) == (150, 135, 15, 8)
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    assert found == [], f"15 scored sessions < min_n 20, yet: n={[c.figures['n'] for c in found]}"
    # With min_n 15 it is checked, on the scored sessions of the window and of the baseline.
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0, min_n=15)), {})
    assert {c.labels["intent"] for c in found} == {"refund", ""}
    for c in found:
        assert c.figures["n"] == 15 and c.figures["baseline_n"] == 25200 and c.figures["phi"] == 1.0
        assert c.figures["z"] == pytest.approx(z_of(8, 15), abs=1e-3)


def test_a_series_without_intent_counts_once_in_its_baseline(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b, intent="", failures=[0, 12])
        traffic(b, D, D + 2 * HOUR, 75, intent="")
    (c,) = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    assert c.labels["intent"] == "" and c.figures["baseline"] == pytest.approx(0.96)
    assert c.figures["baseline_n"] == 168 * 150
    assert c.figures["phi"] == round(phi_of([0, 12]), 3)
    assert c.figures["z"] == pytest.approx(z_of(75, 150, phi=phi_of([0, 12])), abs=1e-3)


def test_baselines_are_per_project(db: tuple[Store, int]) -> None:
    store, pid = db
    other = store.ensure_project(f"{pid}-other")
    with buckets(store, pid) as b:
        baseline(b)
        traffic(b, D, D + 2 * HOUR, BASE_FAILURES)
    with buckets(store, other) as b:
        baseline(b, failures=75)  # a pass rate of 0.5, and steady
        traffic(b, D, D + 2 * HOUR, 75)
    assert check(store, other, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {}) == []
    detector = DriftDetector(DriftConfig(hold_s=0))
    assert check(store, pid, D + 75 * MIN, detector, {}) == []
    found = check(store, other, D + 75 * MIN, detector, {})
    assert found == [], f"judged against the other project's baseline: {[c.figures['baseline'] for c in found]}"


def test_a_perfect_baseline_still_catches_a_collapse(db: tuple[Store, int]) -> None:
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b, failures=0)
        traffic(b, D, D + 2 * HOUR, 75)
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    assert {c.labels["intent"] for c in found} == {"refund", ""}
    for c in found:
        assert c.figures["baseline"] == 1.0 and c.figures["observed"] == 0.5 and c.figures["n"] == 150
        assert c.figures["phi"] == 1.0 and c.figures["baseline_n"] == 25200 and c.figures["z"] < -30


def test_after_a_flawless_week_one_failure_is_not_a_page(db: tuple[Store, int]) -> None:
    """The baseline's failure rate is floored like its variance: one failure in a 20-session hour after 25,200
    passes is unusual (z about -3.4) but not a page."""
    store, pid = db
    with buckets(store, pid) as b:
        baseline(b, failures=0)
        traffic(b, D, D + 2 * HOUR, 1, per_hour=20)
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    assert found == []


def test_shadow_scores_are_a_new_evaluator_versions_baseline(db: tuple[Store, int]) -> None:
    store, pid = db
    # A shadow score goes to the series shadow:<name>, a live one to <name>.
    row = {"evaluator": SPEC.name, "evaluator_version": V, "event_time_ns": D, "status": "ok", "score": 0.9,
           "passed": True, "inclusion_probability": 1.0}
    deltas = rollups.score_deltas(pid, {"service": SVC}, [{**row, "shadow": True}, {**row, "shadow": False}])
    assert sorted(key.dimension for key in deltas) == [SPEC.name, rollups.SHADOW_PREFIX + SPEC.name]
    with buckets(store, pid) as b:
        baseline(b, version="old")  # the live scores of the week were the old version's
        baseline(b, dimension=rollups.SHADOW_PREFIX + SPEC.name)  # V scored the same sessions in shadow
        traffic(b, D, D + 2 * HOUR, DROP)  # V live, dropping
    found = check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})
    assert {(c.evaluator_version, c.labels["intent"]) for c in found} == {(V, "refund"), (V, "")}
    for c in found:
        f = c.figures
        assert f["baseline"] == pytest.approx(0.96) and f["baseline_n"] == 25200 and f["n"] == 150
        assert f["new_agent_version"] is False and f["z"] == pytest.approx(z_of(DROP, 150), abs=1e-3)
    # The shadow series is never a window of its own: shadow scores in the window fire nothing.
    with buckets(store, pid) as b:
        traffic(b, D, D + 2 * HOUR, 140, dimension=rollups.SHADOW_PREFIX + SPEC.name)
    assert len(check(store, pid, D + 75 * MIN, DriftDetector(DriftConfig(hold_s=0)), {})) == 2
