"""The closed-form statistics, rare events, judge calibration, evaluator errors and no_data."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from sqlalchemy import insert

from agentwatch.alert.types import Candidate
from agentwatch.evaluate.catalogue import EvaluatorSpec
from agentwatch.monitor import events
from agentwatch.monitor.config import MonitorConfig, NoDataConfig
from agentwatch.monitor.drift import DriftDetector
from agentwatch.monitor.stats import poisson_ci, poisson_sf, wilson
from agentwatch.store import models as m
from agentwatch.store import rollups
from agentwatch.store.models import utcnow
from agentwatch.store.rollups import Totals
from agentwatch.store.store import Store

S = 1_000_000_000
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
SVC = "support-agent"
PAGE = EvaluatorSpec(name="refund_policy", kind="rule", rule="tool_error", threshold=1.0, severity="page",
                     owner="payments-oncall")
TICKET = EvaluatorSpec(name="tool_use", kind="rule", rule="tool_error", threshold=1.0)
JUDGE = EvaluatorSpec(name="faithfulness", kind="faithfulness", threshold=0.8, owner="quality-team")
CONFIG = MonitorConfig()


# -- statistics -------------------------------------------------------------------------------------------


def test_wilson_interval() -> None:
    low, high = wilson(1, 2000)
    assert round(low * 100, 3) == 0.009 and round(high * 100, 2) == 0.28  # [0.009%, 0.28%]
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(20, 30)
    assert low < 20 / 30 < high and high == pytest.approx(0.8077, abs=1e-4)
    assert wilson(0, 50)[0] == pytest.approx(0.0, abs=1e-12) and wilson(50, 50)[1] == pytest.approx(1.0)


def test_poisson_interval_is_the_exact_garwood_one() -> None:
    low, high = poisson_ci(1)
    assert low == pytest.approx(0.0253, abs=1e-4) and high == pytest.approx(5.57, abs=5e-3)
    # Defining equations: P(X >= 1 | low) = 2.5% and P(X <= 1 | high) = 2.5%.
    assert 1 - math.exp(-low) == pytest.approx(0.025, rel=1e-9)
    assert math.exp(-high) * (1 + high) == pytest.approx(0.025, rel=1e-9)
    assert poisson_ci(0) == (0.0, pytest.approx(-math.log(0.025), rel=1e-9))
    low, high = poisson_ci(10)
    assert poisson_sf(10, low) == pytest.approx(0.025, rel=1e-6)
    assert 1 - poisson_sf(11, high) == pytest.approx(0.025, rel=1e-6)


def _direct_tail(k: int, mu: float) -> float:
    """P(X >= k) as a sum of the pmf from k upwards (no cancellation)."""
    return math.fsum(math.exp(-mu + i * math.log(mu) - math.lgamma(i + 1)) for i in range(k, k + 2000))


@pytest.mark.parametrize(("k", "mu"), [(1, 0.5), (3, 2.0), (5, 1.0), (10, 1.003), (10, 10.03), (12, 20.0),
                                       (30, 2.0), (200, 50.0), (2, 1e-6), (50, 49.5)])
def test_poisson_tail_matches_a_direct_sum(k: int, mu: float) -> None:
    assert poisson_sf(k, mu) == pytest.approx(_direct_tail(k, mu), rel=1e-9, abs=1e-300)


def test_poisson_tail_edges() -> None:
    assert poisson_sf(0, 3.0) == 1.0 and poisson_sf(-2, 3.0) == 1.0
    assert poisson_sf(1, 0.0) == 0.0
    assert poisson_sf(1, 2.0) == pytest.approx(1 - math.exp(-2.0))


# -- a store with sessions, scores and labels ---------------------------------------------------------------


def add_session(store: Store, pid: int, sid: str, end_ns: int, *, agent_version: str = "1.0",
                intent: str = "refund", trace_id: str | None = None) -> None:
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(insert(m.sessions).values(
            project_id=pid, session_id=sid, service=SVC, agent_name="agent", agent_version=agent_version,
            intent=intent, user_id="u1", start_ns=end_ns - 30 * S, end_ns=end_ns, spans=1, turns=1, llm_calls=1,
            tool_calls=0, tool_errors=0, errors=0, tokens_in=0, tokens_out=0, agent_tokens_in=0, agent_tokens_out=0,
            usage_spans=1, cost_usd=0.0, complete=True, completed_at=now, flagged=False, sampled=False,
            created_at=now, updated_at=now))
        if trace_id:
            conn.execute(insert(m.trace_sessions).values(project_id=pid, trace_id=trace_id, session_id=sid,
                                                         explicit=True))


def add_score(store: Store, pid: int, sid: str, event_ns: int, spec: EvaluatorSpec, *, passed: bool,
              probability: float = 1.0, status: str = "ok", shadow: bool = False, reason: str = "",
              version: str | None = None) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(m.scores).values(
            project_id=pid, session_id=sid, span_id="", evaluator=spec.name,
            evaluator_version=version or spec.version, status=status,
            score=(1.0 if passed else 0.0) if status == "ok" else None, passed=passed if status == "ok" else None,
            threshold=spec.threshold, direction=spec.direction, reason=reason or None,
            inclusion_probability=probability, event_time_ns=event_ns, shadow=shadow, created_at=utcnow()))


def add_labels(store: Store, pid: int, evaluator: str, version: str, verdicts: Sequence[str], *,
               start_ns: int, step_ns: int = MIN, prefix: str = "l") -> list[int]:
    times = [start_ns + i * step_ns for i in range(len(verdicts))]
    with store.engine.begin() as conn:
        conn.execute(insert(m.labels), [
            {"project_id": pid, "session_id": f"{prefix}{i}", "evaluator": evaluator, "evaluator_version": version,
             "verdict": verdict, "event_time_ns": t, "created_at": utcnow()}
            for i, (verdict, t) in enumerate(zip(verdicts, times))])
    return times


def rare(store: Store, pid: int, tick: int, specs: Sequence[EvaluatorSpec] = (PAGE, TICKET)) -> list[Candidate]:
    with store.engine.connect() as conn:
        return events.rare_events(conn, pid, tick, specs, CONFIG)


# -- rare events ----------------------------------------------------------------------------------------------


def test_a_failure_scored_on_every_session_pages_at_the_next_tick_for_an_hour(db: tuple[Store, int]) -> None:
    store, pid = db
    end = T0 + 10 * MIN + 5 * S
    add_session(store, pid, "s-bad", end, trace_id="ab" * 16)
    add_score(store, pid, "s-bad", end, PAGE, passed=False, reason="refunded $500; limit is $100")
    # Nothing else counts: passing, errored and shadow scores, and a ticket evaluator's failure.
    for i, kwargs in enumerate(({"passed": True}, {"passed": False, "status": "error"},
                                {"passed": False, "shadow": True})):
        add_session(store, pid, f"s-{i}", end)
        add_score(store, pid, f"s-{i}", end, PAGE, **kwargs)
    add_score(store, pid, "s-0", end, TICKET, passed=False)
    assert rare(store, pid, T0 + 10 * MIN) == [], "a tick reads strictly before it"
    (c,) = rare(store, pid, T0 + 11 * MIN)
    assert (c.kind, c.rule, c.severity, c.evaluator, c.dimension, c.evaluator_version, c.owner) == (
        "rare_event", "failure", "page", "refund_policy", "refund_policy", PAGE.version, "payments-oncall")
    assert c.session_ids == ["s-bad"] and c.trace_ids == ["ab" * 16]
    assert c.labels == {"service": SVC, "agent_version": "1.0", "intent": "refund"}
    assert c.figures["observed"] == 1 and c.figures["inclusion_probability"] == 1.0
    assert c.figures["confirmed"] is False and c.figures["reasons"] == ["refunded $500; limit is $100"]
    assert "estimate" not in c.figures and "scored on every session" in c.summary
    # It holds while the failure is less than the window (1 hour) old.
    assert rare(store, pid, T0 + 70 * MIN) and rare(store, pid, T0 + 71 * MIN) == []


def test_a_sampled_failure_is_a_ticket_with_the_population_it_implies(db: tuple[Store, int]) -> None:
    store, pid = db
    end = T0 + 5 * MIN
    add_session(store, pid, "s1", end)
    add_score(store, pid, "s1", end, PAGE, passed=False, probability=0.05)
    (c,) = rare(store, pid, T0 + 6 * MIN)
    low, high = poisson_ci(1)
    assert c.severity == "ticket" and c.figures["estimate"] == 20.0
    assert c.figures["ci95"] == [round(low / 0.05, 3), round(high / 0.05, 3)]
    assert c.figures["ci95"] == [pytest.approx(0.506, abs=1e-3), pytest.approx(111.43, abs=1e-2)]
    assert c.figures["inclusion_probability"] == 0.05 and "about 20 in the population" in c.summary
    # A second sampled failure of the same series: 40, and the interval of k = 2.
    add_session(store, pid, "s2", end + S)
    add_score(store, pid, "s2", end + S, PAGE, passed=False, probability=0.05)
    (c,) = rare(store, pid, T0 + 6 * MIN)
    low, high = poisson_ci(2)
    assert c.figures["estimate"] == 40.0 and c.figures["ci95"] == [round(low / 0.05, 3), round(high / 0.05, 3)]
    assert c.session_ids == ["s1", "s2"] and c.severity == "ticket"


def test_a_label_confirming_a_sampled_failure_makes_it_page(db: tuple[Store, int]) -> None:
    store, pid = db
    end = T0 + 5 * MIN
    add_session(store, pid, "s1", end)
    add_score(store, pid, "s1", end, PAGE, passed=False, probability=0.05)
    with store.engine.begin() as conn:
        # Labels that do not confirm: a false positive, and a `correct` on another evaluator.
        conn.execute(insert(m.labels), [
            {"project_id": pid, "session_id": "s1", "evaluator": PAGE.name, "verdict": "false_positive",
             "event_time_ns": end, "created_at": utcnow()},
            {"project_id": pid, "session_id": "s1", "evaluator": "tool_use", "verdict": "correct",
             "event_time_ns": end, "created_at": utcnow()}])
    assert [c.severity for c in rare(store, pid, T0 + 6 * MIN)] == ["ticket"]
    with store.engine.begin() as conn:
        conn.execute(insert(m.labels).values(project_id=pid, session_id="s1", evaluator=PAGE.name,
                                             evaluator_version=PAGE.version, verdict="correct", event_time_ns=end,
                                             created_at=utcnow()))
    (c,) = rare(store, pid, T0 + 6 * MIN)
    assert c.severity == "page" and c.figures["confirmed"] is True and "confirmed by a label" in c.summary
    assert c.figures["estimate"] == 20.0


def test_a_ticket_evaluator_never_makes_a_rare_event(db: tuple[Store, int]) -> None:
    store, pid = db
    add_session(store, pid, "s1", T0 + MIN)
    add_score(store, pid, "s1", T0 + MIN, TICKET, passed=False)
    assert rare(store, pid, T0 + 2 * MIN) == []
    assert rare(store, pid, T0 + 2 * MIN, specs=()) == []
    # The same failure under a page evaluator of that name would page: the severity is what decides.
    as_page = EvaluatorSpec(name="tool_use", kind="rule", rule="tool_error", threshold=1.0, severity="page")
    assert [c.severity for c in rare(store, pid, T0 + 2 * MIN, specs=(as_page,))] == ["page"]


def test_failures_of_different_series_are_separate_candidates(db: tuple[Store, int]) -> None:
    store, pid = db
    for sid, version, intent in (("a", "1.0", "refund"), ("b", "2.0", "refund"), ("c", "1.0", "billing")):
        add_session(store, pid, sid, T0 + MIN, agent_version=version, intent=intent)
        add_score(store, pid, sid, T0 + MIN, PAGE, passed=False)
    found = rare(store, pid, T0 + 2 * MIN)
    assert sorted((c.labels["agent_version"], c.labels["intent"], tuple(c.session_ids)) for c in found) == [
        ("1.0", "billing", ("c",)), ("1.0", "refund", ("a",)), ("2.0", "refund", ("b",))]
    assert len({c.dedup_key for c in found}) == 3


# -- calibration --------------------------------------------------------------------------------------------------


def calibrate(store: Store, pid: int, tick: int, config: MonitorConfig = CONFIG) -> list[Candidate]:
    with store.engine.connect() as conn:
        return events.calibration(conn, pid, tick, (JUDGE, PAGE), config)


def test_calibration_pages_when_even_the_wilson_upper_bound_is_below_the_floor(db: tuple[Store, int]) -> None:
    store, pid = db
    verdicts = ["correct", "real_failure", "false_positive"] * 10  # 20 of 30 agree
    verdicts[2::3] = ["false_positive", "false_negative"] * 5
    add_labels(store, pid, JUDGE.name, "v1", verdicts, start_ns=T0)
    add_labels(store, pid, JUDGE.name, "v1", ["edge_case"] * 10, start_ns=T0, prefix="edge")
    (c,) = calibrate(store, pid, T0 + DAY)
    assert (c.kind, c.rule, c.severity, c.evaluator, c.evaluator_version, c.owner) == (
        "calibration", "agreement", "page", "faithfulness", "v1", "quality-team")
    assert c.figures["n"] == 30 and c.figures["agree"] == 20 and c.figures["observed"] == pytest.approx(0.6667)
    assert c.figures["ci95"][1] == pytest.approx(wilson(20, 30)[1], abs=1e-4) and c.figures["ci95"][1] < 0.85
    # Newest disagreeing sessions first; edge cases are left out.
    assert c.session_ids[:2] == ["l29", "l26"] and len(c.session_ids) == 10
    assert "agrees with 20 of 30 human labels" in c.summary and "Wilson 95% upper bound" in c.summary


def test_calibration_below_the_floor_with_an_upper_bound_above_it_is_a_ticket(db: tuple[Store, int]) -> None:
    store, pid = db
    verdicts = (["correct"] * 4 + ["false_positive"]) * 6  # 24 of 30: 0.80, Wilson upper 0.905
    add_labels(store, pid, JUDGE.name, "v1", verdicts, start_ns=T0)
    (c,) = calibrate(store, pid, T0 + DAY)
    assert c.severity == "ticket" and c.figures["observed"] == 0.8 and c.figures["ci95"][1] > 0.85


def test_calibration_needs_min_labels_and_ignores_edge_cases(db: tuple[Store, int]) -> None:
    store, pid = db
    add_labels(store, pid, JUDGE.name, "v1", ["false_positive"] * 29, start_ns=T0)
    add_labels(store, pid, JUDGE.name, "v1", ["edge_case"] * 10, start_ns=T0 + HOUR, prefix="edge")
    assert calibrate(store, pid, T0 + DAY) == []
    add_labels(store, pid, JUDGE.name, "v1", ["false_negative"], start_ns=T0 + 2 * HOUR, prefix="last")
    (c,) = calibrate(store, pid, T0 + DAY)
    assert c.figures["n"] == 30 and c.figures["agree"] == 0
    # Only labels of the window: 14 days of event time before the tick.
    assert calibrate(store, pid, T0 + 2 * HOUR + 14 * DAY) == []
    assert calibrate(store, pid, T0 + 2 * HOUR, MonitorConfig()) == [], "labels at or after the tick wait"


def test_calibration_is_per_evaluator_version(db: tuple[Store, int]) -> None:
    store, pid = db
    add_labels(store, pid, JUDGE.name, "v1", ["correct"] * 30, start_ns=T0, prefix="a")
    add_labels(store, pid, JUDGE.name, "v2", ["false_positive"] * 30, start_ns=T0, prefix="b")
    add_labels(store, pid, PAGE.name, "v1", ["correct"] * 30, start_ns=T0, prefix="c")
    found = calibrate(store, pid, T0 + DAY)
    assert [(c.evaluator, c.evaluator_version) for c in found] == [("faithfulness", "v2")]


def test_calibration_started_at_is_the_label_from_which_it_has_held(db: tuple[Store, int]) -> None:
    store, pid = db
    # Labels 0..29: 6 disagree (prefix 30: 0.80, holds); 30..39 agree (prefix 40: 34/40 = 0.85, no longer
    # holds); 40..42 disagree (prefix 41: 34/41 = 0.83, holds again): it has held since label 40.
    verdicts = (["correct"] * 4 + ["false_positive"]) * 6 + ["correct"] * 10 + ["false_negative"] * 3
    times = add_labels(store, pid, JUDGE.name, "v1", verdicts, start_ns=T0, step_ns=10 * MIN)
    (c,) = calibrate(store, pid, T0 + DAY)
    assert c.started_ns == times[40] and c.figures["n"] == 43
    # With the first 40 only, the condition held at label 29 and broke at 39: nothing now.
    assert calibrate(store, pid, times[40]) == []
    assert calibrate(store, pid, times[39])[0].started_ns == times[29]


def test_calibration_started_at_after_a_run_of_agreement(db: tuple[Store, int]) -> None:
    store, pid = db
    # 30 agreeing labels, then disagreements: 30/(30+k) < 0.85 from k = 6, the label at index 35.
    times = add_labels(store, pid, JUDGE.name, "v1", ["correct"] * 30 + ["false_positive"] * 10, start_ns=T0)
    (c,) = calibrate(store, pid, T0 + DAY)
    assert c.started_ns == times[35] and c.severity == "ticket"


# -- evaluator errors --------------------------------------------------------------------------------------------------


def totals(count: float, errors: float) -> Totals:
    scored = count - errors
    return Totals(count, scored, 0.9 * scored, 0.81 * scored, 0.0, 0.0, errors)


def test_evaluator_errors_per_version_over_the_window() -> None:
    windows = {"faithfulness": {
        (SVC, "1.0", "refund", "v1"): totals(6, 1), (SVC, "2.0", "billing", "v1"): totals(4, 1),  # 2 of 10: 0.2
        (SVC, "1.0", "refund", "v2"): totals(9, 9),  # all failed, but fewer than min_n attempts
        (SVC, "1.0", "", "v3"): totals(100, 19),  # 19%: below the floor
    }, "tool_use": {(SVC, "1.0", "refund", "t1"): totals(10, 10)}}
    found = events.evaluator_errors(windows, (JUDGE,), CONFIG)
    (c,) = found
    assert (c.kind, c.rule, c.severity, c.evaluator, c.evaluator_version, c.owner) == (
        "evaluator_errors", "error_ratio", "ticket", "faithfulness", "v1", "quality-team")
    assert c.figures == {"observed": 0.2, "n": 10, "errors": 2, "floor": 0.2}
    assert "could not evaluate 2 of 10 sessions (20%)" in c.summary
    # tool_use's errors count once its spec is checked.
    assert [c.evaluator_version for c in events.evaluator_errors(windows, (JUDGE, TICKET), CONFIG)] == ["v1", "t1"]
    assert events.evaluator_errors({}, (JUDGE,), CONFIG) == []


def test_evaluator_errors_count_live_evaluations_only_not_shadow_ones(db: tuple[Store, int]) -> None:
    store, pid = db
    tick = T0 + HOUR
    summary = {"service": SVC, "agent_version": "1.0", "intent": "refund"}

    def row(i: int, version: str, *, error: bool, shadow: bool) -> dict[str, object]:
        return {"evaluator": JUDGE.name, "evaluator_version": version, "event_time_ns": T0 + i * MIN,
                "status": "error" if error else "ok", "score": None if error else 0.9,
                "passed": None if error else True, "inclusion_probability": 1.0, "shadow": shadow}

    with store.engine.begin() as conn:
        # Live: 3 of 10 evaluations failed to evaluate. Shadow: a new version failing on all 20 past sessions.
        rollups.apply_scores(conn, pid, summary, [row(i, "v1", error=i < 3, shadow=False) for i in range(10)])
        rollups.apply_scores(conn, pid, summary, [row(i, "v2", error=True, shadow=True) for i in range(20)])
    with store.engine.connect() as conn:
        # The window totals the drift check reads (and hands on): the live series only.
        _, window = DriftDetector(CONFIG.drift).check(conn, pid, tick, JUDGE, {}, set(), set())
        shadow = rollups.totals(conn, pid, rollups.SHADOW_PREFIX + JUDGE.name, since_ns=T0, until_ns=tick)
    assert (shadow.count, shadow.errors) == (20, 20)
    (c,) = events.evaluator_errors({JUDGE.name: window}, (JUDGE,), CONFIG)
    assert c.evaluator_version == "v1" and c.figures == {"observed": 0.3, "n": 10, "errors": 3, "floor": 0.2}


# -- no data -----------------------------------------------------------------------------------------------------------


NO_DATA = MonitorConfig(no_data=NoDataConfig(services=(SVC,), evaluators=("faithfulness",)))


def sessions_at(store: Store, pid: int, *times: int, service: str = SVC) -> None:
    with store.engine.begin() as conn:
        for t in times:
            rollups.add(conn, pid, t, {"service": service}, rollups.SESSION_DIMENSION, "", {"count": 1,
                                                                                             "weighted_count": 1})


def silent(store: Store, pid: int, tick: int, warm_since: int | None, first_seen: dict[str, int],
           config: MonitorConfig = NO_DATA) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        found = events.no_data(conn, pid, tick, config, warm_since, first_seen)
    for c in found:
        assert c.kind == "no_data" and c.severity == "ticket" and c.figures["observed"] == 0
    return [(c.rule, c.labels["service"] or c.evaluator) for c in found]


def test_no_data_for_a_silent_service_and_evaluator_once_warm(db: tuple[Store, int]) -> None:
    store, pid = db
    tick = T0 + 2 * DAY
    sessions_at(store, pid, tick - 31 * MIN)
    sessions_at(store, pid, tick - 10 * MIN, service="another")
    assert silent(store, pid, tick, T0, {SVC: T0}) == [("service", SVC), ("evaluator", "faithfulness")]
    # A session of the service within the period, and a score of the evaluator: nothing.
    sessions_at(store, pid, tick - 29 * MIN)
    with store.engine.begin() as conn:
        rollups.add(conn, pid, tick - 5 * MIN, {"service": SVC}, "faithfulness", "v1", {"count": 1, "errors": 1})
    assert silent(store, pid, tick, T0, {SVC: T0}) == []
    assert silent(store, pid, tick, T0, {SVC: T0}, MonitorConfig()) == [], "nothing configured, nothing checked"


def test_no_data_waits_for_the_warm_up(db: tuple[Store, int]) -> None:
    store, pid = db
    tick = T0 + 2 * DAY
    # The monitor started 23 hours ago: neither is checked.
    assert silent(store, pid, tick, tick - 23 * HOUR, {SVC: tick - 23 * HOUR}) == []
    # The monitor is warm, but the service was first seen an hour ago: only the evaluator is checked.
    assert silent(store, pid, tick, T0, {SVC: tick - HOUR}) == [("evaluator", "faithfulness")]
    # A configured service never seen at all counts from the monitor's start.
    assert silent(store, pid, tick, T0, {}) == [("service", SVC), ("evaluator", "faithfulness")]
    assert silent(store, pid, tick, None, {}) == []
