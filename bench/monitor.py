"""Monitor check time against the number of stored sessions: 1 thousand, 100 thousand, 1 million.

For each size N a fresh store is built (``make_engine`` + ``migrate``) and seeded through bulk inserts
(driver ``executemany`` on SQLite, ``COPY`` on PostgreSQL; ~10k sessions per transaction) with what
weeks of traffic leave behind once retention has dropped the span payloads:

* traffic: 8 services at 120 sessions/h each (960/h, one session every 3.75 s of event time), so N
  sessions span N / 960 hours ending at ``END`` (1k: 1 h, 100k: 4.3 days, 1M: 43 days). The last hours
  hold the very same sessions at every size (blocks of 10k sessions counted back from ``END`` have
  their own random generators), so the checked hour is the same and only the history grows. Series:
  8 services x 3 intents x the current agent version (a new one every 9 days, staggered by service);
* ``sessions`` rows: complete, evaluated, ``payload_dropped_at`` set, every NOT NULL column filled;
  one ``trace_sessions`` row each (the writer keeps one per trace; retention keeps them);
* ``scores``: three rules on every session (``tool_use``, severity page, fails on the ~1% of sessions with
  a tool error, 4% for ``payments-agent``; ``budget``, ~3%; ``no_secrets``, 0.1%) and an LLM judge
  (``goal_completion``) on the 5% sampled sessions at inclusion probability 0.05, 1.5% of them errors;
* ``rollups`` / ``rollups_hourly``: the minute and hour buckets the write path would have made
  (``_session`` with latency and cost DDSketches, each evaluator, the system SLO's ``slo:latency``
  series, and one good ``slice:goal-mean`` event per 5-minute tick before the timed hour);
* failed tool spans (payload dropped) for the tool errors of the last 2 hours, with a few error texts
  (``--spans-per-session K`` also stores K successful payload-less spans per session);
* ``failure_templates`` / ``template_hits``: the real miner run over the history before the timed hour
  (before the ``trace_sessions`` rows are written);
* ``monitor_state``: the last tick checked is ``END - 1h``, and every service was first seen 2 days
  before that, so warm-up is over at every size.

Then ``Monitor.run`` checks the last hour: 60 one-minute ticks, 12 of them with the 5-minute checks
(drift, SLO burn rates with time slices, evaluator errors, calibration, no data) and one hourly CUSUM,
with the catalogue, ``MonitorConfig()`` defaults and three SLOs (system latency, mean objective with time
slices, ratio objective per service). It runs ``--repeats`` (3) times with a new Monitor, undoing
between runs what a run writes (alerts, notifications, mined templates and hits, slice buckets, the
monitor state); the median is reported, with a breakdown by check (ms/tick), the statements that took
longest (time to the first row: SQLite computes the other rows as they are fetched, so a slow
correlated subquery shows in its check's time more than here), and every SELECT whose plan reads a
table that grows with the sessions unbounded (SQLite ``EXPLAIN QUERY PLAN``: a ``SCAN`` or a
``SEARCH`` on ``project_id`` alone; PostgreSQL ``EXPLAIN``: the same on tables of 20k rows or more).

Printed per size: build time, database size (SQLite file after a WAL checkpoint, or
``pg_database_size``), row counts, check time per run and per tick. Then a table with each size's
ms/tick against the smallest size's, and ``flat within 2x: yes|no`` (exit status 1 when no).

    .venv/bin/python bench/monitor.py                          # 1k, 100k, 1M on temporary SQLite files
    .venv/bin/python bench/monitor.py --quick                  # 1k and 20k
    .venv/bin/python bench/monitor.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from math import log
from pathlib import Path
from typing import Any

from ingest import Database, disk_bytes, prepare_database  # the benches make and measure a store alike
from sqlalchemy import Connection, Engine, delete, event, func, insert, select, update
from sqlalchemy.engine import make_url

from agentwatch.alert.routes import load_routes
from agentwatch.evaluate.catalogue import Catalogue, load_catalogue
from agentwatch.monitor import clusters, events, slo
from agentwatch.monitor.checker import Monitor
from agentwatch.monitor.config import MonitorConfig
from agentwatch.monitor.drift import DriftDetector
from agentwatch.monitor.slo import burn as slo_burn
from agentwatch.store import evaluations, rollups
from agentwatch.store import models as m
from agentwatch.store.engine import make_engine, migrate

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_NS = 3600 * NS
DAY_NS = 86400 * NS
END_NS = 1_772_323_200 * NS  # 2026-03-01T00:00:00Z: the last event time; the timed hour ends here
TIMED_START_NS = END_NS - HOUR_NS
SERVICES = ("payments-agent", "support-agent", "billing-agent", "orders-agent", "travel-agent", "hr-agent",
            "it-helpdesk", "sales-agent")
INTENTS = (("order_status", 0.5), ("refund", 0.8), ("other", 1.0))  # cumulative shares
RATE_PER_SERVICE = 120.0  # sessions per event-time hour
GAP_NS = int(HOUR_NS / (RATE_PER_SERVICE * len(SERVICES)))
BATCH = 10_000
PROJECT = 1
SPAN_HOURS = 2  # failed tool spans are kept for the tool errors of the last 2 hours
LATENCY_SLO_MS = 45_000.0

CATALOGUE = {
    "sampling": {"default_rate": 0.05},
    "evaluators": [
        {"name": "tool_use", "kind": "rule", "rule": "tool_error", "threshold": 1.0, "severity": "page"},
        {"name": "budget", "kind": "rule", "rule": "budget", "params": {"max_latency_ms": 60000, "max_turns": 6},
         "threshold": 1.0},
        {"name": "no_secrets", "kind": "rule", "rule": "answer_pattern",
         "params": {"forbidden": [r"(?i)api[_ ]key", r"\b\d{16}\b"]}, "threshold": 1.0},
        {"name": "goal_completion", "kind": "llm", "sample_rate": 0.05, "threshold": 0.5,
         "params": {"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1"}},
    ],
}
SLOS = {
    "slos": [
        {"name": "latency", "layer": "system", "metric": "latency_ms", "threshold": LATENCY_SLO_MS,
         "objective": 0.99},
        {"name": "goal-mean", "layer": "objective", "evaluator": "goal_completion", "mean_at_least": 0.7,
         "window": "1h", "min_n": 20},
        {"name": "tool-failures", "layer": "objective", "evaluator": "tool_use", "failure_ratio_below": 0.02,
         "group_by": ["service"]},
    ],
}
TOOLS = ("refund_api", "order_lookup", "send_email", "search_kb")
TOOL_ERRORS = (
    ("HTTPError", "HTTP 503 Service Unavailable from payments-gateway after {n} ms"),
    ("NotFound", "order {n} not found"),
    ("Timeout", "timeout after 30000 ms calling {tool}"),
    ("RateLimited", "rate limited by upstream: retry after {s} s"),
)

SESSION_COLUMNS = (
    "project_id", "session_id", "service", "agent_name", "agent_version", "intent", "user_id", "start_ns",
    "end_ns", "spans", "turns", "llm_calls", "tool_calls", "tool_errors", "errors", "tokens_in", "tokens_out",
    "agent_tokens_in", "agent_tokens_out", "usage_spans", "cost_usd", "work_ms", "complete", "completed_at",
    "flagged", "sampled", "created_at", "updated_at", "evaluated_at", "payload_dropped_at")
SCORE_COLUMNS = (
    "project_id", "session_id", "span_id", "evaluator", "evaluator_version", "status", "score", "passed",
    "threshold", "direction", "reason", "error", "raw", "judge_model", "prompt_hash", "dataset_version",
    "inclusion_probability", "latency_ms", "cost_usd", "tokens_in", "tokens_out", "event_time_ns", "shadow",
    "created_at")
ROLLUP_COLUMNS = tuple(c.name for c in m.rollups.columns)
TRACE_COLUMNS = ("project_id", "trace_id", "session_id", "explicit")
SPAN_COLUMNS = ("project_id", "trace_id", "span_id", "parent_span_id", "session_id", "session_explicit", "name", "kind",
                "span_kind", "start_ns", "end_ns", "status_code", "success", "service", "agent_name", "agent_version",
                "intent", "provider", "model", "tokens_in", "tokens_out", "attributes")


def session_id(p: int) -> str:
    """The id of the session ``p`` places before the last one: ids grow with event time."""
    return f"s{999_999_999 - p:09d}"


def trace_id(p: int) -> str:
    q = 999_999_999 - p
    return f"{q:016x}{(q * 0x9E3779B97F4A7C15) % (1 << 64):016x}"


@dataclass(frozen=True, slots=True)
class Draw:
    """The random part of one session."""

    end_ns: int
    service: int
    intent: str
    latency_ms: float
    turns: int
    tool_calls: int
    tool_errors: int
    llm_calls: int
    tokens_in: int
    tokens_out: int
    cost: float
    errors: int
    sampled: bool
    leaked: bool
    tool: str
    error_type: str
    message: str
    span_id: str
    #: None: the judge failed (only read when sampled).
    goal_score: float | None
    judge_ms: float
    user_id: str


_LOG_MEDIAN_MS = log(9000.0)


def draw(rng: random.Random, p: int) -> Draw:
    """Session ``p`` places before the last one: ~3.75 s apart over all services, 120/h each."""
    end_ns = END_NS - (p + 1) * GAP_NS + int(rng.random() * GAP_NS)
    service = rng.randrange(len(SERVICES))
    share = rng.random()
    intent = next(name for name, cumulative in INTENTS if share < cumulative)
    latency_ms = rng.lognormvariate(_LOG_MEDIAN_MS, 0.6)
    turns = 7 + rng.randrange(3) if rng.random() < 0.03 else 1 + int(rng.random() ** 2 * 6)
    tool_errors = 1 if rng.random() < (0.04 if service == 0 else 0.01) else 0
    tool_calls = max(rng.randrange(0, 5), tool_errors)
    llm_calls = turns + rng.randrange(0, 3)
    tokens_in = llm_calls * rng.randrange(800, 2400)
    tokens_out = llm_calls * rng.randrange(80, 400)
    errors = 1 if tool_errors or rng.random() < 0.003 else 0
    tool = TOOLS[rng.randrange(len(TOOLS))]
    error_type, template = TOOL_ERRORS[rng.randrange(len(TOOL_ERRORS))]
    message = template.format(n=rng.randrange(100, 99999), tool=tool, s=rng.randrange(1, 60))
    goal_score = None if rng.random() < 0.015 else rng.betavariate(8, 2)
    return Draw(end_ns, service, intent, latency_ms, turns, tool_calls, tool_errors, llm_calls, tokens_in, tokens_out,
                tokens_in * 0.15e-6 + tokens_out * 0.6e-6, errors, rng.random() < 0.05, rng.random() < 0.001, tool,
                error_type, message, f"{rng.getrandbits(64):016x}", goal_score, rng.uniform(400, 2500),
                f"user-{rng.randrange(20000):05d}")


# -- the store -----------------------------------------------------------------------------------------------


def fresh_database(url: str | None, size: int) -> tuple[Database, Path | None]:
    """A new store for one size, made as bench/ingest.py makes its own: a SQLite file in a temporary folder
    (beside --database-url's file when one is given) that the caller removes, or a fresh PostgreSQL database."""
    if url is None or make_url(url).drivername.startswith("sqlite"):
        folder = Path(tempfile.mkdtemp(prefix=f"agentwatch-monitor-{size}-",
                                       dir=None if url is None else Path(make_url(url).database or ".").parent))
        return prepare_database(None, folder, fresh_pg=False), folder
    return prepare_database(url, Path("."), fresh_pg=True), None


class Loader:
    """Bulk rows into a table inside the caller's transaction: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def rows(self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        if self.dialect == "sqlite":
            marks = ", ".join("?" for _ in columns)
            conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))
            return
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def timestamp(self, value: datetime) -> Any:
        # SQLAlchemy's SQLite DATETIME text (what UtcDateTime stores); psycopg adapts datetimes itself.
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") if self.dialect == "sqlite" else value


# -- sketches ------------------------------------------------------------------------------------------------

_MAPPING = rollups.new_sketch()._mapping


@functools.lru_cache(maxsize=200_000)
def _sketch_of_keys(keys: tuple[int, ...]) -> bytes:
    # A sketch's protobuf holds only its bins, so buckets whose values fall in the same bins share the bytes.
    sketch = rollups.new_sketch()
    for key in keys:
        sketch.add(_MAPPING.value(key))
    return rollups.sketch_to_bytes(sketch)


def sketch_bytes(values: list[float]) -> bytes:
    if len(values) <= 3:
        return _sketch_of_keys(tuple(sorted(_MAPPING.key(v) for v in values)))
    sketch = rollups.new_sketch()
    for value in sorted(values):
        sketch.add(value)
    return rollups.sketch_to_bytes(sketch)


# -- building ------------------------------------------------------------------------------------------------

Series = tuple[str, str, str, str, str]  # service, agent_version, intent, dimension, evaluator_version


@dataclass
class Buckets:
    """Minute buckets until their minute is complete, then summed into hours; both written once."""

    minutes: dict[int, dict[Series, list[float]]] = field(default_factory=dict)
    minute_values: dict[tuple[int, str, str, str], tuple[list[float], list[float]]] = field(default_factory=dict)
    hours: dict[int, dict[Series, list[float]]] = field(default_factory=dict)
    hour_sketches: dict[tuple[int, str, str, str], tuple[Any, Any]] = field(default_factory=dict)
    written_minutes: int = 0
    written_hours: int = 0

    def bump(self, minute: int, series: Series, count: float, weighted_count: float, weighted_sum: float,
             weighted_sum_sq: float, failures: float, weighted_failures: float, errors: float) -> None:
        into = self.minutes.setdefault(minute, {})
        row = into.get(series)
        if row is None:
            into[series] = [count, weighted_count, weighted_sum, weighted_sum_sq, failures, weighted_failures,
                            errors]
            return
        row[0] += count
        row[1] += weighted_count
        row[2] += weighted_sum
        row[3] += weighted_sum_sq
        row[4] += failures
        row[5] += weighted_failures
        row[6] += errors

    def session(self, minute: int, labels: tuple[str, str, str], latency_ms: float, cost: float) -> None:
        lat, cst = self.minute_values.setdefault((minute, *labels), ([], []))
        lat.append(latency_ms)
        cst.append(cost)
        hour_lat, hour_cost = self.hour_sketches.setdefault((minute - minute % HOUR_NS, *labels),
                                                            (rollups.new_sketch(), rollups.new_sketch()))
        hour_lat.add(latency_ms)
        hour_cost.add(cost)

    def flush(self, until_ns: int | None) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Rows of the minutes before ``until_ns`` and of the hours before its hour (None: everything)."""
        minute_rows: list[tuple[Any, ...]] = []
        for minute in sorted(k for k in self.minutes if until_ns is None or k < until_ns):
            hour = minute - minute % HOUR_NS
            into = self.hours.setdefault(hour, {})
            for series, row in self.minutes.pop(minute).items():
                service, version, intent, dimension, ev = series
                lat_bytes = cost_bytes = None
                if dimension == rollups.SESSION_DIMENSION:
                    lat, cst = self.minute_values.pop((minute, service, version, intent))
                    lat_bytes, cost_bytes = sketch_bytes(lat), sketch_bytes(cst)
                minute_rows.append((PROJECT, minute, service, version, intent, dimension, ev, *row,
                                    lat_bytes, cost_bytes))
                total = into.get(series)
                if total is None:
                    into[series] = list(row)
                else:
                    for i, value in enumerate(row):
                        total[i] += value
        hour_rows: list[tuple[Any, ...]] = []
        limit = None if until_ns is None else until_ns - until_ns % HOUR_NS
        for hour in sorted(k for k in self.hours if limit is None or k < limit):
            for series, row in self.hours.pop(hour).items():
                service, version, intent, dimension, ev = series
                lat_bytes = cost_bytes = None
                if dimension == rollups.SESSION_DIMENSION:
                    lat_sketch, cost_sketch = self.hour_sketches.pop((hour, service, version, intent))
                    lat_bytes, cost_bytes = rollups.sketch_to_bytes(lat_sketch), rollups.sketch_to_bytes(cost_sketch)
                hour_rows.append((PROJECT, hour, service, version, intent, dimension, ev, *row, lat_bytes,
                                  cost_bytes))
        self.written_minutes += len(minute_rows)
        self.written_hours += len(hour_rows)
        return minute_rows, hour_rows


@dataclass
class Built:
    sessions: int
    start_ns: int
    seconds: float
    phases: dict[str, float]
    counts: dict[str, int]
    bytes: int


def build(db: Database, engine: Engine, n: int, catalogue: Catalogue, seed: int, spans_per_session: int = 0) -> Built:
    started = time.monotonic()
    phases: dict[str, float] = {}
    loader = Loader(db.dialect)
    now = datetime.now(timezone.utc)
    stamp = loader.timestamp(now)
    versions = {spec.name: spec.version for spec in catalogue.scored}
    specs = {spec.name: spec for spec in catalogue.scored}
    start_ns = END_NS - n * GAP_NS
    first_seen = min(start_ns, TIMED_START_NS - 2 * DAY_NS)

    with engine.begin() as conn:
        conn.execute(insert(m.projects).values(id=PROJECT, name="default", created_at=now))
        conn.execute(insert(m.watermarks).values(project_id=PROJECT, max_event_ns=END_NS, watermark_ns=END_NS,
                                                 updated_at=now))
    evaluations.register_evaluators(engine, catalogue.scored)

    # 1. Sessions, their scores and rollups, in event-time order, ~10k sessions per transaction.
    buckets = Buckets()
    spans: list[dict[str, Any]] = []
    scores_written = 0
    tool_use, budget, no_secrets, goal = (versions[k] for k in ("tool_use", "budget", "no_secrets",
                                                                 "goal_completion"))
    goal_spec = specs["goal_completion"]
    prompt_hash = "ab" * 32
    for block in range((n - 1) // BATCH, -1, -1):
        # Each block of sessions counted back from END has its own generator, so the last hours hold the
        # same sessions at every size (the first block is cut where the size ends).
        rng = random.Random(seed * 1_000_003 + block)
        session_rows: list[tuple[Any, ...]] = []
        score_rows: list[tuple[Any, ...]] = []
        span_rows: list[tuple[Any, ...]] = []
        end_ns = start_ns
        for p in range((block + 1) * BATCH - 1, block * BATCH - 1, -1):
            d = draw(rng, p)
            if p >= n:
                continue
            end_ns = d.end_ns
            service = SERVICES[d.service]
            version = f"3.{(end_ns // DAY_NS + 3 * d.service) // 9 % 100}"
            sid = session_id(p)
            labels = (service, version, d.intent)
            minute = end_ns - end_ns % MINUTE_NS
            results: list[tuple[str, str, float | None, str | None, str | None]] = [
                ("tool_use", tool_use, 0.0 if d.tool_errors else 1.0,
                 f"tool {d.tool} failed: {d.message} (span {d.span_id})" if d.tool_errors
                 else f"{d.tool_calls} tool call(s) succeeded" if d.tool_calls else "no tool calls", None),
                ("budget", budget, 0.0 if d.turns > 6 else 1.0,
                 f"turns {d.turns} > 6" if d.turns > 6 else "within budget", None),
                ("no_secrets", no_secrets, 0.0 if d.leaked else 1.0,
                 "answer matches '(?i)api[_ ]key': here is the api key" if d.leaked else "1 answer(s) checked",
                 None),
            ]
            if d.sampled:
                if d.goal_score is None:
                    results.append(("goal_completion", goal, None, None, "judge timed out after 30 s"))
                else:
                    results.append(("goal_completion", goal, d.goal_score, "the user's goal was met"
                                    if d.goal_score >= 0.5 else "the refund the user asked for was not issued", None))
            flagged = False
            for name, ev, score, reason, error in results:
                judge = name == "goal_completion"
                probability = 0.05 if judge else 1.0
                threshold = specs[name].threshold
                passed = None if score is None else score >= (threshold or 0.0)
                flagged = flagged or passed is False
                score_rows.append((
                    PROJECT, sid, "", name, ev, "error" if error else "ok", score, passed, threshold,
                    "higher_is_better", reason, error, None, goal_spec.params["model"] if judge else None,
                    prompt_hash if judge else None, None, probability, d.judge_ms if judge else 0.05,
                    0.0004 if judge else None, 900 if judge else None, 60 if judge else None, end_ns, False, stamp))
                if error or score is None:
                    buckets.bump(minute, (*labels, name, ev), 1, 0, 0, 0, 0, 0, 1)
                else:
                    weight = 1.0 / probability
                    failed = 1.0 if passed is False else 0.0
                    buckets.bump(minute, (*labels, name, ev), 1, weight, weight * score, weight * score * score,
                                 failed, weight * failed, 0)
            buckets.bump(minute, (*labels, rollups.SESSION_DIMENSION, ""), 1, 1, 0, 0, 0, 0, 1 if d.errors else 0)
            buckets.session(minute, labels, d.latency_ms, d.cost)
            slow = 1.0 if d.latency_ms > LATENCY_SLO_MS else 0.0
            buckets.bump(minute, (*labels, "slo:latency", ""), 1, 1, 0, 0, slow, slow, 0)
            session_rows.append((
                PROJECT, sid, service, service, version, d.intent, d.user_id, end_ns - int(d.latency_ms * 1e6),
                end_ns, 2 + d.llm_calls + d.tool_calls, d.turns, d.llm_calls, d.tool_calls, d.tool_errors, d.errors,
                d.tokens_in, d.tokens_out, 0, 0, d.llm_calls, d.cost, d.latency_ms * 0.8, True, stamp,
                flagged or bool(d.errors), d.sampled, stamp, stamp, stamp, stamp))
            if spans_per_session:
                # Successful spans whose payload retention dropped: an agent root and model calls.
                session_start = end_ns - int(d.latency_ms * 1e6)
                root = f"{p:016x}"
                for k in range(spans_per_session):
                    span_rows.append((
                        PROJECT, trace_id(p), root if k == 0 else f"{p:012x}{k:04x}", None if k == 0 else root, sid,
                        True, "invoke_agent" if k == 0 else "chat gpt-4o-mini", "agent" if k == 0 else "llm",
                        1 if k == 0 else 3, session_start, end_ns, 0, True, service, service, version, d.intent,
                        None if k == 0 else "openai", None if k == 0 else "gpt-4o-mini",
                        None if k == 0 else d.tokens_in // spans_per_session,
                        None if k == 0 else d.tokens_out // spans_per_session, "{}"))
            if d.tool_errors and end_ns >= END_NS - SPAN_HOURS * HOUR_NS:
                spans.append({
                    "project_id": PROJECT, "trace_id": trace_id(p), "span_id": d.span_id, "parent_span_id": None,
                    "session_id": sid, "session_explicit": True, "name": f"tool {d.tool}", "kind": "tool",
                    "span_kind": 1, "start_ns": end_ns - int(d.latency_ms * 5e5),
                    "end_ns": end_ns - int(d.latency_ms * 4e5), "status_code": 2, "status_message": d.message,
                    "success": False, "error_type": d.error_type, "service": service, "agent_name": service,
                    "agent_version": version, "intent": d.intent, "tool_name": d.tool, "attributes": {}})
        minute_rows, hour_rows = buckets.flush(end_ns - end_ns % MINUTE_NS)
        with engine.begin() as conn:
            loader.rows(conn, "sessions", SESSION_COLUMNS, session_rows)
            loader.rows(conn, "scores", SCORE_COLUMNS, score_rows)
            loader.rows(conn, "spans", SPAN_COLUMNS, span_rows)
            loader.rows(conn, "rollups", ROLLUP_COLUMNS, minute_rows)
            loader.rows(conn, "rollups_hourly", ROLLUP_COLUMNS, hour_rows)
        scores_written += len(score_rows)
    # 2. The time slices the monitor recorded every 5 minutes before the timed hour (all good).
    first_slice = start_ns + HOUR_NS - (start_ns + HOUR_NS) % (5 * MINUTE_NS) + 5 * MINUTE_NS
    for tick in range(first_slice, TIMED_START_NS + 1, 5 * MINUTE_NS):
        buckets.bump(tick - MINUTE_NS, ("", "", "", "slice:goal-mean", ""), 1, 1, 0, 0, 0, 0, 0)
    minute_rows, hour_rows = buckets.flush(None)
    with engine.begin() as conn:
        loader.rows(conn, "rollups", ROLLUP_COLUMNS, minute_rows)
        loader.rows(conn, "rollups_hourly", ROLLUP_COLUMNS, hour_rows)
        if spans:
            conn.execute(insert(m.spans), spans)
    phases["sessions, scores, rollups"] = time.monotonic() - started

    # 3. What the monitor mined from the history (before trace_sessions exist: the miner's queries look
    #    up each failure's first trace there).
    mark = time.monotonic()
    miner = clusters.Miner(MonitorConfig().clusters)
    hits = 0
    for since in range(start_ns - start_ns % DAY_NS, TIMED_START_NS, DAY_NS):
        until = min(since + DAY_NS, TIMED_START_NS)
        warm = set(SERVICES) if since - first_seen >= DAY_NS else set()
        with engine.begin() as conn:
            hits += miner.mine(conn, PROJECT, since, until, warm)
    phases["mining the history"] = time.monotonic() - mark

    # 4. One trace per session.
    mark = time.monotonic()
    for chunk_start in range(0, n, BATCH * 5):
        rows = [(PROJECT, trace_id(p), session_id(p), True)
                for p in range(chunk_start, min(n, chunk_start + BATCH * 5))]
        with engine.begin() as conn:
            loader.rows(conn, "trace_sessions", TRACE_COLUMNS, rows)
    with engine.begin() as conn:
        conn.execute(insert(m.monitor_state).values(
            project_id=PROJECT, last_tick_ns=TIMED_START_NS, updated_at=now,
            state={"first_seen": dict.fromkeys(SERVICES, first_seen), "since": first_seen}))
    if db.dialect == "postgresql":
        # What autovacuum does shortly after a bulk load; without statistics the planner guesses.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    phases["trace_sessions, state"] = time.monotonic() - mark
    seconds = time.monotonic() - started

    with engine.connect() as conn:
        counts = {name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                  for name, table in (("sessions", m.sessions), ("scores", m.scores), ("rollups", m.rollups),
                                      ("rollups_hourly", m.rollups_hourly), ("spans", m.spans),
                                      ("trace_sessions", m.trace_sessions),
                                      ("failure_templates", m.failure_templates),
                                      ("template_hits", m.template_hits))}
        counted = conn.execute(select(func.sum(m.rollups.c.count)).where(
            m.rollups.c.dimension == rollups.SESSION_DIMENSION)).scalar()
    if int(counted or 0) != n or counts["scores"] != scores_written:
        raise SystemExit(f"seeding is inconsistent: {counted} sessions in rollups, {counts['scores']} scores stored "
                         f"of {scores_written}")
    return Built(n, start_ns, seconds, phases, counts, disk_bytes(db))


# -- timing the checks ---------------------------------------------------------------------------------------

#: Seconds spent in each part of a check (nested parts are counted in their callers too).
PARTS: dict[str, float] = {}


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            PARTS[name] = PARTS.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def instrument() -> None:
    """Wrap each check the monitor runs with a timer (module and class attributes, looked up at call time).

    Indented names run inside the one above them and are counted in both.
    """
    targets: list[tuple[Any, str, str]] = [
        (clusters.Miner, "mine", "clusters: mine failures"),
        (clusters, "check", "clusters: new/surging templates"),
        (events, "rare_events", "rare events"),
        (DriftDetector, "check", "drift z"),
        (DriftDetector, "baselines", "  drift baselines (cached per hour)"),
        (DriftDetector, "_hours", "  drift baseline hours (cached per hour)"),
        (DriftDetector, "cusum", "drift CUSUM (hourly)"),
        (slo, "check", "SLO burn rates"),
        (slo_burn, "record_slices", "  SLO time slices"),  # check looks both up in its own module
        (slo_burn, "examples", "  SLO alert examples"),
        (events, "calibration", "calibration"),
        (events, "no_data", "no data"),
        (Monitor, "_warm", "warm-up"),
        (Monitor, "_reconcile", "alerts: reconcile and notify"),
        (Monitor, "_examples", "  drift alert examples"),
        (Monitor, "_labels_pass", "calibration of late labels"),
    ]
    for owner, attribute, name in targets:
        if hasattr(owner, attribute):  # the monitor's internals move; time what is there
            setattr(owner, attribute, _timed(name, getattr(owner, attribute)))


_SPACES = re.compile(r"\s+")


@dataclass
class Statements:
    """Every SQL statement the check runs: count and time by text."""

    by_text: dict[str, list[float]] = field(default_factory=dict)
    #: The last parameters of each SELECT, to explain its plan.
    parameters: dict[str, Any] = field(default_factory=dict)
    active: bool = False

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        started = conn.info["bench_started"].pop()
        if self.active:
            entry = self.by_text.setdefault(statement, [0.0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - started
            if not executemany and statement.lstrip()[:6].upper() == "SELECT":
                self.parameters[statement] = parameters

    def top(self, count: int) -> list[tuple[str, float, float]]:
        ranked = sorted(self.by_text.items(), key=lambda kv: -kv[1][1])[:count]
        return [(_SPACES.sub(" ", text).strip(), calls, seconds) for text, (calls, seconds) in ranked]


    def unbounded(self, engine: Engine) -> list[tuple[str, str, float, str]]:
        """SELECTs whose plan reads a table that grows with the sessions without bounding the read.

        SQLite: a ``SCAN`` of such a table, or a ``SEARCH`` constrained by ``project_id`` alone;
        PostgreSQL (tables of ``PG_MIN_ROWS`` or more, its plans follow the statistics): a ``Seq Scan``
        of one, or an index scan whose condition is ``project_id`` alone.
        Answers (table, plan line, calls, statement).
        """
        found: list[tuple[str, str, float, str]] = []
        with engine.connect() as conn:
            big: dict[str, float] = {}
            if engine.dialect.name == "postgresql":
                # The planner scans small tables whole on purpose: only big ones are worth a look.
                big = {str(name): float(rows) for name, rows in conn.exec_driver_sql(
                    "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' AND relname = ANY(%(names)s)",
                    {"names": sorted(GROWING)})}
            for statement, parameters in self.parameters.items():
                calls = self.by_text[statement][0]
                if engine.dialect.name == "sqlite":
                    plan = [str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                         parameters)]
                    for line in plan:
                        match = _SQLITE_READ.match(line)
                        if match and match["table"] in GROWING and (match["how"] == "SCAN"
                                                                    or match["cond"] in (None, "project_id=?")):
                            found.append((match["table"], line, calls, statement))
                    continue
                plan = [str(row[0]) for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)]
                for i, line in enumerate(plan):
                    match = _PG_READ.search(line)
                    if not match or big.get(match["table"], 0) < PG_MIN_ROWS:
                        continue
                    node = [line.strip()]
                    for detail in plan[i + 1:]:
                        if "->" in detail:
                            break
                        node.append(detail.strip())
                    cond = next((d for d in node if d.startswith(("Index Cond:", "Recheck Cond:"))), "")
                    if "Seq Scan" in line or re.fullmatch(r"\w+ Cond: \(\(?(\w+\.)?project_id = [^()]*\)?\)", cond):
                        found.append((match["table"], " ".join(node[:2]), calls, statement))
        return found


#: The tables that grow with the sessions stored (rollups grow with the event-time span).
GROWING = {"sessions", "scores", "spans", "trace_sessions", "span_events", "eval_jobs", "labels", "template_hits",
           "rollups", "rollups_hourly"}
PG_MIN_ROWS = 20_000
_SQLITE_READ = re.compile(r"(?P<how>SCAN|SEARCH) (?P<table>\w+)(?: AS \w+)?"
                          r"(?: USING (?:COVERING |INTEGER PRIMARY KEY )?(?:INDEX \w+ )?(?:\((?P<cond>.*)\))?)?")
_PG_READ = re.compile(r"(?:Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan)(?: Backward)?(?: using \w+)? on "
                      r"(?P<table>\w+)")


@dataclass
class Checked:
    runs: list[float]
    ticks: int
    statements_per_tick: float
    parts: dict[str, float]
    top: list[tuple[str, float, float]]
    alerts: dict[str, int]
    unbounded: list[tuple[str, str, float, str]]


def snapshot(engine: Engine) -> dict[str, Any]:
    t = m.failure_templates.c
    with engine.connect() as conn:
        templates = [dict(r._mapping) for r in conn.execute(
            select(t.id, t.template, t.last_seen_ns, t.count, t.weighted_count))]
        state = conn.execute(select(m.monitor_state.c.last_tick_ns, m.monitor_state.c.state)).one()
    return {"templates": templates, "state": (int(state[0]), dict(state[1]))}


def reset(engine: Engine, saved: dict[str, Any]) -> None:
    """Undo what a checked hour wrote, so the next repeat checks the same store."""
    t, r, h = m.failure_templates.c, m.rollups.c, m.rollups_hourly.c
    with engine.begin() as conn:
        conn.execute(delete(m.alerts))
        conn.execute(delete(m.notifications))
        conn.execute(delete(m.template_hits).where(m.template_hits.c.event_ns >= TIMED_START_NS))
        known = [row["id"] for row in saved["templates"]]
        conn.execute(delete(m.failure_templates).where(t.id.not_in(known) if known else t.id.is_not(None)))
        for row in saved["templates"]:
            conn.execute(update(m.failure_templates).where(t.id == row["id"]).values(
                template=row["template"], last_seen_ns=row["last_seen_ns"], count=row["count"],
                weighted_count=row["weighted_count"]))
        conn.execute(delete(m.rollups).where(r.dimension.like("slice:%"), r.minute_ns >= TIMED_START_NS))
        conn.execute(delete(m.rollups_hourly).where(h.dimension.like("slice:%"), h.minute_ns >= TIMED_START_NS))
        last_tick, state = saved["state"]
        conn.execute(update(m.monitor_state).values(last_tick_ns=last_tick, state=state))


def check(engine: Engine, catalogue: Catalogue, slos: tuple[Any, ...], repeats: int, top: int) -> Checked:
    statements = Statements()
    statements.attach(engine)
    saved = snapshot(engine)
    runs: list[float] = []
    ticks = 0
    PARTS.clear()
    alerts: dict[str, int] = {}
    for repeat in range(repeats):
        if repeat:
            reset(engine, saved)
        monitor = Monitor(engine, catalogue, MonitorConfig(), slos, load_routes({}), idle_timeout_s=300.0)
        statements.active = True
        started = time.perf_counter()
        ticks = monitor.run(PROJECT, END_NS + 10 * MINUTE_NS, final_event_ns=END_NS - 1)
        runs.append(time.perf_counter() - started)
        statements.active = False
        if ticks != 60:
            raise SystemExit(f"expected 60 ticks in the last hour, the monitor ran {ticks}")
        with engine.connect() as conn:
            alerts = {f"{kind}:{state}": int(count) for kind, state, count in conn.execute(
                select(m.alerts.c.kind, m.alerts.c.state, func.count()).group_by(m.alerts.c.kind, m.alerts.c.state))}
    calls = sum(v[0] for v in statements.by_text.values())
    return Checked(runs, ticks, calls / (ticks * repeats), {k: v / repeats for k, v in PARTS.items()},
                   statements.top(top), alerts, statements.unbounded(engine))


# -- main ----------------------------------------------------------------------------------------------------


def run_size(n: int, args: argparse.Namespace, catalogue: Catalogue, slos: tuple[Any, ...]) -> dict[str, Any]:
    db, folder = fresh_database(args.database_url, n)
    days = n * GAP_NS / DAY_NS
    where = "PostgreSQL" if db.dialect == "postgresql" else "SQLite"
    print(f"\n== {n:,} sessions: {len(SERVICES)} services x {RATE_PER_SERVICE:g}/h over {days:.2f} days, "
          f"{where} ==", flush=True)
    try:
        engine = make_engine(db.url)
        migrate(engine)
        built = build(db, engine, n, catalogue, args.seed, args.spans_per_session)
        c = built.counts
        print(f"build     {built.seconds:7.1f} s  ({', '.join(f'{k} {v:.1f} s' for k, v in built.phases.items())})")
        print(f"database  {built.bytes / 1e6:7.1f} MB  sessions {c['sessions']:,}, scores {c['scores']:,}, rollups "
              f"{c['rollups']:,} minute + {c['rollups_hourly']:,} hour rows, trace_sessions {c['trace_sessions']:,}, "
              f"spans {c['spans']:,}, templates {c['failure_templates']:,}, hits {c['template_hits']:,}",
              flush=True)
        engine.dispose()
        engine = make_engine(db.url)
        found = check(engine, catalogue, slos, args.repeats, args.top)
        median = statistics.median(found.runs)
        per_tick = median / found.ticks * 1000
        print(f"check     last hour, {found.ticks} ticks x {args.repeats}: "
              f"{', '.join(f'{r:.2f}' for r in found.runs)} s -> median {median:.2f} s = {per_tick:.1f} ms/tick, "
              f"{found.statements_per_tick:.0f} statements/tick")
        print(f"alerts    {', '.join(f'{k} {v}' for k, v in sorted(found.alerts.items())) or 'none'}")
        print("parts     ms/tick: " + ", ".join(
            f"{name.strip()} {seconds / found.ticks * 1000:.1f}"
            for name, seconds in sorted(found.parts.items(), key=lambda kv: -kv[1]) if seconds >= 0.0005))
        for text, calls, seconds in found.top:
            print(f"  sql {seconds / args.repeats / found.ticks * 1000:6.2f} ms/tick "
                  f"{calls / args.repeats / found.ticks:5.1f}/tick  {text[:args.sql_width]}")
        for table, line, calls, statement in found.unbounded:
            print(f"  unbounded read of {table} ({calls / args.repeats / found.ticks:.1f}/tick): {line}\n"
                  f"      in {_SPACES.sub(' ', statement).strip()[:args.sql_width * 2]}")
        if not found.unbounded:
            print("  unbounded reads: none (every read of a growing table is bounded by more than project_id)")
        engine.dispose()
        return {"sessions": n, "days": days, "build_s": built.seconds, "db_bytes": built.bytes,
                "check_runs_s": found.runs, "check_ms_per_tick": per_tick, "ticks": found.ticks,
                "statements_per_tick": found.statements_per_tick, "counts": built.counts, "alerts": found.alerts,
                "unbounded_reads": [{"table": t, "plan": p, "statement": _SPACES.sub(" ", q).strip()}
                                    for t, p, _, q in found.unbounded],
                "parts_ms_per_tick": {k.strip(): v / found.ticks * 1000 for k, v in found.parts.items()}}
    finally:
        if args.keep:
            print(f"kept      {db.url}")
        else:
            db.drop()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000",
                        help="stored sessions per run, comma-separated (default 1000,100000,1000000)")
    parser.add_argument("--quick", action="store_true", help="sizes 1000 and 20000 (a smoke run)")
    parser.add_argument("--database-url", help="postgresql://... (a fresh aw_bench_monitor_<random> database is "
                                               "created through it per size and dropped), or sqlite:///dir/x.db "
                                               "(temporary files are made in that folder); default: a temp folder")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the last hour per size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spans-per-session", type=int, default=0,
                        help="also store this many successful spans per session, payload dropped (default 0: only "
                             "the failed tool spans of the last 2 hours)")
    parser.add_argument("--top", type=int, default=4, help="slowest statements to print per size")
    parser.add_argument("--sql-width", type=int, default=200, help="characters of each statement printed")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON lines")
    args = parser.parse_args()
    sizes = [1000, 20000] if args.quick else [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    logging.basicConfig(level=logging.WARNING)

    catalogue = load_catalogue(CATALOGUE)
    slos = slo.load_slos(SLOS, None, catalogue)
    instrument()
    print(f"{len(SERVICES)} services x {RATE_PER_SERVICE:g} sessions/h; evaluators "
          f"{', '.join(f'{s.name} (p={s.effective_rate(catalogue.default_rate):g})' for s in catalogue.scored)}; "
          f"SLOs {', '.join(f'{s.name} ({s.kind}' + (', sliced)' if s.sliced else ')') for s in slos)}")
    results = [run_size(n, args, catalogue, slos) for n in sizes]

    base = results[0]["check_ms_per_tick"]
    print(f"\n{'sessions':>10} | {'days':>6} | {'build s':>8} | {'db MB':>8} | {'rollup rows':>11} | "
          f"{'check ms/tick':>13} | {'ratio':>5}")
    for r in results:
        rows = r["counts"]["rollups"] + r["counts"]["rollups_hourly"]
        print(f"{r['sessions']:>10,} | {r['days']:>6.2f} | {r['build_s']:>8.1f} | {r['db_bytes'] / 1e6:>8.1f} | "
              f"{rows:>11,} | {r['check_ms_per_tick']:>13.1f} | {r['check_ms_per_tick'] / base:>5.2f}")
        if args.json:
            print(json.dumps(r))
    flat = all(r["check_ms_per_tick"] <= 2 * base for r in results)
    print(f"flat within 2x: {'yes' if flat else 'no'}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
