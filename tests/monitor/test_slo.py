"""SLOs: config, error budgets, multiwindow multi-burn-rate alerts and time slices, on both engines."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, insert

from agentwatch.alert.types import Candidate
from agentwatch.errors import ConfigError
from agentwatch.evaluate.catalogue import Catalogue, EvaluatorSpec
from agentwatch.monitor import slo
from agentwatch.settings import load_file
from agentwatch.store import models as m
from agentwatch.store import rollups
from agentwatch.store.models import utcnow
from agentwatch.store.store import Store

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, an hour boundary
S = 1_000_000_000
MIN = rollups.MINUTE_NS
HOUR = rollups.HOUR_NS

CATALOGUE = Catalogue((
    EvaluatorSpec(name="faithfulness", kind="faithfulness", threshold=0.8, owner="quality-team"),
    EvaluatorSpec(name="refund_policy", kind="rule", rule="tool_error", threshold=1.0, owner="payments-oncall"),
    EvaluatorSpec(name="tool_use", kind="rule", rule="tool_error", threshold=1.0),
))


@pytest.fixture
def db(db_url: str) -> Iterator[tuple[Store, int]]:
    store = Store(db_url)
    store.migrate()
    yield store, store.ensure_project("support")
    store.close()


def session(end_ns: int, latency_ms: float = 1000.0, *, intent: str = "refund", service: str = "support-agent",
            errors: int = 0, cost_usd: float = 0.01) -> dict[str, Any]:
    return {"service": service, "agent_version": "1.0", "intent": intent, "start_ns": end_ns - int(latency_ms * 1e6),
            "end_ns": end_ns, "errors": errors, "cost_usd": cost_usd, "work_ms": latency_ms}


def record(store: Store, pid: int, specs: Sequence[slo.SloSpec], sessions: list[dict[str, Any]], *,
           sketches: bool = False) -> None:
    """What the pipeline does at completion (the _session buckets and their sketches only when a test reads them)."""
    with store.engine.begin() as conn:
        slo.record_sessions(conn, pid, specs, sessions)
        if sketches:
            rollups.apply_sessions(conn, pid, sessions)


def run_check(store: Store, pid: int, specs: Sequence[slo.SloSpec], tick: int,
              catalogue: Catalogue | None = CATALOGUE) -> list[Candidate]:
    with store.engine.begin() as conn:
        candidates, checked = slo.check(conn, pid, tick, specs, catalogue)
    assert checked == {("burn_rate", spec.rule) for spec in specs}
    return candidates


def spec_of(yaml_text: str, tmp: Path, catalogue: Catalogue | None = CATALOGUE) -> tuple[slo.SloSpec, ...]:
    path = tmp / "agentwatch.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    return slo.load_slos(load_file(path)["sections"], str(path), catalogue)


# -- configuration ----------------------------------------------------------------

PROPOSAL = """\
project: support-agent
slos:
  - name: refund-latency
    layer: system
    metric: latency_ms
    threshold: 30000
    objective: 0.99
    filter: {intent: [refund]}
    group_by: [intent]
    period: 30d
    owner: payments-oncall
  - name: faithful-answers
    layer: objective
    evaluator: faithfulness
    mean_at_least: 0.85
    window: 1h
    min_n: 20
    slices: 0.99
  - name: refund-policy
    layer: objective
    evaluator: refund_policy
    failure_ratio_below: 0.005
  - name: tool-errors
    layer: failure_mode
    evaluator: tool_use
    rate_below: 0.05
  - name: schema-mismatch
    layer: failure_mode
    template: SchemaVersionMismatch
    rate_below: 0.1
    group_by: service
"""


def test_the_proposed_config_loads(tmp_path: Path) -> None:
    latency, faithful, policy, tools, schema = spec_of(PROPOSAL, tmp_path)
    assert (latency.kind, latency.metric, latency.threshold, latency.objective) == ("system", "latency_ms", 30000, 0.99)
    assert latency.filter == {"intent": ("refund",)} and latency.group_by == ("intent",)
    assert latency.period_s == 30 * 86400 and latency.owner == "payments-oncall" and not latency.sliced
    assert latency.series_dimension == "slo:refund-latency" and latency.rule == "slo:refund-latency"
    assert faithful.kind == "mean" and faithful.sliced and faithful.budget == pytest.approx(0.01)
    assert faithful.series_dimension == "slice:faithful-answers" and faithful.min_n == 20
    assert policy.kind == "ratio" and not policy.sliced and policy.budget == pytest.approx(0.005)
    assert policy.objective == pytest.approx(0.995)
    # 1/B = 20 reaches the 14.4x page: plain burn rates; 1/B = 10 cannot: time slices.
    assert tools.kind == "ratio" and not tools.sliced and tools.budget == pytest.approx(0.05)
    assert schema.kind == "template" and schema.sliced and schema.group_by == ("service",)


@pytest.mark.parametrize(("entry", "line", "key", "words"), [
    ("name: a\n    layer: system\n    metric: latency_ms\n    threshold: 10\n    objective: 0.99\n    colour: red",
     8, "slos[1].colour", "unknown key"),
    ("name: a\n    layer: platform", 4, "slos[1].layer", "system, objective, failure_mode"),
    ("name: a\n    layer: system\n    metric: latency_ms\n    threshold: 10\n    objective: 1.5",
     7, "slos[1].objective", "between 0 and 1"),
    ("name: a\n    layer: system\n    metric: latency_ms\n    objective: 0.99", 3, "slos[1].threshold", "missing"),
    ("name: a\n    layer: system\n    metric: error\n    threshold: 3\n    objective: 0.99", 6, "slos[1].threshold",
     "no threshold"),
    ("name: a\n    layer: system\n    metric: p99\n    objective: 0.99", 5, "slos[1].metric", "latency_ms, work_ms, error"),
    ("name: a\n    layer: objective\n    evaluator: helpfulness\n    failure_ratio_below: 0.01", 5,
     "slos[1].evaluator", "no evaluator named 'helpfulness'"),
    ("name: a\n    layer: objective\n    evaluator: faithfulness\n    mean_at_least: 0.8\n    objective: 0.9", 7,
     "slos[1].objective", "exactly one of"),
    ("name: a\n    layer: objective\n    evaluator: refund_policy\n    failure_ratio_below: 0.005\n    window: 1h", 7,
     "slos[1].window", "time-slice SLOs only"),
    ("name: a\n    layer: failure_mode\n    template: Timeout\n    rate_below: 0.01\n    group_by: [intent]", 7,
     "slos[1].group_by", "only filter and group by service"),
    ("name: a\n    layer: failure_mode\n    rate_below: 0.01", 3, "slos[1].evaluator", "exactly one of evaluator"),
    ("name: a\n    layer: system\n    metric: error\n    objective: 0.99\n    group_by: [user]", 7, "slos[1].group_by",
     "distinct labels"),
    ("name: a\n    layer: system\n    metric: error\n    objective: 0.99\n    filter: {tenant: x}", 7, "slos[1].filter",
     "unknown filter 'tenant'"),
    ("name: a\n    layer: system\n    metric: error\n    objective: 0.99\n    period: 30 days", 7, "slos[1].period",
     "duration"),
    ("name: a\n    layer: system\n    metric: error\n    objective: 0.99\n    period: 1d", 7, "slos[1].period",
     "at least 3d"),
    ("name: refund-latency\n    layer: system\n    metric: error\n    objective: 0.99", 3, "slos[1].name",
     "declared twice"),
])
def test_config_errors_name_file_line_and_key(tmp_path: Path, entry: str, line: int, key: str, words: str) -> None:
    text = ("slos:\n  - {name: refund-latency, layer: system, metric: error, objective: 0.99}\n  - " + entry + "\n")
    with pytest.raises(ConfigError) as info:
        spec_of(text, tmp_path)
    message = str(info.value)
    assert f"agentwatch.yaml, line {line}, key {key}:" in message, message
    assert words in message, message


def test_without_a_catalogue_evaluators_are_not_checked(tmp_path: Path) -> None:
    (spec,) = spec_of("slos:\n  - {name: x, layer: objective, evaluator: later, objective: 0.97}\n", tmp_path, None)
    assert spec.limit == pytest.approx(0.03) and spec.evaluator == "later"
    assert slo.load_slos({}, None) == ()


# -- system SLOs: burn rates and the min-count gate ---------------------------------

LATENCY = slo.SloSpec(name="refund-latency", layer="system", metric="latency_ms", threshold=30000, objective=0.99,
                      filter={"intent": ("refund",)}, owner="payments-oncall")


def minute_of_traffic(minute: int, *, slow: bool, per_minute: int = 10) -> list[dict[str, Any]]:
    return [session(T0 + minute * MIN + i * (60 // per_minute) * S + S, 40000.0 if slow else 1200.0)
            for i in range(per_minute)]


def insert_session_rows(store: Store, pid: int, sessions: list[tuple[str, dict[str, Any]]]) -> None:
    now = utcnow()
    rows = [{"project_id": pid, "session_id": sid, "service": s["service"], "agent_name": "agent",
             "agent_version": s["agent_version"], "intent": s["intent"], "user_id": None, "start_ns": s["start_ns"],
             "end_ns": s["end_ns"], "spans": 1, "turns": 1, "llm_calls": 1, "tool_calls": 0, "tool_errors": 0,
             "errors": s["errors"], "tokens_in": 0, "tokens_out": 0, "agent_tokens_in": 0, "agent_tokens_out": 0,
             "usage_spans": 1, "cost_usd": s["cost_usd"], "complete": True, "completed_at": now, "flagged": False,
             "sampled": False, "created_at": now, "updated_at": now} for sid, s in sessions]
    with store.engine.begin() as conn:
        conn.execute(insert(m.sessions), rows)


def test_latency_slo_pages_on_a_burst_and_clears_with_the_short_window(db: tuple[Store, int]) -> None:
    store, pid = db
    # 8 hours of refund traffic, 10 sessions a minute; one slow session every half hour is within budget
    # (0.33% < 1%). From 7:00 to 7:15 every session is slow. A billing session is slow too, always: filtered out.
    traffic: list[dict[str, Any]] = []
    for minute in range(480):
        burst = 420 <= minute < 435
        batch = minute_of_traffic(minute, slow=burst)
        if minute % 30 == 0 and not burst:
            batch[0] = session(batch[0]["end_ns"], 45000.0)
        traffic += batch + [session(T0 + minute * MIN + 30 * S, 90000.0, intent="billing")]
    record(store, pid, [LATENCY], traffic)
    burst_rows = [(f"s-{i}", s) for i, s in enumerate(traffic)
                  if T0 + 420 * MIN <= s["end_ns"] < T0 + 435 * MIN and s["intent"] == "refund"]
    burst_rows.append(("billing-slow", session(T0 + 428 * MIN, 90000.0, intent="billing")))
    insert_session_rows(store, pid, burst_rows)

    seen: dict[int, list[Candidate]] = {}
    for minute in range(365, 481, 5):
        seen[minute] = run_check(store, pid, [LATENCY], T0 + minute * MIN)
    assert all(not seen[t] for t in range(365, 425, 5)), "steady traffic within budget must not alert"
    pages = [t for t, found in seen.items() if any(c.severity == "page" for c in found)]
    # Detection time at e = 100%: 14.4 * 0.01 * 60 min / 1.0 = 8.6 min after 7:00 -> the 7:10 tick.
    assert pages == [430, 435]
    (page,) = seen[430]
    assert (page.kind, page.rule, page.dimension, page.owner) == ("burn_rate", "slo:refund-latency", "latency_ms",
                                                                  "payments-oncall")
    assert page.labels == {"service": "", "agent_version": "", "intent": "refund"}
    assert set(page.figures["burn_rates"]) == {"1h", "5m"}
    assert page.figures["bad"] == 100 + 1 and page.figures["n"] == 600
    assert page.figures["burn_rates"]["5m"] == pytest.approx(100.0)
    assert page.figures["observed"] == pytest.approx(101 / 600)
    assert page.summary.startswith("refund-latency: 17% of refund sessions slower than 30000 ms over 1h (burn 17x")
    # Examples: bad sessions of the short window, newest first, from the sessions table.
    short = {sid for sid, s in burst_rows if T0 + 425 * MIN <= s["end_ns"] < T0 + 430 * MIN and s["intent"] == "refund"}
    assert len(page.session_ids) == 5 and set(page.session_ids) <= short
    # Once the 5m window is clean again the page no longer holds; the slower ticket pair still does.
    assert [c.severity for c in seen[440]] == ["ticket"]
    assert set(seen[440][0].figures["burn_rates"]) == {"1d", "2h"}


def test_the_min_count_gate_keeps_two_slow_sessions_at_low_traffic_from_paging(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = slo.SloSpec(name="lat", layer="system", metric="latency_ms", threshold=30000, objective=0.99)
    # One session every 10 minutes for 12 hours; two of the last hour's are slow.
    traffic = [session(T0 + minute * MIN + 30 * S, 40000.0 if minute == 690 else 500.0)
               for minute in range(0, 720, 10)] + [session(T0 + 716 * MIN, 40000.0)]
    record(store, pid, [spec], traffic)
    tick = T0 + 720 * MIN
    found = run_check(store, pid, [spec], tick)
    # BR(1h) = (2/7)/0.01 = 29 and BR(5m) = 100 exceed 14.4, but 2 bad < 3: no page; the ticket holds.
    assert [c.severity for c in found] == ["ticket"]
    record(store, pid, [spec], [session(T0 + 717 * MIN, 50000.0)])
    found = run_check(store, pid, [spec], tick)
    assert [c.severity for c in found] == ["page"] and found[0].figures["bad"] == 3
    assert found[0].owner is None and found[0].evaluator == "" and found[0].evaluator_version == ""


# -- objective SLOs --------------------------------------------------------------------

def add_scores(store: Store, pid: int, evaluator: str, minute: int, scores: Sequence[float], *, passed_below: float = 0.8,
               probability: float = 1.0, intent: str = "refund", version: str = "v1") -> None:
    w = 1.0 / probability
    delta = {"count": len(scores), "weighted_count": w * len(scores), "weighted_sum": w * sum(scores),
             "weighted_sum_sq": w * sum(s * s for s in scores),
             "failures": sum(1 for s in scores if s < passed_below),
             "weighted_failures": w * sum(1 for s in scores if s < passed_below)}
    with store.engine.begin() as conn:
        rollups.add(conn, pid, T0 + minute * MIN + 10 * S, {"service": "support-agent", "agent_version": "1.0",
                                                             "intent": intent}, evaluator, version, delta)


def test_a_mean_objective_pages_after_two_bad_time_slices_not_one(db: tuple[Store, int], tmp_path: Path) -> None:
    store, pid = db
    (spec,) = spec_of("""\
        slos:
          - {name: faithful-answers, layer: objective, evaluator: faithfulness, mean_at_least: 0.85, min_n: 20}
        """, tmp_path)
    # Two scored sessions a minute, mean 0.9; from 3:00 the answers drop to a mean of 0.6.
    for minute in range(300):
        add_scores(store, pid, "faithfulness", minute, (0.55, 0.65) if minute >= 180 else (0.95, 0.85),
                   version="old" if minute < 60 else "v1")
    seen: dict[int, list[Candidate]] = {}
    for minute in range(5, 241, 5):
        seen[minute] = run_check(store, pid, [spec], T0 + minute * MIN)
    with store.engine.connect() as conn:
        recorded = rollups.totals(conn, pid, "slice:faithful-answers", since_ns=T0, until_ns=T0 + 300 * MIN)
    # The first tick (5 min, n = 10 < 20) records no slice: no data is not good.
    assert recorded.count == len(seen) - 1
    pages = [t for t, found in seen.items() if any(c.severity == "page" for c in found)]
    first_page = pages[0]
    before = seen[first_page - 5]
    # One bad slice (of 12 in the hour): burn 8.3 < 14.4, so no page yet, only a ticket.
    assert [c.severity for c in before] == ["ticket"] and before[0].figures["bad"] == 1
    (page,) = seen[first_page]
    assert page.figures["bad"] == 2 and page.figures["slices"] == 12
    assert page.figures["burn_rates"]["1h"] == pytest.approx(2 / 12 / 0.01)
    assert 190 <= first_page <= 205, first_page
    assert page.evaluator == "faithfulness" and page.evaluator_version == CATALOGUE.specs[0].version
    assert page.owner == "quality-team" and page.dimension == "faithfulness"
    assert page.figures["slice_value"] < 0.85 and page.figures["slice_target"] == 0.85
    assert page.summary.startswith("faithful-answers: faithfulness mean 0.80 below 0.85 over the last 1h (n=120); "
                                   "bad in 2 of the last 12 slices (burn 17x the budget)"), page.summary
    # A tick run twice (a flush right after a tick) does not record its slice twice.
    with store.engine.begin() as conn:
        slo.check(conn, pid, T0 + 240 * MIN, [spec], CATALOGUE)
        again = rollups.totals(conn, pid, "slice:faithful-answers", since_ns=T0, until_ns=T0 + 300 * MIN)
    assert again.count == recorded.count


def test_a_ratio_objective_with_b_0_005_pages_above_7_2_percent_over_1h_and_5m(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = slo.SloSpec(name="refund-policy", layer="objective", evaluator="refund_policy", limit=0.005,
                       objective=0.995, group_by=("intent",))
    assert not spec.sliced
    label = {"service": "support-agent", "agent_version": "1.0"}
    with store.engine.begin() as conn:
        for intent, failures in (("a", 35), ("b", 37)):
            for hour in range(5):  # five clean hours: 500 scored sessions a minute, sampled at p = 0.5
                rollups.add(conn, pid, T0 + hour * HOUR, {**label, "intent": intent}, "refund_policy", "v1",
                            {"count": 30000, "weighted_count": 60000})
            for minute in range(300, 360):  # then 7.0% (a) and 7.4% (b) of them fail
                rollups.add(conn, pid, T0 + minute * MIN, {**label, "intent": intent}, "refund_policy", "v1",
                            {"count": 500, "weighted_count": 1000, "failures": failures,
                             "weighted_failures": 2 * failures})
    found = {c.labels["intent"]: c for c in run_check(store, pid, [spec], T0 + 6 * HOUR)}
    # b: BR = 7.4% / 0.5% = 14.8 > 14.4 on 1h and 5m -> page. a: 14.0 -> no page, but 3d/6h burn 2.3 > 1 -> ticket.
    assert found["b"].severity == "page" and found["a"].severity == "ticket"
    assert found["b"].figures["burn_rates"] == {"1h": pytest.approx(14.8), "5m": pytest.approx(14.8)}
    assert found["b"].owner == "payments-oncall"
    assert "7.4% of b sessions failed refund_policy over 1h (limit 0.50%" in found["b"].summary


def test_a_ratio_objective_beyond_the_page_factor_uses_wilson_slices(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = slo.SloSpec(name="tools", layer="failure_mode", evaluator="tool_use", limit=0.1, objective=0.9)
    assert spec.sliced and spec.budget == pytest.approx(0.01)
    for minute in range(120):
        # 8% failures are within the 10% limit; from 1:40, 40% are not (with evidence once the hour holds 7+ min).
        fail = 10 if minute >= 100 else 2
        add_scores(store, pid, "tool_use", minute, [0.0] * fail + [1.0] * (25 - fail), passed_below=0.5)
    seen = {minute: run_check(store, pid, [spec], T0 + minute * MIN) for minute in range(5, 121, 5)}
    assert not any(seen[t] for t in range(5, 110, 5))
    # The first bad slice (1:50) makes a ticket (1 of 22 slices); the second a page.
    assert [c.severity for c in seen[110]] == ["ticket"]
    assert [c.severity for c in seen[115]] == ["page"] and [c.severity for c in seen[120]] == ["page"]
    assert seen[120][0].figures["slice_value"] > 0.1
    assert "tool_use failure ratio" in seen[120][0].summary


# -- failure modes: a failure template ---------------------------------------------------

def test_a_template_failure_mode_counts_sessions_showing_it(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = slo.SloSpec(name="schema", layer="failure_mode", template="schemaversionmismatch", limit=0.01,
                       objective=0.99, group_by=("service",))
    with store.engine.begin() as conn:
        for minute in range(420):  # 10 completed sessions a minute
            rollups.add(conn, pid, T0 + minute * MIN, {"service": "svc"}, rollups.SESSION_DIMENSION, "",
                        {"count": 10, "weighted_count": 10})
        key = conn.execute(insert(m.failure_templates).values(
            project_id=pid, source="tool_error", subject="crm", template="SchemaVersionMismatch: expected <*>",
            first_seen_ns=T0, last_seen_ns=T0, count=1, weighted_count=1.0, baseline=False, created_at=utcnow(),
        )).inserted_primary_key
        assert key is not None
        template_id = key[0]
        hits = []
        for minute in range(400, 420):  # 5 of the 10 sessions a minute show it, the first one twice
            for i in range(5):
                for _ in range(2 if i == 0 else 1):
                    hits.append({"project_id": pid, "template_id": template_id, "event_ns": T0 + minute * MIN + i * S,
                                 "session_id": f"m{minute}-{i}", "trace_id": f"{minute:016x}{i:016x}",
                                 "user_id": None, "service": "svc", "weight": 1.0, "message": "expected v2"})
        conn.execute(insert(m.template_hits), hits)
    (found,) = run_check(store, pid, [spec], T0 + 420 * MIN)
    assert found.severity == "page" and found.dimension == "template" and found.labels["service"] == "svc"
    # 100 sessions of 600 in the hour (a session counts once however often it shows the template).
    assert found.figures["bad"] == 100 and found.figures["n"] == 600
    assert found.session_ids[0] == "m419-4" and len(found.session_ids) == 5 and len(found.trace_ids) == 5
    assert "hit failure template 'schemaversionmismatch'" in found.summary


# -- filters, group_by, status ------------------------------------------------------------

def test_filters_and_group_by_make_separate_series(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = slo.SloSpec(name="errors", layer="system", metric="error", objective=0.99,
                       filter={"service": ("a", "b")}, group_by=("intent",))
    traffic = []
    for minute in range(120):
        for i, (service, intent) in enumerate((("a", "refund"), ("b", "billing"), ("c", "refund"), ("a", "billing"))):
            failing = service == "c" or (intent == "refund" and minute >= 100)
            traffic.append(session(T0 + minute * MIN + i * S, intent=intent, service=service, errors=int(failing)))
    record(store, pid, [spec], traffic)
    found = run_check(store, pid, [spec], T0 + 120 * MIN)
    assert [(c.severity, c.labels) for c in found] == [
        ("page", {"service": "", "agent_version": "", "intent": "refund"})]
    assert found[0].summary.startswith("errors: 33% of refund sessions ended with an error over 1h")
    with store.engine.connect() as conn:
        rows = slo.status(conn, pid, T0 + 120 * MIN, [spec])
    by_intent = {r["labels"]["intent"]: r for r in rows}
    assert set(by_intent) == {"refund", "billing"}
    # Service c's failing sessions are out of the series: refund holds 120 sessions of a, 20 of them failed.
    assert by_intent["refund"]["valid"] == 120 and by_intent["refund"]["bad"] == 20
    assert by_intent["billing"]["valid"] == 240 and by_intent["billing"]["value"] == 1.0


def test_status_reports_value_budget_burn_rates_and_quantiles(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = slo.SloSpec(name="lat", layer="system", metric="work_ms", threshold=30000, objective=0.99)
    empty = slo.SloSpec(name="faith", layer="objective", evaluator="faithfulness", mean_at_least=0.8)
    # 1000 sessions over a day, 5 of them slow: value 99.5%, half the 1% budget spent.
    slow = {100, 300, 500, 700, 990}
    traffic = [session(T0 + i * 86_400_000_000 + S, 40000.0 if i in slow else 1000.0 + i) for i in range(1000)]
    record(store, pid, [spec], traffic[:959])
    record(store, pid, [spec], traffic[959:], sketches=True)  # latency sketches of the last hour
    now = T0 + 24 * HOUR
    with store.engine.connect() as conn:
        (row, nothing) = slo.status(conn, pid, now, [spec, empty])
    assert row["name"] == "lat" and row["layer"] == "system" and row["target"] == pytest.approx(0.99)
    assert row["value"] == pytest.approx(0.995) and row["error_budget_left"] == pytest.approx(0.5)
    assert row["valid"] == 1000 and row["bad"] == 5 and row["period"] == "30d" and row["window"] is None
    assert set(row["burn_rates"]) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert row["burn_rates"]["1d"] == pytest.approx(0.5) and row["burn_rates"]["3d"] == pytest.approx(0.5)
    # The last hour holds sessions 959..999, one of them (990) slow.
    last_hour = [i for i in range(1000) if T0 + i * 86_400_000_000 + S >= now - HOUR]
    assert row["burn_rates"]["1h"] == pytest.approx(1 / len(last_hour) / 0.01)
    q = row["quantiles"]
    assert row["quantiles_window"] == "1h" and q["p50"] is not None and q["p50"] <= q["p95"] <= q["p99"]
    assert q["p50"] == pytest.approx(1000 + 979, rel=0.02) and q["p99"] == pytest.approx(1000 + 998, rel=0.02)
    assert nothing["name"] == "faith" and nothing["value"] is None and nothing["error_budget_left"] == 1.0
    assert nothing["time_slices"] is True and nothing["window"] == "1h" and nothing["current"] is None
    # Past the budget it goes negative: 20 more slow sessions of 1020 -> 25/1020 = 2.45% of a 1% budget.
    record(store, pid, [spec], [session(now - HOUR + i * S, 50000.0) for i in range(20)])
    with store.engine.connect() as conn:
        (row, _) = slo.status(conn, pid, now, [spec, empty])
    assert row["error_budget_left"] == pytest.approx(1 - (25 / 1020) / 0.01)


def test_windows_of_hours_and_days_read_hourly_buckets_not_sessions(db: tuple[Store, int]) -> None:
    store, pid = db
    spec = slo.SloSpec(name="lat", layer="system", metric="latency_ms", threshold=30000, objective=0.99)
    traffic = [session(T0 + minute * MIN + S, 40000.0 if minute in (1000, 3000) else 900.0)
               for minute in range(0, 3 * 24 * 60, 10)]
    record(store, pid, [spec], traffic)
    now = T0 + 3 * 24 * HOUR
    with store.engine.connect() as conn:
        before = slo.status(conn, pid, now, [spec])
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    # The minute buckets older than 30 minutes go: every window of an hour or more reads hourly buckets.
    with store.engine.begin() as conn:
        conn.execute(delete(m.rollups).where(m.rollups.c.minute_ns < now - 30 * MIN))
    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        with store.engine.connect() as conn:
            after = slo.status(conn, pid, now, [spec])
        run_check(store, pid, [spec], now)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    assert before[0]["burn_rates"] == after[0]["burn_rates"] and before[0]["value"] == after[0]["value"]
    assert after[0]["burn_rates"]["3d"] == pytest.approx((2 / 432) / 0.01)
    assert any("rollups_hourly" in s for s in statements)
    # Nothing fires, and neither status nor the check read a session or a score.
    for statement in statements:
        assert not re.search(r"\b(sessions|scores|spans)\b", statement), statement


def test_a_quantile_slo_pages_when_one_intents_p75_doubles_and_not_on_steady_tails(db: tuple[Store, int],
                                                                                   tmp_path: Path) -> None:
    """p75 of the agent's work per intent in 30-minute slices: steady traffic with a slow tail stays quiet; when
    refund's latencies double its slices go bad and the SLO pages; billing is untouched."""
    store, pid = db
    (spec,) = spec_of("""\
        slos:
          - {name: response-time, layer: system, metric: work_ms, quantile: 0.75, threshold: 8500, window: 30m,
             min_n: 10, group_by: [intent]}
        """, tmp_path)
    assert spec.kind == "quantile" and spec.sliced and spec.budget == pytest.approx(0.01)
    start_slow = 120  # minute at which refund's latencies double
    sessions = []
    for minute in range(180):
        for k, intent in enumerate(("refund", "billing")):
            # 1 in 20 sessions hits a 10 s timeout (the steady tail); the rest take 3-6 s.
            work = 14000.0 if (minute + k) % 20 == 0 else 3000.0 + 100 * ((minute * 7 + k) % 30)
            if intent == "refund" and minute >= start_slow:
                work *= 2
            sessions.append(session(T0 + minute * MIN + 30 * S, work, intent=intent))
    record(store, pid, [spec], sessions, sketches=True)
    seen = {minute: run_check(store, pid, [spec], T0 + minute * MIN) for minute in range(35, 180, 5)}
    quiet = [(m, c.labels, c.severity) for m, found in seen.items() if m <= start_slow for c in found]
    assert quiet == []
    pages = [m for m, found in seen.items() for c in found if c.severity == "page"]
    assert pages and start_slow < pages[0] <= start_slow + 30, pages
    paged = [c for c in seen[pages[0]] if c.severity == "page"]
    assert [c.labels["intent"] for c in paged] == ["refund"]
    assert paged[0].dimension == "work_ms" and paged[0].figures["slice_value"] > 8500
    assert paged[0].summary.startswith("response-time: p75 work_ms"), paged[0].summary
    with store.engine.connect() as conn:
        (status, *_) = [r for r in slo.status(conn, pid, T0 + 180 * MIN, [spec]) if r["labels"]["intent"] == "refund"]
    assert status["time_slices"] is True and status["quantiles"]["p50"] is not None


def test_a_quantile_slo_rejects_an_objective_and_unsketched_metrics(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="slices"):
        spec_of("slos:\n  - {name: a, layer: system, metric: work_ms, quantile: 0.9, threshold: 1, objective: 0.9}\n",
                tmp_path)
    with pytest.raises(ConfigError, match="sketches"):
        spec_of("slos:\n  - {name: a, layer: system, metric: latency_ms, quantile: 0.9, threshold: 1}\n", tmp_path)
