"""Wires the stages from :class:`~agentwatch.settings.Settings`; no logic of its own.

One process runs every stage (role ``all``, the default and the only one on
SQLite), or some of them on a PostgreSQL database shared with other processes:

- ``ingest``: OTLP receivers, the group-commit writer, sessions and their
  completion (any number; they share one event-time clock per project);
- ``worker``: the evaluation queue (any number; jobs are claimed with leases);
- ``monitor``: checks, notifications and retention, in one process at a time
  (a candidate holds :mod:`~agentwatch.monitor.leader`'s lock, others wait);
- ``ui``: the HTTP API and the dashboard (any number).

Every role serves the API, the dashboard, ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from sqlalchemy import Connection, select

from agentwatch.alert.notify import Dispatcher
from agentwatch.alert.routes import load_routes
from agentwatch.auth import Auth
from agentwatch.errors import ConfigError, Unavailable
from agentwatch.evaluate.catalogue import load_catalogue
from agentwatch.evaluate.engine import EvaluationWorker, Scorer
from agentwatch.evaluate.processes import EvaluationProcesses
from agentwatch.evaluate.rescore import shadow_new_versions
from agentwatch.ingest.memory import GuardedBudget, MemoryGuard
from agentwatch.ingest.receiver import Budget, DecodePool, Receiver
from agentwatch.monitor import slo
from agentwatch.monitor.checker import Monitor
from agentwatch.monitor.config import MonitorConfig
from agentwatch.monitor.leader import Leadership
from agentwatch.normalize import NormalizeOptions
from agentwatch.sessions.lifecycle import Clock, SessionLifecycle, completed_rows
from agentwatch.settings import Settings
from agentwatch.store import evaluations, retention, rollups
from agentwatch.store import models as m
from agentwatch.store.engine import log_failed_pass
from agentwatch.store.retention import RetentionPolicy
from agentwatch.store.store import Store
from agentwatch.store.writer import Writer

logger = logging.getLogger(__name__)

#: Seconds between two live-mode ticks of the event-time clock.
TICK_SECONDS = 1.0
#: Retention runs every this many ticks (and at every flush).
RETENTION_EVERY_TICKS = 10
#: What ``serve --role`` accepts.
ROLES = ("all", "ingest", "worker", "monitor", "ui")


class Pipeline:
    """The running parts of one server process."""

    def __init__(self, settings: Settings, store: Store | None = None, *, role: str = "all") -> None:
        if role not in ROLES:
            raise ConfigError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
        self.settings = settings
        self.store = store or Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        if role != "all" and self.store.engine.dialect.name != "postgresql":
            raise ConfigError(f"role {role} needs PostgreSQL: processes of different roles share one database "
                              "(on SQLite one process runs every stage: serve without --role, or --role all)")
        self.role = role
        #: Which stages this process runs.
        self.ingests = role in ("all", "ingest")
        self.scores = role in ("all", "worker")
        self.monitors = role in ("all", "monitor")
        #: The monitor lock of a ``monitor`` process (``all`` is the only process: it needs none).
        self.leadership = Leadership(self.store.engine) if role == "monitor" else None
        self.default_project_id = self.store.ensure_project(settings.project)
        self.options = NormalizeOptions.from_settings(settings)
        self.catalogue = load_catalogue(settings.sections, settings.config_path)
        where = settings.config_path or "agentwatch.yaml"
        self.monitor_config = MonitorConfig.from_section(settings.sections.get("alerts"), where)
        self.slos = slo.load_slos(settings.sections, settings.config_path, self.catalogue)
        self.routes = load_routes(settings.sections, settings.config_path)
        self.sessions = SessionLifecycle(
            self.store.engine,
            idle_timeout_s=settings.idle_timeout,
            allowed_lateness_s=settings.allowed_lateness,
            on_complete=self._on_complete,
        )
        self.writer = Writer(self.store.engine, self.sessions, max_batch_spans=settings.max_batch_spans)
        self.retention = RetentionPolicy.from_section(settings.sections.get("retention"),
                                                      settings.config_path or "agentwatch.yaml")
        self.scorer = Scorer(self.store, self.catalogue, self.options)
        self.worker = EvaluationWorker(self.scorer, lease_s=settings.evaluation_lease)
        #: Set (by ``serve``) to score in processes of their own instead of the in-process worker.
        self.evaluation_processes: EvaluationProcesses | None = None
        self.memory = MemoryGuard(settings.memory_limit_mb * 2**20) if settings.memory_limit_mb else None
        self.budget = (GuardedBudget(settings.max_inflight_bytes, self.memory) if self.memory
                       else Budget(settings.max_inflight_bytes))
        self.receiver = Receiver(self.writer, self.options, self.budget)
        self.auth = Auth(self.store, self.default_project_id)
        self.monitor = Monitor(self.store.engine, self.catalogue, self.monitor_config, self.slos, self.routes,
                               idle_timeout_s=settings.idle_timeout, public_url=settings.public_url)
        self.dispatcher = Dispatcher(self.store.engine, self.routes, public_url=settings.public_url,
                                     repeat_interval_s=self.monitor_config.repeat_interval_s)
        self._ticker: threading.Thread | None = None
        self._monitor_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        # Whichever process registers a new evaluator version first queues its shadow scores, once.
        self._shadow(evaluations.register_evaluators(self.store.engine, self.catalogue.scored))
        if self.ingests:
            self.writer.start()
            if self.settings.decode_processes and self.receiver.pool is None:
                self.receiver.pool = DecodePool(self.settings.decode_processes, self.options)
        if self.scores:
            if self.evaluation_processes is not None:
                self.evaluation_processes.start()
            else:
                self.worker.start()
        if self.memory is not None:
            self.memory.start()
        self._ticker = threading.Thread(target=self._tick, name="agentwatch-clock", daemon=True)
        self._ticker.start()
        if self.monitors:
            self._monitor_thread = threading.Thread(target=self._watch, name="agentwatch-monitor", daemon=True)
            self._monitor_thread.start()
            if self.leadership is None:
                self.dispatcher.start()

    def _shadow(self, new_versions: list[tuple[str, str]]) -> None:
        shadow_new_versions(self.store.engine, new_versions,
                            {pid: clock.watermark_ns for pid, clock in self.clocks().items()})

    def clocks(self) -> dict[int, Clock]:
        """Each project's event-time clock: this process's own when it ingests, else the stored one (saved by
        every completion pass, so its watermark is also the committed completion watermark)."""
        if self.ingests:
            return dict(self.sessions.clocks)
        with self.store.engine.connect() as conn:
            return {row.project_id: Clock(int(row.max_event_ns), int(row.watermark_ns),
                                          completed_ns=int(row.watermark_ns))
                    for row in conn.execute(select(m.watermarks))}

    def _on_complete(self, conn: Connection, project_id: int, session_ids: list[str]) -> None:
        """In the transaction that completes sessions: queue their evaluation, count them in rollups
        and in the system SLOs' series."""
        evaluations.enqueue(conn, project_id, session_ids)
        for rows in completed_rows(conn, project_id, session_ids):
            rollups.apply_sessions(conn, project_id, rows)
            slo.record_sessions(conn, project_id, self.slos, rows)

    def _tick(self) -> None:
        ticks = 0
        while not self._stopping.wait(TICK_SECONDS):
            ticks += 1
            try:
                if self.ingests:
                    self.writer.call(self.sessions.tick).result(timeout=60)
                if self.scores and self.evaluation_processes is not None:
                    self.evaluation_processes.revive()
                if self.role == "all" and ticks % RETENTION_EVERY_TICKS == 0:
                    self.apply_retention()
            except Exception as exc:  # noqa: BLE001 - the clock keeps ticking; retention drops what is due next time
                log_failed_pass(logger, exc, "advancing the event-time clock")

    def _watch(self) -> None:
        """The monitor's loop: check the ticks that became due, and queue repeat notifications (a ``monitor``
        process first holds the lock, and runs retention too)."""
        ticks = 0
        while not self._stopping.wait(TICK_SECONDS):
            ticks += 1
            try:
                if self.leadership is not None and not self._lead():
                    continue
                if self.check():
                    self.dispatcher.wake()
                if self.leadership is not None and ticks % RETENTION_EVERY_TICKS == 0:
                    self.apply_retention()
            except Exception:  # noqa: BLE001 - the monitor keeps watching
                logger.exception("checking alerts failed")

    def _lead(self) -> bool:
        """Whether this ``monitor`` process runs the monitor now; taking the lock starts what the holder runs."""
        assert self.leadership is not None
        was = self.leadership.held
        holds = self.leadership.hold()
        if holds and not was:
            logger.info("this process now runs the monitor (role monitor, pid %d)", os.getpid())
            self.dispatcher.start()
        elif was and not holds:
            self.dispatcher.stop()
        return holds

    def check(self, project_id: int | None = None, *, final: bool = False) -> int:
        """Run the monitor's due ticks for each project (``final``: through the last event, as flush does)."""
        ran = 0
        for pid, clock in self.clocks().items():
            if project_id is not None and pid != project_id:
                continue
            while True:
                # The committed completion watermark, not the live one: a session past the live one may not be
                # complete and queued yet, and a tick checked before its scores are written never sees them.
                n = self.monitor.run(pid, clock.completed_ns, final_event_ns=clock.max_event_ns if final else None)
                ran += n
                if not final or n == 0:
                    break
        return ran

    def apply_retention(self, project_id: int | None = None) -> int:
        """Drop the span payloads that retention says are due, on each project's watermark."""
        dropped = 0
        idle_ns = int(self.settings.idle_timeout * 1e9)
        for pid, clock in self.clocks().items():
            if project_id is not None and pid != project_id:
                continue
            while True:
                with self.store.engine.begin() as conn:
                    n = retention.apply(conn, pid, clock.watermark_ns, idle_ns, self.retention)
                dropped += n
                if n < retention.BATCH:
                    break
        return dropped

    def flush(self, project_id: int | None = None, *, timeout_s: float = 600.0) -> dict[str, int]:
        """Complete every open session (after everything queued before is written), then wait
        until every queued evaluation is written."""
        if not self.ingests:
            raise Unavailable(f"flush runs on a process that ingests (this one runs role {self.role})")
        result: dict[str, int] = self.writer.call(lambda: self.sessions.flush(project_id)).result()
        if self.role != "all":
            # The workers score what completed; the monitor checks each tick once it is scored.
            result["evaluations_pending"] = evaluations.pending(self.store.engine, project_id)
            return result
        deadline = time.monotonic() + timeout_s
        while (left := evaluations.pending(self.store.engine, project_id)) and self.evaluating:
            if time.monotonic() > deadline:
                raise Unavailable(f"{left} evaluations still queued after {timeout_s:.0f}s (is a judge down?); "
                                  "sessions are complete, flush again to wait for the rest")
            time.sleep(0.05)
        result["evaluations_pending"] = evaluations.pending(self.store.engine, project_id)
        result["payloads_dropped"] = self.apply_retention(project_id)
        result["checks_run"] = self.check(project_id, final=True)
        return result

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._monitor_thread is not None:
            self._monitor_thread.join(timeout=30)
        self.dispatcher.stop()
        if self.receiver.pool is not None:
            self.receiver.pool.close()
            self.receiver.pool = None
        self.writer.stop()
        self.worker.stop()
        if self.evaluation_processes is not None:
            self.evaluation_processes.stop()
        if self.memory is not None:
            self.memory.stop()
        if self.leadership is not None:
            self.leadership.release()

    @property
    def evaluating(self) -> bool:
        """Something drains the evaluation queue: the in-process worker or an evaluation process."""
        return self.worker.alive or (self.evaluation_processes is not None and self.evaluation_processes.alive)

    @property
    def evaluation_counts(self) -> tuple[EvaluationWorker | EvaluationProcesses, Scorer | EvaluationProcesses]:
        """Where jobs done/failed/postponed and scores by outcome are counted, for ``/metrics``."""
        if self.evaluation_processes is not None:
            return self.evaluation_processes, self.evaluation_processes
        return self.worker, self.scorer

    @property
    def ready(self) -> bool:
        """What this process runs is running (a monitor candidate waiting for the lock is ready)."""
        if self.ingests and not self.writer.alive:
            return False
        if self.role == "all":  # ingest is what a load balancer sends to; the rest restarts itself
            return True
        if self.scores and not self.evaluating:
            return False
        return not self.monitors or (self._monitor_thread is not None and self._monitor_thread.is_alive())
