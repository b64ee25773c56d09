"""The monitor: runs every check at event-time ticks and hands the conditions to the alert store.

Ticks are the multiples of ``alerts.check_interval`` (5 minutes) of event
time. The check of tick T reads data strictly before T, and runs once that
data is complete: when the watermark has passed T by the sessions' idle
timeout (every session that ended before T is complete) and no evaluation of
a session that ended before T is still queued. So a replay checks exactly
what living through the traffic would have, whatever the speed, and an
alert's ``started_at`` is the tick at which its condition first held.
``flush`` completes sessions and drains evaluations first, then checks up
to the tick after the last event.

Each tick runs in one transaction with the monitor's state (hold timers,
CUSUM sums, the services' first-seen times), so a restart resumes at the
next unchecked tick. Calibration also runs at the latest tick whenever
labels arrive, since labels come later than their sessions' event time.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from agentwatch.alert import store as alert_store
from agentwatch.alert.routes import Routes
from agentwatch.alert.types import MAX_EXAMPLES, Candidate
from agentwatch.evaluate.catalogue import Catalogue
from agentwatch.monitor import clusters, events, slo
from agentwatch.monitor.config import MonitorConfig
from agentwatch.monitor.detectors import Calibration, Detector, Firing, Tick, default_detectors
from agentwatch.monitor.drift import DriftDetector
from agentwatch.store import models as m
from agentwatch.store.models import utcnow
from agentwatch.store.rollups import HOUR_NS, SESSION_DIMENSION, series_totals

logger = logging.getLogger(__name__)

_NS = 1_000_000_000
#: A queued evaluation older than this (wall time) no longer holds the monitor back (a judge is down).
STALLED_JOB = timedelta(minutes=10)
#: Most ticks checked in one call, so that a long replay does not hold one thread for minutes.
MAX_TICKS_PER_RUN = 2016
#: Inhibitors: while one of these fires for an evaluator, its drift and burn alerts are muted.
INHIBITING = ("calibration", "evaluator_errors")
INHIBITED = ("drift", "burn_rate")


class Monitor:
    def __init__(self, engine: Any, catalogue: Catalogue, config: MonitorConfig, slos: tuple[Any, ...],
                 routes: Routes, *, idle_timeout_s: float, public_url: str | None = None) -> None:
        self.engine = engine
        self.catalogue = catalogue
        self.config = config
        self.slos = slos
        self.routes = routes
        self.idle_ns = int(idle_timeout_s * _NS)
        self.public_url = public_url
        self.interval_ns = int(config.fast_check_interval_s * _NS)
        self.slow_ns = int(config.check_interval_s * _NS)
        self.drift = DriftDetector(config.drift)
        #: The checks each tick runs, in order.
        self.detectors: list[Detector] = default_detectors(config, slos, self.drift)
        self.miner = clusters.Miner(config.clusters)
        #: Hysteresis by kind: an alert keeps firing this long after its condition last held.
        self.keep_firing_ns = {"new_cluster": int(config.clusters.keep_firing_for_s * _NS)}
        self._lock = threading.Lock()
        #: Per project, (newest label id, tick) of the last calibration pass for late labels.
        self._labels_seen: dict[int, tuple[int, int]] = {}

    # -- scheduling -----------------------------------------------------------------------------------------

    def ready_ns(self, conn: Connection, project_id: int, watermark_ns: int) -> int:
        """The event time before which data is complete: sessions ended and evaluated."""
        ready = watermark_ns - self.idle_ns
        j, s = m.eval_jobs.c, m.sessions.c
        oldest = conn.execute(
            select(func.min(s.end_ns)).select_from(
                m.eval_jobs.join(m.sessions, (s.project_id == j.project_id) & (s.session_id == j.session_id)))
            .where(j.project_id == project_id, j.reason == "complete", j.created_at > utcnow() - STALLED_JOB)).scalar()
        if oldest is not None:
            ready = min(ready, int(oldest))
        return ready

    def run(self, project_id: int, watermark_ns: int, *, final_event_ns: int | None = None) -> int:
        """Check every tick that is due; answers how many ran. ``final_event_ns``: flush, check past it."""
        with self._lock:
            ran = 0
            while True:
                with self.engine.begin() as conn:
                    state_row = conn.execute(select(m.monitor_state.c.last_tick_ns, m.monitor_state.c.state)
                                             .where(m.monitor_state.c.project_id == project_id)).first()
                    if state_row is None:
                        first = conn.execute(select(func.min(m.sessions.c.start_ns))
                                             .where(m.sessions.c.project_id == project_id)).scalar()
                        if first is None:
                            return ran
                        last_tick, state = int(first) - int(first) % self.interval_ns, {}
                    else:
                        last_tick, state = int(state_row.last_tick_ns), dict(state_row.state or {})
                    if final_event_ns is not None:
                        ready = final_event_ns - final_event_ns % self.interval_ns + self.interval_ns
                    else:
                        ready = self.ready_ns(conn, project_id, watermark_ns)
                tick = last_tick + self.interval_ns
                if tick > ready or ran >= MAX_TICKS_PER_RUN:
                    break
                # The fast ticks up to the next check interval share one transaction (and one state write).
                batch_end = min(ready, tick - tick % self.slow_ns + self.slow_ns)
                try:
                    with self.engine.begin() as conn:
                        has_state = state_row is not None
                        while tick <= batch_end and ran < MAX_TICKS_PER_RUN:
                            self._tick(conn, project_id, tick, state)
                            ran += 1
                            last_tick, tick = tick, tick + self.interval_ns
                        self._save(conn, project_id, last_tick, state, has_state=has_state)
                except Exception:
                    self.miner.forget()
                    raise
            self._labels_pass(project_id)
            return ran

    def _save(self, conn: Connection, project_id: int, tick: int, state: dict[str, Any], *, has_state: bool) -> None:
        table = m.monitor_state
        values = {"last_tick_ns": tick, "state": state, "updated_at": utcnow()}
        if has_state:
            conn.execute(table.update().where(table.c.project_id == project_id).values(**values))
        else:
            conn.execute(table.insert().values(project_id=project_id, **values))

    # -- one tick -------------------------------------------------------------------------------------------

    def _warm(self, conn: Connection, project_id: int, tick: int, state: dict[str, Any],
              warmup_s: float) -> set[str]:
        first_seen: dict[str, int] = state.setdefault("first_seen", {})
        seen = series_totals(conn, project_id, SESSION_DIMENSION, since_ns=tick - self.interval_ns, until_ns=tick,
                             group_by=("service",))
        for (service,) in seen:
            first_seen.setdefault(service, tick - self.interval_ns)
        return {s for s, t in first_seen.items() if tick - t >= int(warmup_s * _NS)}

    def _tick(self, conn: Connection, project_id: int, tick: int, state: dict[str, Any]) -> None:
        cfg = self.config
        state.setdefault("since", tick - self.interval_ns)
        drift_warm = self._warm(conn, project_id, tick, state, cfg.drift.warmup_s)
        cluster_warm = {s for s, t in state["first_seen"].items() if tick - t >= int(cfg.clusters.warmup_s * _NS)}
        reasons = clusters.ReasonSources.of(self.catalogue.specs, cfg.clusters.reason_kinds)
        self.miner.mine(conn, project_id, tick - self.interval_ns, tick, cluster_warm, reasons)

        slow = tick % self.slow_ns == 0
        at = Tick(conn, project_id, tick, state, self.catalogue, self._firing(conn, project_id), drift_warm,
                  cluster_warm, slow=slow, hourly=slow and tick % HOUR_NS == 0)
        checked: set[tuple[str, str]] = set()
        #: Dedup keys of firing alerts a check could not judge at this tick (left as they are).
        keep: set[str] = set()
        for detector in self.detectors:
            if at.runs(detector.every):
                verdict = detector.check(at)
                at.candidates += verdict.candidates
                checked |= verdict.decided
                keep |= verdict.keep
        self._reconcile(conn, project_id, tick, at.candidates, checked, at.firing, keep=keep, state=state)

    def _firing(self, conn: Connection, project_id: int) -> list[Firing]:
        a = m.alerts.c
        return [Firing(*row) for row in conn.execute(
            select(a.kind, a.rule, a.dedup_key, a.evaluator).where(a.project_id == project_id, a.state == "firing"))]

    def _reconcile(self, conn: Connection, project_id: int, tick: int, candidates: list[Candidate],
                   checked: set[tuple[str, str]], firing: list[Firing], *, keep: set[str] | None = None,
                   state: dict[str, Any] | None = None) -> None:
        # Inhibitors: those holding now, and firing ones whose rule was not checked at this tick (one that was
        # checked and no longer holds is resolved by this very reconcile).
        inhibitors = {c.evaluator for c in candidates if c.kind in INHIBITING and c.evaluator}
        inhibitors |= {f.evaluator for f in firing
                       if f.kind in INHIBITING and f.evaluator and (f.kind, f.rule) not in checked}
        kept = [c for c in candidates if not (c.kind in INHIBITED and c.evaluator in inhibitors)]
        # Muted alerts that already fire stay as they are: neither updated nor resolved.
        keep_keys = {f.key for f in firing if f.kind in INHIBITED and f.evaluator in inhibitors} | (keep or set())
        for candidate in kept:
            if not candidate.session_ids and candidate.kind == "drift":
                candidate.session_ids, candidate.trace_ids = self._examples(conn, project_id, tick, candidate)
        held: dict[str, int] | None = None if state is None else state.setdefault("held", {})
        alert_events = alert_store.reconcile(conn, project_id, tick, kept, checked, keep_keys=keep_keys,
                                             keep_firing_ns=self.keep_firing_ns, held=held,
                                             public_url=self.public_url, now=utcnow())
        for event in alert_events:
            alert = event.alert
            logger.info("alert %s: %s %s %s (%s)", event.action, alert["kind"], alert["rule"], alert["summary"],
                        alert["severity"])
        alert_store.enqueue_notifications(conn, project_id, alert_events, self.routes)

    def _examples(self, conn: Connection, project_id: int, tick: int, candidate: Candidate
                  ) -> tuple[list[str], list[str]]:
        """The lowest-scored sessions of a drifting series in its window."""
        sc, se = m.scores.c, m.sessions.c
        where = [sc.project_id == project_id, sc.evaluator == candidate.evaluator,
                 sc.evaluator_version == candidate.evaluator_version, sc.shadow.is_(False), sc.status == "ok",
                 sc.event_time_ns >= tick - int(self.config.drift.window_s * _NS), sc.event_time_ns < tick]
        for name in ("service", "agent_version", "intent"):
            if candidate.labels.get(name):
                where.append(se[name] == candidate.labels[name])
        rows = conn.execute(
            select(sc.session_id, clusters.first_trace(sc.project_id, sc.session_id))
            .select_from(m.scores.join(m.sessions, (se.project_id == sc.project_id) & (se.session_id == sc.session_id)))
            .where(*where).order_by(sc.score, sc.event_time_ns, sc.id).limit(MAX_EXAMPLES)).all()
        return [r[0] for r in rows], [r[1] for r in rows if r[1]]

    # -- labels arrive late ---------------------------------------------------------------------------------

    def _labels_pass(self, project_id: int) -> None:
        """Calibration at the latest checked tick, for labels posted after their sessions' ticks ran
        (only when a label or the tick is new since the last pass)."""
        with self.engine.begin() as conn:
            tick = conn.execute(select(m.monitor_state.c.last_tick_ns)
                                .where(m.monitor_state.c.project_id == project_id)).scalar()
            newest = conn.execute(select(func.max(m.labels.c.id)).where(m.labels.c.project_id == project_id)).scalar()
            if tick is None or newest is None or self._labels_seen.get(project_id) == (newest, tick):
                return
            self._labels_seen[project_id] = (newest, tick)
            candidates = events.calibration(conn, project_id, int(tick), self.catalogue.scored, self.config)
            self._reconcile(conn, project_id, int(tick), candidates, set(Calibration.decides),
                            self._firing(conn, project_id))

    # -- surfaces -------------------------------------------------------------------------------------------

    def last_tick(self, project_id: int) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(m.monitor_state.c.last_tick_ns)
                                 .where(m.monitor_state.c.project_id == project_id)).scalar()
        return None if value is None else int(value)

    def slo_status(self, project_id: int) -> list[dict[str, Any]]:
        tick = self.last_tick(project_id)
        if tick is None or not self.slos:
            return []
        with self.engine.connect() as conn:
            result: list[dict[str, Any]] = slo.status(conn, project_id, tick, self.slos)
        return result
