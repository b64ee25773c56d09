"""Scoring sessions: which evaluators apply, running them, writing scores with lineage.

:class:`Scorer` evaluates one session with every applicable evaluator (its
filter matches and the session is in its head sample) and turns the results
into score rows: score, pass/fail against the threshold, reason, evaluator
name and version, judge model, prompt hash, calibration dataset version,
inclusion probability, latency and cost, the session's end as event time.
Evaluations sent over OTLP (``gen_ai.evaluation.result``) become scores of
``external:<name>``. :class:`EvaluationWorker` drains the durable queue in a
background thread with a bounded number of sessions in flight.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from agentwatch.evaluate.base import EvalResult, Evaluator
from agentwatch.evaluate.build import build
from agentwatch.evaluate.catalogue import EXTERNAL_VERSION, Catalogue, EvaluatorSpec
from agentwatch.evaluate.session import SessionView
from agentwatch.normalize import NormalizeOptions
from agentwatch.sample import included
from agentwatch.store import evaluations as ev
from agentwatch.store import rollups
from agentwatch.store.engine import run_retrying
from agentwatch.store.store import Store

logger = logging.getLogger(__name__)


class Scorer:
    """Evaluates sessions with the catalogue's current versions."""

    def __init__(self, store: Store, catalogue: Catalogue, options: NormalizeOptions) -> None:
        self.store = store
        self.catalogue = catalogue
        self.options = options
        self._evaluators: dict[str, Evaluator] = {}
        self._lock = threading.Lock()
        self._projects: dict[int, str] = {}
        self.errors = 0
        #: Scores written, by (evaluator, outcome: passed | failed | error | unjudged), for /metrics.
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    def evaluator(self, spec: EvaluatorSpec) -> Evaluator:
        with self._lock:
            built = self._evaluators.get(spec.name)
            if built is None:
                built = self._evaluators[spec.name] = build(spec)
            return built

    def load(self, project_id: int, session_id: str) -> SessionView:
        summary = self.store.get_session(project_id, session_id)
        spans = self.store.spans_of_session(project_id, session_id)
        return SessionView.from_rows(summary, spans, self.options, self.store.project_name(project_id))

    def prepare(self, jobs: list[ev.Job]) -> list[tuple[ev.Job, SessionView | None, bool]]:
        """Per job ``(job, view, skip)``: ``view`` None when the session is gone; ``skip`` when nothing
        would score it (no applicable evaluator, no external evaluation), whose view has no spans.

        What decides applicability (the summary, the tools called) is read from columns; only the
        sessions something scores are loaded back whole, all of a project's in one read.
        """
        out: list[tuple[ev.Job, SessionView | None, bool]] = []
        by_project: dict[int, list[ev.Job]] = {}
        for job in jobs:
            by_project.setdefault(job.project_id, []).append(job)
        for project_id, group in by_project.items():
            project = self._project_name(project_id)
            ids = sorted({job.session_id for job in group})
            facts = ev.applicability(self.store.engine, project_id, ids)
            load: list[str] = []
            skip: set[str] = set()
            for session_id, (summary, tools, has_external) in facts.items():
                wanted = any(self._applies(spec, session_id, summary, tools, job.evaluators)
                             for job in group if job.session_id == session_id for spec in self.catalogue.scored)
                if wanted or (has_external and any(j.evaluators is None for j in group
                                                   if j.session_id == session_id)):
                    load.append(session_id)
                else:
                    skip.add(session_id)
            loaded = self.store.sessions_with_spans(project_id, load) if load else {}
            for job in group:
                if job.session_id in skip:
                    summary = dict(facts[job.session_id][0])
                    summary["project_id"] = project_id
                    out.append((job, SessionView(job.session_id, project, summary, [], []), True))
                    continue
                entry = loaded.get(job.session_id)
                if entry is None:
                    out.append((job, None, False))
                    continue
                view = SessionView.from_rows(dict(entry[0]), entry[1], self.options, project)
                view.summary["project_id"] = project_id
                out.append((job, view, False))
        return out

    def _project_name(self, project_id: int) -> str:
        name = self._projects.get(project_id)
        if name is None:
            name = self._projects[project_id] = self.store.project_name(project_id)
        return name

    def _applies(self, spec: EvaluatorSpec, session_id: str, summary: dict[str, Any], tools: set[str],
                 only: list[str] | None) -> bool:
        if only is not None and spec.name not in only:
            return False
        return (spec.filter.matches(summary, tools)
                and included(session_id, spec.effective_rate(self.catalogue.default_rate)))

    def applicable(self, view: SessionView, only: list[str] | None = None) -> list[EvaluatorSpec]:
        tools = {call.name for call in view.tool_calls}
        return [spec for spec in self.catalogue.scored if self._applies(spec, view.session_id, view.summary, tools,
                                                                          only)]

    async def score(self, view: SessionView, *, only: list[str] | None = None,
                    shadow: bool = False) -> list[dict[str, Any]]:
        """Score rows for the session: applicable evaluators, then external evaluations."""
        specs = self.applicable(view, only)
        results = await asyncio.gather(*(self._run(spec, view) for spec in specs))
        rows = [self._row(view, spec, result, latency_ms, shadow) for spec, (result, latency_ms) in
                zip(specs, results, strict=True)]
        if only is None:
            rows.extend(self._external_rows(view))
        return rows

    async def _run(self, spec: EvaluatorSpec, view: SessionView) -> tuple[EvalResult, float]:
        started = time.perf_counter()
        try:
            result = await self.evaluator(spec).evaluate(view)
        except Exception as exc:  # noqa: BLE001 - a failing evaluator is an evaluation error
            logger.exception("evaluator %s failed on session %s", spec.name, view.session_id)
            result = EvalResult.failure(f"{type(exc).__name__}: {exc}")
        if result.is_error:
            self.errors += 1
        return result, (time.perf_counter() - started) * 1000.0

    def _row(self, view: SessionView, spec: EvaluatorSpec, result: EvalResult, latency_ms: float,
             shadow: bool) -> dict[str, Any]:
        ok = not result.is_error
        return {
            "project_id": _project_id(view),
            "session_id": view.session_id,
            "span_id": result.span_id or "",
            "evaluator": spec.name,
            "evaluator_version": spec.version,
            "status": "ok" if ok else "error",
            "score": result.score if ok else None,
            "passed": spec.passed(result.score) if ok else None,
            "threshold": spec.threshold,
            "direction": spec.direction,
            "reason": result.reason or None,
            "error": result.error,
            "raw": result.raw,
            "judge_model": result.judge_model,
            "prompt_hash": result.prompt_hash,
            "dataset_version": spec.dataset_version,
            "inclusion_probability": spec.effective_rate(self.catalogue.default_rate),
            "latency_ms": round(latency_ms, 3),
            "cost_usd": result.cost_usd,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
            "event_time_ns": view.end_ns,
            "shadow": shadow,
            "_retryable": result.retryable,
        }

    def _external_rows(self, view: SessionView) -> list[dict[str, Any]]:
        rows = []
        for span in view.spans:
            for evaluation in span.evaluations:
                name = evaluation.get("name")
                if not name:
                    continue
                spec = self.catalogue.external_spec(str(name))
                value = evaluation.get("score")
                score = (float(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                         and math.isfinite(value) and 0.0 <= value <= 1.0 else None)
                valid = score is not None
                label = evaluation.get("label")
                rows.append({
                    "project_id": _project_id(view),
                    "session_id": view.session_id,
                    "span_id": span.span_id,
                    "evaluator": spec.name,
                    "evaluator_version": EXTERNAL_VERSION,
                    "status": "ok" if valid else "error",
                    "score": score,
                    "passed": spec.passed(score),
                    "threshold": spec.threshold,
                    "direction": spec.direction,
                    "reason": evaluation.get("explanation") or (f"label {label}" if label else None),
                    "error": None if valid else f"score {value!r} is not a number in [0, 1]",
                    "raw": None if valid else repr(value),
                    "judge_model": None,
                    "prompt_hash": None,
                    "dataset_version": None,
                    "inclusion_probability": 1.0,
                    "latency_ms": None,
                    "cost_usd": None,
                    "tokens_in": None,
                    "tokens_out": None,
                    "event_time_ns": view.end_ns,
                    "shadow": False,
                })
        return rows

    async def evaluate_session(self, project_id: int, session_id: str, *, only: list[str] | None = None,
                               reason: str = "complete") -> list[dict[str, Any]]:
        """Load, score and store one session; answers the score rows."""
        view = await asyncio.to_thread(self.load, project_id, session_id)
        view.summary["project_id"] = project_id
        rows = await self.score(view, only=only, shadow=reason == "shadow")
        await asyncio.to_thread(self.store_rows, project_id, view, rows, reason)
        return rows

    def store_rows(self, project_id: int, view: SessionView, rows: list[dict[str, Any]], reason: str,
                   job_id: int | None = None) -> None:
        self.store_batch([Scored(project_id, view, rows, reason, job_id)])

    def store_batch(self, items: list[Scored], finished: list[int] | None = None) -> None:
        """Write many sessions' scores, rollups, marks and finished jobs in one transaction.

        ``finished`` are further jobs to remove (their session is gone).
        """
        for item in items:
            for row in item.rows:
                row.pop("_retryable", None)
        everything = [row for item in items for row in item.rows]
        marks = []
        for item in items:
            flagged = any(r["passed"] is False or r["status"] == "error" for r in item.rows)
            if item.reason == "complete" or flagged:
                marks.append((item.project_id, item.view.session_id, flagged,
                              included(item.view.session_id, self.catalogue.default_rate)))
        with self.store.engine.begin() as conn:
            # Session rows first, as the writer's transactions take them before rollups: the same lock
            # order in both, so they wait for each other on PostgreSQL instead of deadlocking.
            ev.mark_many(conn, marks)
            ev.ensure_external(conn, {r["evaluator"] for r in everything
                                      if r["evaluator_version"] == EXTERNAL_VERSION})
            new = ev.write_scores(conn, everything)
            new_by_session: dict[tuple[int, str], list[dict[str, Any]]] = {}
            for row in new:
                new_by_session.setdefault((int(row["project_id"]), str(row["session_id"])), []).append(row)
            by_project: dict[int, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
            for item in items:
                fresh = new_by_session.pop((item.project_id, item.view.session_id), [])
                if fresh:
                    by_project.setdefault(item.project_id, []).append((item.view.summary, fresh))
            for project_id, sessions in by_project.items():
                rollups.apply_score_batch(conn, project_id, sessions)
            ev.finish_many(conn, [i.job_id for i in items if i.job_id is not None] + list(finished or []))
        for r in everything:
            outcome = ("error" if r["status"] != "ok" else "unjudged" if r["passed"] is None
                       else "passed" if r["passed"] else "failed")
            self.outcomes[(str(r["evaluator"]), outcome)] += 1


@dataclass
class Scored:
    """One session's score rows, ready to be written."""

    project_id: int
    view: SessionView
    rows: list[dict[str, Any]]
    reason: str
    job_id: int | None = None


def _project_id(view: SessionView) -> int:
    return int(view.summary["project_id"])


#: Times a session waits for a retryable failure (a judge down) to pass before its errors are recorded.
MAX_ATTEMPTS = 12
RETRY_BASE_S = 5.0
RETRY_CAP_S = 300.0


class EvaluationWorker:
    """Drains the evaluation queue in a background thread with its own event loop."""

    def __init__(self, scorer: Scorer, *, concurrency: int = 200, poll_s: float = 0.2,
                 lease_s: float = 300.0, batch: int = 100) -> None:
        self.scorer = scorer
        self.concurrency = concurrency
        #: Jobs claimed, loaded and (once scored) written together.
        self.batch = batch
        self.poll_s = poll_s
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = 0
        self.failed = 0
        self.postponed = 0
        self.retry_base_s = RETRY_BASE_S

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="agentwatch-evaluate",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def _main(self) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        engine = self.scorer.store.engine
        self._ready: list[Scored] = []
        self._gone: list[int] = []
        while not self._stop.is_set():
            room = self.concurrency - len(in_flight) - len(self._ready)
            jobs: list[ev.Job] = []
            if room > 0:
                try:
                    jobs = await asyncio.to_thread(ev.claim, engine, min(room, self.batch), self.lease_s)
                except Exception:  # noqa: BLE001 - the worker outlives a store hiccup
                    logger.exception("claiming evaluation jobs failed")
            if jobs:
                await self._start(jobs, in_flight)
            if self._ready or self._gone:
                await asyncio.to_thread(self._write)
            if not jobs:
                if in_flight:
                    await asyncio.wait(in_flight, timeout=self.poll_s)
                else:
                    await asyncio.sleep(self.poll_s)
            elif len(in_flight) >= self.concurrency:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
        if self._ready or self._gone:
            await asyncio.to_thread(self._write)

    async def _start(self, jobs: list[ev.Job], in_flight: set[asyncio.Task[None]]) -> None:
        """Load the claimed sessions in one go and start scoring each."""
        try:
            prepared = await asyncio.to_thread(self.scorer.prepare, jobs)
        except Exception:  # noqa: BLE001 - the jobs stay leased and are taken again after their lease
            self.failed += len(jobs)
            logger.exception("loading %d sessions for evaluation failed; they will be retried", len(jobs))
            return
        for job, view, skip in prepared:
            if view is None:
                # Erased, or merged into another session when its trace named one: nothing to score.
                logger.info("session %s is gone; its evaluation job is dropped", job.session_id)
                self._gone.append(job.id)
            elif skip:
                self._ready.append(Scored(job.project_id, view, [], job.reason, job.id))
            else:
                task = asyncio.create_task(self._run(job, view))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

    async def _run(self, job: ev.Job, view: SessionView) -> None:
        scorer = self.scorer
        try:
            rows = await scorer.score(view, only=job.evaluators, shadow=job.reason == "shadow")
            if any(row.pop("_retryable", False) for row in rows) and job.attempts < MAX_ATTEMPTS:
                # A judge that is down: keep the session queued and try again later (the backlog
                # drains when the judge returns); after MAX_ATTEMPTS the errors are recorded.
                delay = min(RETRY_CAP_S, self.retry_base_s * 2 ** (job.attempts - 1))
                await asyncio.to_thread(ev.postpone, scorer.store.engine, job.id, delay)
                self.postponed += 1
                return
            self._ready.append(Scored(job.project_id, view, rows, job.reason, job.id))
        except Exception:  # noqa: BLE001 - the job stays leased and is retried after its lease
            self.failed += 1
            logger.exception("evaluating session %s failed; it will be retried", job.session_id)

    def _write(self) -> None:
        """Write every scored session waiting, in one transaction (one at a time if that fails)."""
        ready, self._ready = self._ready, []
        gone, self._gone = self._gone, []
        try:
            run_retrying(lambda: self.scorer.store_batch(ready, gone), f"writing {len(ready)} evaluated sessions",
                         log=logger, pause_s=0.05)
            self.done += len(ready)
            return
        except Exception:  # noqa: BLE001 - isolate the session that fails; the others are written
            logger.exception("writing %d evaluated sessions failed; writing them one by one", len(ready))
        for item in ready:
            try:
                self.scorer.store_batch([item])
                self.done += 1
            except Exception:  # noqa: BLE001 - the job stays leased and is retried after its lease
                self.failed += 1
                logger.exception("evaluating session %s failed; it will be retried", item.view.session_id)
        if gone:
            try:
                self.scorer.store_batch([], gone)
            except Exception:  # noqa: BLE001
                logger.exception("dropping %d evaluation jobs of erased sessions failed", len(gone))
