"""Group commit: one writer thread, many requests per transaction.

Request handlers decode and normalize, then :meth:`Writer.submit` a
:class:`WriteBatch` and await the future it returns. The writer thread takes
every batch waiting in its queue, hands them to its :class:`Transaction` in one
database transaction and resolves each future only after the commit: a 200 is
never answered for data that is not durable. A batch the store refuses is
retried alone, so the others still commit.

What a transaction writes is not the writer's business: the server's is
:class:`agentwatch.sessions.lifecycle.SessionLifecycle` (spans, the sessions they
touch, the event-time clock and completion).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from agentwatch._types import RawLogRecord, Resource
from agentwatch.store.engine import log_failed_pass, run_retrying

logger = logging.getLogger(__name__)


class WriteRejected(Exception):
    """The store refused the data of one batch (not retryable)."""


class WriterUnavailable(Exception):
    """The store could not be written just now (retryable)."""


@dataclass
class WriteBatch:
    """What one request hands the writer."""

    project_id: int
    #: Span rows (``spans`` columns but ``project_id``/``session_id``/``session_explicit``)
    #: plus the key ``_session`` holding the span's own session id or None.
    spans: list[dict[str, Any]] = field(default_factory=list)
    logs: list[RawLogRecord] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    future: concurrent.futures.Future[int] = field(default_factory=concurrent.futures.Future)


@dataclass
class _Control:
    action: Callable[[], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class Transaction(Protocol):
    """What the writer runs for each group of batches it commits together."""

    def write(self, conn: Connection, batches: list[WriteBatch]) -> None:
        """Write the batches in ``conn``'s transaction (retried whole when the database asks)."""

    def committed(self, batches: list[WriteBatch]) -> None:
        """After the commit of ``batches``."""

    def rolled_back(self) -> None:
        """After a rollback: forget what the transaction taught any cache."""

    def after_commit(self) -> None:
        """On the writer thread after each group commit (periodic work, in transactions of its own)."""


class Writer:
    """The single writer thread: batches in, one transaction per group, futures out after the commit."""

    def __init__(self, engine: Any, transaction: Transaction, *, max_batch_spans: int = 20000) -> None:
        self.engine = engine
        self.transaction = transaction
        self.max_batch_spans = max_batch_spans
        self._queue: queue.SimpleQueue[WriteBatch | _Control | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="agentwatch-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def alive(self) -> bool:
        """The writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def submit(self, batch: WriteBatch) -> concurrent.futures.Future[int]:
        """Queue a batch; the future resolves to its span count once committed."""
        self._queue.put(batch)
        return batch.future

    def call(self, action: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``action`` on the writer thread after everything queued before it."""
        control = _Control(action)
        self._queue.put(control)
        return control.future

    # -- the loop --------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Control):
                self._run_control(item)
                continue
            batches = [item]
            count = len(item.spans) + len(item.logs)
            control: _Control | None = None
            stop = False
            while count < self.max_batch_spans:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if isinstance(nxt, _Control):
                    control = nxt
                    break
                batches.append(nxt)
                count += len(nxt.spans) + len(nxt.logs)
            self._commit_batches(batches)
            try:
                self.transaction.after_commit()
            except Exception as exc:  # noqa: BLE001 - the writer outlives a failed pass
                log_failed_pass(logger, exc, "the pass after a commit")
            if control is not None:
                self._run_control(control)
            if stop:
                return

    def _run_control(self, control: _Control) -> None:
        try:
            _resolve(control.future, control.action())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            _reject(control.future, exc)

    def _commit_batches(self, batches: list[WriteBatch]) -> None:
        try:
            run_retrying(lambda: self._write(batches), f"a write of {len(batches)} batches", log=logger,
                         before_retry=self.transaction.rolled_back)
        except Exception as exc:  # noqa: BLE001
            self.transaction.rolled_back()
            if len(batches) == 1:
                self._fail(batches[0], exc)
                return
            # Isolate the batch that failed; the others still commit.
            for batch in batches:
                try:
                    self._write([batch])
                except Exception as single_exc:  # noqa: BLE001
                    self.transaction.rolled_back()
                    self._fail(batch, single_exc)
                    continue
                _resolve(batch.future, len(batch.spans))
            return
        for batch in batches:
            _resolve(batch.future, len(batch.spans))

    def _fail(self, batch: WriteBatch, exc: Exception) -> None:
        if isinstance(exc, OperationalError):
            logger.warning("store unavailable: %s", exc.orig if hasattr(exc, "orig") else exc)
            _reject(batch.future, WriterUnavailable(str(getattr(exc, "orig", exc))))
        elif isinstance(exc, DBAPIError):
            logger.warning("store refused a batch: %s", exc.orig)
            _reject(batch.future, WriteRejected(f"the store refused the data: {exc.orig}"))
        else:
            logger.exception("writing a batch failed")
            _reject(batch.future, WriteRejected(f"the data could not be stored: {exc}"))

    def _write(self, batches: list[WriteBatch]) -> None:
        with self.engine.begin() as conn:
            self.transaction.write(conn, batches)
        self.commits += 1
        self.transaction.committed(batches)


def _resolve(future: concurrent.futures.Future[Any], result: Any) -> None:
    """Answer a waiting caller; one that gave up (cancelled) needs no answer."""
    try:
        future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def _reject(future: concurrent.futures.Future[Any], exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass
