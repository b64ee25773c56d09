"""Notifiers and the dispatcher thread that sends the notification outbox.

Checks never send anything: they write outbox rows (``notifications``) in
their transaction. :class:`Dispatcher` takes the due rows, builds each message
from the alert as it is at send time, and POSTs it:

- ``webhook``: ``{"version": 1, "status": "firing"|"resolved", "event":
  "trigger"|"resolve"|"repeat", "alert": <Alert object>}``;
- ``slack``: an incoming-webhook message, ``text`` plus mrkdwn ``blocks``;
  a resolve is a follow-up message starting with RESOLVED;
- ``pagerduty``: an Events API v2 event, ``trigger`` (also for repeats) or
  ``resolve`` with the same ``dedup_key``;
- ``log``: one JSON line on the ``agentwatch.alert`` logger.

A 2xx answer marks the row sent. A 429, a 5xx or a connection error is
retried with exponential backoff (``backoff_s`` * 2^(attempt-1), at most
``max_backoff_s``; a ``Retry-After`` header wins), up to ``max_attempts``;
any other answer gives up at once (state ``failed``, ``last_error``). One
message per alert event: no grouping. Webhook URLs, routing keys and header
values are never logged and are blanked out of ``last_error``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Mapping

import httpx
from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import Engine

from agentwatch import __version__
from agentwatch.alert import store as alert_store
from agentwatch.alert.notifiers import NOTIFIER_TYPES
from agentwatch.alert.routes import Notifier, Routes
from agentwatch.alert.types import alert_dict
from agentwatch.retry_after import retry_after_s
from agentwatch.store.models import utcnow

logger = logging.getLogger(__name__)
OUTCOMES = ("sent", "retried", "failed")
#: The longest wait a Retry-After header gets.
MAX_RETRY_AFTER_S = 3600.0


# -- sending ---------------------------------------------------------------------


def _redact(text: str, notifier: Notifier | None) -> str:
    for secret in notifier.secrets if notifier is not None else ():
        text = text.replace(secret, "<redacted>")
    return text[:500]


class Dispatcher:
    """Sends the outbox from a daemon thread; :meth:`run_once` does one pass in the caller's thread.

    ``repeat_interval_s`` ({"page": s, "ticket": s}), when given, also queues
    repeats (:func:`agentwatch.alert.store.due_repeats`) at each pass. The
    dispatcher is a Prometheus collector: ``agentwatch_notifications_total``
    by ``notifier`` (type) and ``outcome`` (sent, retried, failed).
    """

    def __init__(self, engine: Engine, routes: Routes, *, public_url: str | None = None,
                 repeat_interval_s: Mapping[str, float] | None = None, backoff_s: float = 30.0,
                 max_backoff_s: float = 3600.0, max_attempts: int = 8, timeout_s: float = 10.0,
                 poll_s: float = 1.0, batch: int = 20, lease_s: float = 300.0) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.engine = engine
        self.routes = routes
        self.public_url = public_url
        self.repeat_interval_s = dict(repeat_interval_s) if repeat_interval_s is not None else None
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.batch = batch
        self.lease_s = lease_s
        self.counts: dict[tuple[str, str], int] = {}
        self._counts_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()

    # -- lifecycle

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="agentwatch-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        with self._run_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (after a check queued rows)."""
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                handled = self.run_once()
            except Exception:  # noqa: BLE001 - the dispatcher outlives a database hiccup
                logger.exception("sending notifications failed; trying again in %.0fs", self.poll_s)
                handled = 0
            if handled:
                continue
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return alert_store.pending_notifications(conn)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until no outbox row is pending (sent or given up); answers whether it got there in time.

        Without the thread running, it sends from the calling thread.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.pending() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            if self.alive:
                self.wake()
            else:
                self.run_once()
            time.sleep(0.02)

    # -- one pass

    def run_once(self, now: datetime | None = None) -> int:
        """Queue due repeats, then send every due outbox row; answers how many rows were tried."""
        with self._run_lock:
            now = now or utcnow()
            if self.repeat_interval_s is not None:
                with self.engine.begin() as conn:
                    alert_store.due_repeats(conn, now, self.repeat_interval_s, self.routes)
            handled = 0
            in_thread = threading.current_thread() is self._thread
            while not (in_thread and self._stopping.is_set()):
                rows = alert_store.claim_notifications(self.engine, now, limit=self.batch, lease_s=self.lease_s)
                if not rows:
                    break
                # A notifier that is down is not tried again in this pass: its other rows wait for its retry.
                down: dict[str, datetime] = {}
                for row in rows:
                    handled += 1
                    if row["notifier"] in down:
                        alert_store.record_attempt(
                            self.engine, row["id"], state="pending", attempts=row["attempts"],
                            next_attempt_at=down[row["notifier"]], last_error=row["last_error"], sent_at=None)
                        continue
                    retry_at = self._send(row, now)
                    if retry_at is not None:
                        down[row["notifier"]] = retry_at
            return handled

    def _count(self, notifier_type: str, outcome: str) -> None:
        with self._counts_lock:
            self.counts[(notifier_type, outcome)] = self.counts.get((notifier_type, outcome), 0) + 1

    def _send(self, row: Mapping[str, Any], now: datetime) -> datetime | None:
        """Send one outbox row and record the outcome; answers the retry time when it is to be retried."""
        notifier = self.routes.notifier(row["notifier"])
        alert = alert_store.alert_row(self.engine, int(row["alert_id"]))
        attempts = int(row["attempts"]) + 1
        if notifier is None or alert is None:
            reason = (f"notifier {row['notifier']!r} is no longer configured" if notifier is None
                      else f"alert {row['alert_id']} no longer exists")
            self._give_up(row, notifier.type if notifier else "unknown", attempts, reason, now)
            return None
        payload = alert_dict(alert, self.public_url)
        request = NOTIFIER_TYPES[notifier.type].request(notifier, row["event"], payload)
        if request is None:  # delivered in process
            self._sent(row, notifier, attempts, now)
            return None
        url, body, headers = request
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False,
                                        headers={"user-agent": f"agentwatch/{__version__}"})
        retry_after: float | None = None
        try:
            response = self._client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            error = _redact(f"{exc.__class__.__name__}: {exc}", notifier)
        else:
            status = response.status_code
            if 200 <= status < 300:
                self._sent(row, notifier, attempts, now)
                return None
            error = _redact(f"HTTP {status}: {response.text[:300]}", notifier)
            if status != 429 and status < 500:
                self._give_up(row, notifier.type, attempts, error, now)
                return None
            retry_after = retry_after_s(response.headers, now=now.timestamp(), at_most=MAX_RETRY_AFTER_S)
        if attempts >= self.max_attempts:
            self._give_up(row, notifier.type, attempts, f"{error} (gave up after {attempts} attempts)", now)
            return None
        delay = retry_after if retry_after is not None else min(
            self.backoff_s * 2 ** (attempts - 1), self.max_backoff_s)
        retry_at = now + timedelta(seconds=delay)
        alert_store.record_attempt(self.engine, row["id"], state="pending", attempts=attempts,
                                   next_attempt_at=retry_at, last_error=error, sent_at=None)
        self._count(notifier.type, "retried")
        logger.warning("notification %s (%s to %s %s, alert %s) failed, attempt %d of %d: %s; retrying in %.1fs",
                       row["id"], row["event"], notifier.type, notifier.name, row["alert_id"], attempts,
                       self.max_attempts, error, delay)
        return retry_at

    def _sent(self, row: Mapping[str, Any], notifier: Notifier, attempts: int, now: datetime) -> None:
        alert_store.record_attempt(self.engine, row["id"], state="sent", attempts=attempts, next_attempt_at=now,
                                   last_error=None, sent_at=now)
        self._count(notifier.type, "sent")

    def _give_up(self, row: Mapping[str, Any], notifier_type: str, attempts: int, error: str,
                 now: datetime) -> None:
        alert_store.record_attempt(self.engine, row["id"], state="failed", attempts=attempts, next_attempt_at=now,
                                   last_error=error, sent_at=None)
        self._count(notifier_type, "failed")
        logger.error("notification %s (%s to %s, alert %s) failed for good: %s", row["id"], row["event"],
                     row["notifier"], row["alert_id"], error)

    # -- metrics

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("agentwatch_notifications", "Alert notifications by notifier type and outcome "
                                     "(sent, retried, failed: given up).", labels=["notifier", "outcome"])
        with self._counts_lock:
            counts = dict(self.counts)
        for (notifier_type, outcome), value in sorted(counts.items()):
            family.add_metric([notifier_type, outcome], value)
        yield family
