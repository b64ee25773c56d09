"""Evaluation in processes of its own, so that scoring runs on other cores than ingest.

A server process holds one interpreter lock: evaluators that run in its
threads take the time its HTTP handlers and its writer need, and on two cores
the second one stays idle. :class:`EvaluationProcesses` starts ``n`` processes
that each run an :class:`~agentwatch.evaluate.engine.EvaluationWorker` on the
same store. They share nothing but the store: jobs are claimed from the durable
queue with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one ``UPDATE``
on SQLite), so a process that dies loses no job: its lease runs out and
another takes the job; a score already written is not written again.

Each process reports its counters (jobs done, failed, postponed, evaluator
errors, scores by outcome) about once a second; the server's ``/metrics``
adds them up.

    procs = EvaluationProcesses(1, settings)
    procs.start()       # spawns; the processes ignore SIGINT, the server stops them
    ...
    procs.stop()        # finish the jobs in hand, write them, exit
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import queue
import signal
import time
from typing import Any

from agentwatch.settings import Settings

logger = logging.getLogger(__name__)

#: Seconds between two reports of a process's counters.
REPORT_S = 1.0


def normalize_options(settings: Settings) -> Any:
    """The normalization options a server runs with (ingest and evaluation read spans alike)."""
    from agentwatch.normalize import NormalizeOptions
    from agentwatch.normalize.pricing import PriceTable
    from agentwatch.normalize.redact import Redactor

    return NormalizeOptions(
        intent_attributes=settings.intent_attributes,
        prices=PriceTable.builtin().with_overrides(settings.pricing),
        redaction=Redactor.from_section(settings.sections.get("redaction"), settings.config_path or "agentwatch.yaml"),
    )


class EvaluationProcesses:
    """``n`` evaluation processes on the store of ``settings``, with the counters they report."""

    def __init__(self, n: int, settings: Settings) -> None:
        if n < 1:
            raise ValueError("evaluation processes: expected at least 1")
        self.n = n
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._reports: Any = self._context.Queue()
        self._processes: list[Any] = []
        self._latest: dict[int, dict[str, Any]] = {}
        self._log_level = logging.getLogger().getEffectiveLevel()

    def start(self) -> None:
        if self._processes:
            return
        self._processes = [self._spawn(index) for index in range(self.n)]
        logger.info("evaluation runs in %d process(es): %s", self.n,
                    ", ".join(str(p.pid) for p in self._processes))

    def _spawn(self, index: int) -> Any:
        process = self._context.Process(target=_main, args=(self.settings, index, self._stop, self._reports,
                                                            self._log_level),
                                        name=f"agentwatch-evaluate-{index}", daemon=True)
        process.start()
        return process

    def revive(self) -> int:
        """Start a new process for each that died (killed, out of memory); answers how many. The server calls
        this every second. The jobs a dead one held are taken again when their lease runs out."""
        if self._stop.is_set():
            return 0
        self._collect()  # the reports are read here too, so the pipe never fills up between two scrapes
        revived = 0
        for index, process in enumerate(self._processes):
            if process.is_alive():
                continue
            logger.error("evaluation process %s exited with %s; starting another", process.pid, process.exitcode)
            self._processes[index] = self._spawn(index)  # reports are kept by process id: the dead one's stay
            revived += 1
        return revived

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for process in self._processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                logger.warning("evaluation process %s did not stop within %.0fs; terminating it", process.pid,
                               timeout_s)
                process.terminate()
                process.join(timeout=5)
        self._collect()
        self._processes = []

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self._processes if p.pid is not None]

    @property
    def alive(self) -> bool:
        return any(p.is_alive() for p in self._processes)

    def _collect(self) -> None:
        while True:
            try:
                pid, counters = self._reports.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            self._latest[pid] = counters

    def _sum(self, key: str) -> int:
        self._collect()
        return sum(int(c.get(key, 0)) for c in self._latest.values())

    @property
    def done(self) -> int:
        return self._sum("done")

    @property
    def failed(self) -> int:
        return self._sum("failed")

    @property
    def postponed(self) -> int:
        return self._sum("postponed")

    @property
    def errors(self) -> int:
        return self._sum("errors")

    @property
    def outcomes(self) -> collections.Counter[tuple[str, str]]:
        self._collect()
        total: collections.Counter[tuple[str, str]] = collections.Counter()
        for counters in self._latest.values():
            for name, outcome, count in counters.get("outcomes", ()):
                total[(name, outcome)] += int(count)
        return total


def _main(settings: Settings, index: int, stop: Any, reports: Any, log_level: int) -> None:
    """One evaluation process: score queued sessions until told to stop or the server is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the server stops us
    _name_process(f"aw-evaluate-{index}")
    logging.basicConfig(level=log_level,
                        format=f"%(asctime)s %(levelname)s %(name)s[evaluate-{index}]: %(message)s")
    from agentwatch.evaluate.catalogue import load_catalogue
    from agentwatch.evaluate.engine import EvaluationWorker, Scorer
    from agentwatch.store.store import Store

    parent = os.getppid()
    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    scorer = Scorer(store, load_catalogue(settings.sections, settings.config_path), normalize_options(settings))
    worker = EvaluationWorker(scorer)
    worker.start()

    def report() -> None:
        reports.put((os.getpid(), {"done": worker.done, "failed": worker.failed, "postponed": worker.postponed,
                             "errors": scorer.errors,
                             "outcomes": [(n, o, c) for (n, o), c in scorer.outcomes.items()]}))

    # A report left in the pipe must not keep this process from exiting when the server is gone.
    reports.cancel_join_thread()
    orphaned = False
    try:
        while not stop.wait(REPORT_S):
            if os.getppid() != parent:  # the server died without stopping us: nothing to report to
                orphaned = True
                break
            report()
    finally:
        worker.stop()
        if not orphaned:
            report()
        store.close()


def _name_process(name: str) -> None:
    """Name the process as ``top`` and ``/proc/<pid>/comm`` show it (Linux; elsewhere nothing happens)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
