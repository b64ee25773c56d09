"""The Monitor: ticks in event time, readiness, state that survives a restart, the alert lifecycle, inhibition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from agentwatch.alert.routes import load_routes
from agentwatch.evaluate.catalogue import Catalogue, EvaluatorSpec
from agentwatch.monitor.checker import Monitor
from agentwatch.monitor.config import MonitorConfig
from agentwatch.store import models as m
from agentwatch.store import rollups
from agentwatch.store.models import utcnow
from agentwatch.store.store import Store

S = 1_000_000_000
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
IDLE_S = 300
SVC = "support-agent"
PAGE = EvaluatorSpec(name="refund_policy", kind="rule", rule="tool_error", threshold=1.0, severity="page",
                     owner="payments-oncall")
JUDGE = EvaluatorSpec(name="faithfulness", kind="faithfulness", threshold=0.8, owner="quality-team")
HELPFUL = EvaluatorSpec(name="helpfulness", kind="faithfulness", params={"aspect": "help"}, threshold=0.8)
CATALOGUE = Catalogue((PAGE, JUDGE, HELPFUL))


def monitor_of(store: Store, config: MonitorConfig | None = None) -> Monitor:
    """Built as the pipeline builds it."""
    return Monitor(store.engine, CATALOGUE, config or MonitorConfig(), slos=(), routes=load_routes({}),
                   idle_timeout_s=IDLE_S)


def complete(store: Store, pid: int, sid: str, start_ns: int, end_ns: int, *, failing: bool = False,
             with_score: bool = True, trace_id: str | None = None, probability: float = 1.0) -> None:
    """What completion and evaluation write: the session row, its _session bucket, its score and bucket."""
    now = utcnow()
    summary = {"service": SVC, "agent_version": "1.0", "intent": "refund", "start_ns": start_ns, "end_ns": end_ns,
               "errors": 0, "cost_usd": 0.0, "work_ms": 100.0}
    with store.engine.begin() as conn:
        conn.execute(insert(m.sessions).values(
            project_id=pid, session_id=sid, agent_name="agent", user_id="u1", spans=1, turns=1, llm_calls=1,
            tool_calls=0, tool_errors=0, tokens_in=0, tokens_out=0, agent_tokens_in=0, agent_tokens_out=0,
            usage_spans=1, complete=True, completed_at=now, flagged=failing, sampled=False, created_at=now,
            updated_at=now, **{k: v for k, v in summary.items() if k != "work_ms"}, work_ms=100.0))
        if trace_id:
            conn.execute(insert(m.trace_sessions).values(project_id=pid, trace_id=trace_id, session_id=sid,
                                                         explicit=True))
        rollups.apply_sessions(conn, pid, [summary])
        if with_score:
            score = {"project_id": pid, "session_id": sid, "span_id": "", "evaluator": PAGE.name,
                     "evaluator_version": PAGE.version, "status": "ok", "score": 0.0 if failing else 1.0,
                     "passed": not failing, "threshold": 1.0, "direction": "higher_is_better",
                     "reason": "refund above the limit" if failing else None, "inclusion_probability": probability,
                     "event_time_ns": end_ns, "shadow": False, "created_at": now}
            conn.execute(insert(m.scores).values(**score))
            rollups.apply_scores(conn, pid, summary, [score])


def alerts(store: Store, pid: int) -> list[dict[str, Any]]:
    a = m.alerts.c
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(m.alerts).where(a.project_id == pid).order_by(a.id))]


def state_of(store: Store, pid: int) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(select(m.monitor_state.c.last_tick_ns, m.monitor_state.c.state)
                           .where(m.monitor_state.c.project_id == pid)).one()
    return {"last_tick_ns": int(row[0]), **row[1]}


# -- the whole lifecycle, on both engines -----------------------------------------------------------------------


@pytest.fixture
def pg_or_sqlite(db_url: str) -> Iterator[tuple[Store, int]]:
    store = Store(db_url)
    store.migrate()
    yield store, store.ensure_project("support")
    store.close()


def test_a_rare_event_opens_at_the_next_tick_and_resolves_a_window_later_across_a_restart(
        pg_or_sqlite: tuple[Store, int]) -> None:
    store, pid = pg_or_sqlite
    for i in range(24):  # a session every 5 minutes for 2 hours
        complete(store, pid, f"s{i}", T0 + i * 5 * MIN + 10 * S, T0 + i * 5 * MIN + 40 * S)
    failed_at = T0 + 30 * MIN + 10 * S
    complete(store, pid, "s-bad", failed_at - 20 * S, failed_at, failing=True, trace_id="cd" * 16)

    first = monitor_of(store)
    # The watermark is 2 minutes plus the idle timeout past the failure: ticks T0+1m .. T0+32m are due.
    assert first.run(pid, failed_at + 2 * MIN + IDLE_S * S) == 32
    assert first.last_tick(pid) == T0 + 32 * MIN
    (alert,) = alerts(store, pid)
    assert (alert["kind"], alert["rule"], alert["severity"], alert["state"]) == ("rare_event", "failure", "page",
                                                                               "firing")
    assert alert["started_ns"] == T0 + 31 * MIN, "started_at is the first tick after the failure"
    assert alert["session_ids"] == ["s-bad"] and alert["trace_ids"] == ["cd" * 16]
    assert alert["evaluator"] == PAGE.name and alert["owner"] == "payments-oncall"
    saved = state_of(store, pid)
    assert saved["last_tick_ns"] == T0 + 32 * MIN and saved["since"] == T0 and saved["first_seen"] == {SVC: T0}

    # A restarted server (a new Monitor) resumes at the next tick: 88 more ticks to T0+2h, none run twice.
    second = monitor_of(store)
    assert second.run(pid, T0 + 2 * HOUR + IDLE_S * S) == 88
    assert second.run(pid, T0 + 2 * HOUR + IDLE_S * S) == 0
    assert first.run(pid, T0 + 2 * HOUR + IDLE_S * S) == 0
    (alert,) = alerts(store, pid)
    # Firing while the failure is less than an hour old: the tick T0+91m no longer sees it.
    assert alert["state"] == "resolved" and alert["resolved_ns"] == T0 + 91 * MIN
    assert state_of(store, pid)["last_tick_ns"] == T0 + 2 * HOUR
    n = m.notifications.c
    with store.engine.connect() as conn:
        sent = conn.execute(select(n.event, n.notifier).where(n.alert_id == alert["id"]).order_by(n.id)).all()
    assert [tuple(r) for r in sent] == [("trigger", "log"), ("resolve", "log")]


# -- scheduling, on SQLite ----------------------------------------------------------------------------------------


def queue_job(store: Store, pid: int, sid: str, *, age: timedelta = timedelta(0), reason: str = "complete") -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(m.eval_jobs).values(project_id=pid, session_id=sid, reason=reason, state="queued",
                                                attempts=0, created_at=utcnow() - age))


def test_a_queued_evaluation_holds_back_the_ticks_after_its_session(db: tuple[Store, int]) -> None:
    store, pid = db
    complete(store, pid, "s0", T0 + 10 * S, T0 + 40 * S)
    complete(store, pid, "pending", T0 + 9 * MIN, T0 + 10 * MIN + 30 * S, with_score=False)
    queue_job(store, pid, "pending")
    monitor = monitor_of(store)
    watermark = T0 + HOUR + IDLE_S * S
    with store.engine.connect() as conn:
        assert monitor.ready_ns(conn, pid, watermark) == T0 + 10 * MIN + 30 * S
    # Ticks up to T0+10m read only data before the pending session's end; T0+11m would read it.
    assert monitor.run(pid, watermark) == 10 and monitor.last_tick(pid) == T0 + 10 * MIN
    assert monitor.run(pid, watermark) == 0
    with store.engine.begin() as conn:
        conn.execute(delete(m.eval_jobs).where(m.eval_jobs.c.project_id == pid))
    # Evaluated: now the watermark less the idle timeout bounds it.
    assert monitor.run(pid, watermark) == 50 and monitor.last_tick(pid) == T0 + HOUR
    assert monitor.run(pid, watermark + 30 * S) == 0, "T0+61m is not yet idle_timeout behind the watermark"
    assert monitor.run(pid, watermark + MIN) == 1


def test_a_stalled_evaluation_no_longer_holds_back(db: tuple[Store, int]) -> None:
    store, pid = db
    complete(store, pid, "s0", T0 + 10 * S, T0 + 40 * S)
    complete(store, pid, "stuck", T0 + MIN, T0 + 2 * MIN, with_score=False)
    queue_job(store, pid, "stuck", age=timedelta(minutes=11))
    monitor = monitor_of(store)
    with store.engine.connect() as conn:
        assert monitor.ready_ns(conn, pid, T0 + HOUR) == T0 + HOUR - IDLE_S * S
    assert monitor.run(pid, T0 + HOUR) == 55


def test_only_completion_jobs_hold_back_the_ticks(db: tuple[Store, int]) -> None:
    store, pid = db
    complete(store, pid, "s0", T0 + 10 * S, T0 + 40 * S)
    complete(store, pid, "old", T0 + MIN, T0 + 2 * MIN)
    # Re-scoring an old session (a backfill, a new evaluator version in shadow) leaves the live series complete.
    queue_job(store, pid, "old", reason="backfill")
    queue_job(store, pid, "old", reason="shadow")
    monitor = monitor_of(store)
    with store.engine.connect() as conn:
        assert monitor.ready_ns(conn, pid, T0 + HOUR) == T0 + HOUR - IDLE_S * S
    queue_job(store, pid, "old")
    with store.engine.connect() as conn:
        assert monitor.ready_ns(conn, pid, T0 + HOUR) == T0 + 2 * MIN
    assert monitor.run(pid, T0 + HOUR) == 2


def test_a_flush_checks_through_the_tick_after_the_last_event(db: tuple[Store, int]) -> None:
    store, pid = db
    complete(store, pid, "s0", T0 + 10 * S, T0 + 40 * S)
    last_event = T0 + 42 * MIN + 5 * S
    complete(store, pid, "s1", last_event - 10 * S, last_event)
    monitor = monitor_of(store)
    # The watermark is far behind (no idle time has passed), but a flush has completed everything.
    assert monitor.run(pid, last_event, final_event_ns=last_event) == 43
    assert monitor.last_tick(pid) == T0 + 43 * MIN
    assert monitor.run(pid, last_event, final_event_ns=last_event) == 0


def test_without_sessions_nothing_runs(db: tuple[Store, int]) -> None:
    store, pid = db
    monitor = monitor_of(store)
    assert monitor.run(pid, T0 + DAY) == 0 and monitor.last_tick(pid) is None


# -- inhibition ----------------------------------------------------------------------------------------------------


D = T0 + 7 * DAY


def drifting(store: Store, pid: int, spec: EvaluatorSpec) -> None:
    """A week at 0.96 (150 scored sessions an hour), then two hours at 0.70 (10 every 5 minutes, 3 failing)."""
    labels = {"service": SVC, "agent_version": "1.0", "intent": "refund"}
    with store.engine.begin() as conn:
        for hour in range(7 * 24):
            rollups.add(conn, pid, T0 + hour * HOUR + 30 * MIN, labels, spec.name, spec.version,
                        {"count": 150, "weighted_count": 150, "failures": 6, "weighted_failures": 6})
        for step in range(24):
            rollups.add(conn, pid, D + step * 5 * MIN, labels, spec.name, spec.version,
                        {"count": 10, "weighted_count": 10, "failures": 3, "weighted_failures": 3})


def warm_state(store: Store, pid: int, last_tick: int) -> None:
    """The monitor's state as after a week of ticks: the service seen from T0."""
    with store.engine.begin() as conn:
        conn.execute(insert(m.monitor_state).values(project_id=pid, last_tick_ns=last_tick,
                                                    state={"since": T0, "first_seen": {SVC: T0}},
                                                    updated_at=utcnow()))


def label(store: Store, pid: int, verdicts: list[str], start_ns: int, prefix: str) -> list[int]:
    times = [start_ns + i * MIN for i in range(len(verdicts))]
    with store.engine.begin() as conn:
        conn.execute(insert(m.labels), [
            {"project_id": pid, "session_id": f"{prefix}{i}", "evaluator": JUDGE.name,
             "evaluator_version": JUDGE.version, "verdict": v, "event_time_ns": t, "created_at": utcnow()}
            for i, (v, t) in enumerate(zip(verdicts, times))])
    return times


def firing_drift_row(pid: int) -> dict[str, Any]:
    now = utcnow()
    return {"project_id": pid, "dedup_key": "drift:z:faithfulness:0000000000000000", "kind": "drift", "rule": "z",
            "dimension": JUDGE.name, "evaluator": JUDGE.name, "evaluator_version": JUDGE.version,
            "severity": "page", "state": "firing", "started_ns": D - HOUR, "detected_at": now, "updated_at": now,
            "summary": "an earlier drift", "labels": {"service": SVC, "agent_version": "1.0", "intent": "other"},
            "figures": {}, "session_ids": [], "trace_ids": []}


def test_a_firing_calibration_alert_keeps_its_evaluators_drift_from_opening(db: tuple[Store, int]) -> None:
    store, pid = db
    drifting(store, pid, JUDGE)
    drifting(store, pid, HELPFUL)
    # faithfulness agrees with 20 of 30 labels: a calibration page for it.
    times = label(store, pid, ["correct", "correct", "false_positive"] * 10, D - DAY, "l")
    with store.engine.begin() as conn:
        conn.execute(insert(m.alerts).values(**firing_drift_row(pid)))
    warm_state(store, pid, D + 55 * MIN)
    monitor = monitor_of(store)
    assert monitor.run(pid, D + 80 * MIN + IDLE_S * S) == 25
    found = {(a["kind"], a["evaluator"], a["labels"]["intent"]): a for a in alerts(store, pid)}
    calibration = found[("calibration", "faithfulness", "")]
    assert calibration["state"] == "firing" and calibration["severity"] == "page"
    assert calibration["started_ns"] == times[-1], "started_at: the label from which it has held"
    # helpfulness drifts from the 60-minute tick and opens 15 minutes later; faithfulness drifts just the same,
    # but its judge is in doubt: no drift alert opens for it, and its earlier one is neither resolved nor updated.
    opened = {key: a for key, a in found.items() if key[0] == "drift" and a["summary"] != "an earlier drift"}
    assert set(opened) == {("drift", "helpfulness", "refund"), ("drift", "helpfulness", "")}
    assert {a["started_ns"] for a in opened.values()} == {D + 75 * MIN}
    earlier = found[("drift", "faithfulness", "other")]
    assert earlier["state"] == "firing" and earlier["summary"] == "an earlier drift"

    # 100 agreeing labels later the judge is trusted again (120 of 130): calibration resolves, and the
    # earlier drift alert is resolved and the current drift opens once its inhibitor is gone.
    label(store, pid, ["correct"] * 100, D - DAY + HOUR, "m")
    assert monitor.run(pid, D + 90 * MIN + IDLE_S * S) == 10
    found = {(a["kind"], a["evaluator"], a["labels"]["intent"]): a for a in alerts(store, pid)}
    assert found[("calibration", "faithfulness", "")]["state"] == "resolved"
    assert found[("calibration", "faithfulness", "")]["resolved_ns"] == D + 85 * MIN
    assert found[("drift", "faithfulness", "other")]["state"] == "resolved"
    assert found[("drift", "faithfulness", "refund")]["state"] == "firing"
    assert D + 85 * MIN <= found[("drift", "faithfulness", "refund")]["started_ns"] <= D + 90 * MIN


def test_drift_opens_at_the_tick_its_inhibitor_resolves(db: tuple[Store, int]) -> None:
    store, pid = db
    drifting(store, pid, JUDGE)
    label(store, pid, ["correct", "correct", "false_positive"] * 10, D - DAY, "l")
    warm_state(store, pid, D + 55 * MIN)
    monitor = monitor_of(store)
    monitor.run(pid, D + 80 * MIN + IDLE_S * S)
    assert [(a["kind"], a["state"]) for a in alerts(store, pid)] == [("calibration", "firing")]
    label(store, pid, ["correct"] * 100, D - DAY + HOUR, "m")
    monitor.run(pid, D + 90 * MIN + IDLE_S * S)
    found = {(a["kind"], a["labels"]["intent"]): a for a in alerts(store, pid)}
    assert found[("calibration", "")]["resolved_ns"] == D + 85 * MIN
    # The calibration rule was checked at D+85m and no longer holds: it inhibits nothing at that very tick.
    assert found[("drift", "refund")]["started_ns"] == D + 85 * MIN
    assert found[("drift", "")]["started_ns"] == D + 85 * MIN


def test_labels_posted_late_are_checked_at_the_latest_tick(db: tuple[Store, int]) -> None:
    store, pid = db
    complete(store, pid, "s0", T0 + 10 * S, T0 + 40 * S)
    monitor = monitor_of(store)
    assert monitor.run(pid, T0 + HOUR + IDLE_S * S) == 60
    assert alerts(store, pid) == []
    # Labels of sessions long past arrive; no new tick is due, yet calibration is checked at T0+1h.
    times = label(store, pid, ["false_positive"] * 30, T0 + MIN, "late")
    assert monitor.run(pid, T0 + HOUR + IDLE_S * S) == 0
    (alert,) = alerts(store, pid)
    assert alert["kind"] == "calibration" and alert["state"] == "firing" and alert["started_ns"] == times[-1]


def test_a_sampled_rare_event_confirmed_by_a_later_label_pages(db: tuple[Store, int]) -> None:
    store, pid = db
    complete(store, pid, "s0", T0 + 10 * S, T0 + 40 * S)
    failed_at = T0 + 10 * MIN + 10 * S
    complete(store, pid, "sampled", failed_at - 20 * S, failed_at, failing=True, probability=0.05)
    monitor = monitor_of(store)
    monitor.run(pid, T0 + 15 * MIN + IDLE_S * S)
    (alert,) = alerts(store, pid)
    assert alert["severity"] == "ticket" and alert["figures"]["estimate"] == 20.0
    with store.engine.begin() as conn:
        conn.execute(insert(m.labels).values(project_id=pid, session_id="sampled", evaluator=PAGE.name,
                                             evaluator_version=PAGE.version, verdict="correct",
                                             event_time_ns=failed_at, created_at=utcnow()))
    monitor.run(pid, T0 + 20 * MIN + IDLE_S * S)
    (escalated,) = alerts(store, pid)
    assert escalated["figures"]["confirmed"] is True, "the candidate is confirmed, and the alert was updated"
    # The same alert (same episode), now a page, and triggered again.
    assert escalated["severity"] == "page" and escalated["state"] == "firing"
    assert (escalated["id"], escalated["started_ns"]) == (alert["id"], alert["started_ns"])
    assert escalated["notified_at"] is not None
    n = m.notifications.c
    with store.engine.connect() as conn:
        sent = conn.execute(select(n.event, n.notifier).where(n.alert_id == alert["id"]).order_by(n.id)).all()
    assert [tuple(r) for r in sent] == [("trigger", "log"), ("trigger", "log")]
    # Confirmed, it stays a page: later ticks trigger nothing more.
    monitor.run(pid, T0 + 25 * MIN + IDLE_S * S)
    with store.engine.connect() as conn:
        assert len(conn.execute(select(n.id).where(n.alert_id == alert["id"])).all()) == 2


def test_cluster_hysteresis_and_reason_kinds_are_configured_and_checked(tmp_path: Any) -> None:
    from agentwatch.errors import ConfigError
    from agentwatch.settings import load_file

    def load(text: str) -> MonitorConfig:
        path = tmp_path / "agentwatch.yaml"
        path.write_text(text)
        return MonitorConfig.from_section(load_file(path)["sections"].get("alerts"), str(path))

    default = MonitorConfig().clusters
    assert default.keep_firing_for_s == 3600 and default.reason_kinds == ("rule", "python")
    config = load("alerts:\n  clusters:\n    keep_firing_for: 30m\n    reason_kinds: [rule, llm]\n").clusters
    assert config.keep_firing_for_s == 1800 and config.reason_kinds == ("rule", "llm")
    assert load("alerts:\n  clusters: {reason_kinds: []}\n").clusters.reason_kinds == ()
    assert monitor_of_config(load("alerts:\n  clusters: {keep_firing_for: 0s}\n")).keep_firing_ns == {"new_cluster": 0}
    with pytest.raises(ConfigError, match=r"line 3, key alerts.clusters.reason_kinds: expected a list of evaluator "
                                          r"kinds among rule, python, llm, faithfulness, external, got \['claims'\]"):
        load("alerts:\n  clusters:\n    reason_kinds: [claims]\n")
    with pytest.raises(ConfigError, match="key alerts.clusters.keep_firing_for: expected a duration"):
        load("alerts:\n  clusters: {keep_firing_for: soon}\n")


def monitor_of_config(config: MonitorConfig) -> Monitor:
    return Monitor(None, CATALOGUE, config, slos=(), routes=load_routes({}), idle_timeout_s=IDLE_S)
