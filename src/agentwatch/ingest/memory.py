"""An optional memory limit for ingest: past it, requests are refused with a retryable answer.

The in-flight budget bounds the bytes of requests being decoded and
written; this bounds the process as a whole (``ingest.memory_limit_mb``).
A thread samples the resident set size every 50 ms; while it is above the
limit, ingest answers 429 with ``Retry-After`` and the guard asks the
allocator to hand free memory back, so the process can get under the limit
again. Linux only (``/proc/self/statm``); elsewhere the limit is not enforced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import threading

from agentwatch.ingest.receiver import Budget, Overloaded

logger = logging.getLogger(__name__)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _trim() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class MemoryGuard:
    def __init__(self, limit_bytes: int, interval_s: float = 0.05) -> None:
        self.limit_bytes = limit_bytes
        self.interval_s = interval_s
        self.over = False
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentwatch-memory", daemon=True)

    def start(self) -> None:
        if rss_bytes() == 0:
            logger.warning("ingest.memory_limit_mb is not enforced here: no /proc/self/statm")
            return
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(self.interval_s):
            rss = rss_bytes()
            self.peak = max(self.peak, rss)
            was = self.over
            self.over = rss > self.limit_bytes
            if self.over and not was:
                logger.warning("resident memory %.0f MB is over ingest.memory_limit_mb; refusing ingest for now",
                               rss / 1e6)
            ticks += 1
            if self.over and ticks % 10 == 0:
                _trim()


class GuardedBudget(Budget):
    """The in-flight budget, also refusing while the process is over its memory limit."""

    def __init__(self, max_bytes: int, guard: MemoryGuard) -> None:
        super().__init__(max_bytes)
        self.guard = guard

    def acquire(self, nbytes: int) -> None:
        if self.guard.over:
            with self._lock:
                self.rejected += 1
            raise Overloaded(f"the server is over its memory limit of {self.guard.limit_bytes // 2**20} MiB; "
                             "retry later")
        super().acquire(nbytes)
