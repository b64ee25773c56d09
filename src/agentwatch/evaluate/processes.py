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
import pickle
import signal
import time
from typing import Any

from agentwatch.settings import Settings

logger = logging.getLogger(__name__)

#: Seconds between two reports of a process's counters.
REPORT_S = 1.0


class EvaluationProcesses:
    """``n`` evaluation processes on the store of ``settings``, with the counters they report.

    They are told to stop with SIGTERM (so a service manager that signals every process of the server
    stops them the same way) and report over one pipe each: nothing is shared that a process killed at
    the wrong moment could leave locked.
    """

    def __init__(self, n: int, settings: Settings) -> None:
        if n < 1:
            raise ValueError("evaluation processes: expected at least 1")
        self.n = n
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[Any] = []
        #: The reading ends of the processes' pipes, the dead ones' too until they are read out.
        self._readers: list[Any] = []
        self._latest: dict[int, dict[str, Any]] = {}
        self._log_level = logging.getLogger().getEffectiveLevel()
        self._stopping = False

    def start(self) -> None:
        if self._processes:
            return
        self._processes = [self._spawn(index) for index in range(self.n)]
        logger.info("evaluation runs in %d process(es): %s", self.n,
                    ", ".join(str(p.pid) for p in self._processes))

    def _spawn(self, index: int) -> Any:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_main, args=(self.settings, index, writer, self._log_level),
                                        name=f"agentwatch-evaluate-{index}", daemon=True)
        process.start()
        writer.close()
        self._readers.append(reader)
        return process

    def revive(self) -> int:
        """Start a new process for each that died (killed, out of memory); answers how many. The server calls
        this every second. The jobs a dead one held are taken again when their lease runs out."""
        if self._stopping:
            return 0
        self._collect()  # the reports are read here too, so a pipe never fills up between two scrapes
        revived = 0
        for index, process in enumerate(self._processes):
            if process.is_alive():
                continue
            logger.error("evaluation process %s exited with %s; starting another", process.pid, process.exitcode)
            process.join(timeout=1)
            self._processes[index] = self._spawn(index)  # reports are kept by process id: the dead one's stay
            revived += 1
        return revived

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM each process (it finishes and writes the sessions in hand), then wait; kill what is left."""
        self._stopping = True
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + timeout_s
        while self.alive and time.monotonic() < deadline:
            self._collect()  # a process blocked on a full pipe would never finish its last report
            time.sleep(0.05)
        for process in self._processes:
            if process.is_alive():
                logger.warning("evaluation process %s did not stop within %.0fs; killing it", process.pid,
                               timeout_s)
                process.kill()
                process.join(timeout=5)
        self._collect()
        for reader in self._readers:
            reader.close()
        self._readers = []
        self._processes = []

    @property
    def alive(self) -> bool:
        return any(p.is_alive() for p in self._processes)

    def _collect(self) -> None:
        for reader in list(self._readers):
            try:
                while reader.poll():
                    pid, counters = reader.recv()
                    self._latest[int(pid)] = counters
            except (EOFError, OSError, ValueError, TypeError, pickle.UnpicklingError):
                # The process is gone (or died halfway through a report): what it reported before stays.
                reader.close()
                self._readers.remove(reader)

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


def _main(settings: Settings, index: int, reports: Any, log_level: int) -> None:
    """One evaluation process: score queued sessions until SIGTERM or until the server is gone."""
    stopping: list[int] = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the server stops us
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    _name_process(f"aw-evaluate-{index}")
    logging.basicConfig(level=log_level,
                        format=f"%(asctime)s %(levelname)s %(name)s[evaluate-{index}]: %(message)s")
    from agentwatch.evaluate.catalogue import load_catalogue
    from agentwatch.evaluate.engine import EvaluationWorker, Scorer
    from agentwatch.normalize import NormalizeOptions
    from agentwatch.store.store import Store

    parent = os.getppid()
    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    catalogue = load_catalogue(settings.sections, settings.config_path)
    scorer = Scorer(store, catalogue, NormalizeOptions.from_settings(settings))
    worker = EvaluationWorker(scorer, lease_s=settings.evaluation_lease)
    worker.start()

    def report() -> None:
        try:
            reports.send((os.getpid(), {"done": worker.done, "failed": worker.failed, "postponed": worker.postponed,
                                        "errors": scorer.errors,
                                        "outcomes": [(n, o, c) for (n, o), c in scorer.outcomes.items()]}))
        except OSError:  # the server is gone
            stopping.append(0)

    next_report = time.monotonic()
    try:
        while not stopping:
            time.sleep(0.1)
            if os.getppid() != parent:  # the server died without stopping us
                break
            if time.monotonic() >= next_report:
                report()
                next_report += REPORT_S
    finally:
        worker.stop()
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
