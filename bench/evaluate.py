"""Evaluation throughput through the real queue: rules, then an LLM judge that answers in 500 ms.

Generated sessions are written to a fresh SQLite store and completed, which
queues one evaluation job each; the evaluation worker (the same one
``agentwatch serve`` runs) drains the queue: it loads every session, scores
it and writes the scores with their lineage in a transaction. Printed:

* rule throughput: sessions/s with the built-in rules and offline faithfulness on every session;
* judge throughput: judged sessions/s against a loopback OpenAI-compatible judge
  (in a separate process) that answers each call after 500 ms, and the most
  calls the judge saw in flight at once. Target: at least 100 in flight and
  150 judged sessions/s from one process.

    .venv/bin/python bench/evaluate.py [--sessions 2000] [--judge-sessions 1500] [--delay 0.5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentwatch.evaluate.catalogue import load_catalogue
from agentwatch.evaluate.engine import EvaluationWorker, Scorer
from agentwatch.ingest.decode import traces_from_message
from agentwatch.ingest.receiver import prepare_spans
from agentwatch.normalize import NormalizeOptions
from agentwatch.sessions.lifecycle import SessionLifecycle
from agentwatch.store import evaluations
from agentwatch.store.store import Store
from agentwatch.store.writer import WriteBatch, Writer
from agentwatch.traffic import Generator

T0 = 1_767_225_600 * 10**9

RULES = {
    "sampling": {"default_rate": 0.05},
    "evaluators": [
        {"name": "tool_use", "kind": "rule", "rule": "tool_error", "threshold": 1.0},
        {"name": "budget", "kind": "rule", "rule": "budget", "params": {"max_latency_ms": 60000, "max_turns": 6},
         "threshold": 1.0},
        {"name": "no_secrets", "kind": "rule", "rule": "answer_pattern",
         "params": {"forbidden": [r"(?i)api[_ ]key", r"\b\d{16}\b"]}, "threshold": 1.0},
        {"name": "faithfulness", "kind": "faithfulness", "threshold": 0.8},
    ],
}


def judge_config(base_url: str) -> dict[str, Any]:
    return {
        "sampling": {"default_rate": 1.0},
        "evaluators": [{
            "name": "goal_completion", "kind": "llm", "sample_rate": 1.0, "threshold": 0.5,
            "params": {"base_url": base_url, "model": "gpt-4o-mini", "api_key_env": "BENCH_JUDGE_KEY",
                       "max_concurrency": 150, "timeout_s": 30},
        }],
    }


def _serve_judge(delay: float, port_queue: Any, stop: Any) -> None:
    from agentwatch.testing.judge import FakeJudgeServer, Reply

    with FakeJudgeServer(default=Reply.verdict(0.8, "resolved", delay_s=delay)) as server:
        port_queue.put(server.base_url)
        stop.wait()
        port_queue.put(server.peak_in_flight)


def fill(store: Store, sessions: int, seed: int) -> None:
    """Write generated sessions and complete them (which queues one job each)."""
    project_id = store.ensure_project("default")
    sessions = SessionLifecycle(store.engine, idle_timeout_s=300, allowed_lateness_s=60,
                                on_complete=lambda conn, pid, ids: evaluations.enqueue(conn, pid, ids))
    writer = Writer(store.engine, sessions)
    writer.start()
    options = NormalizeOptions()
    futures = []
    for generated in Generator(seed=seed, start_ns=T0, sessions_per_hour=3600).sessions(count=sessions):
        prepared = prepare_spans(traces_from_message(generated.request), options)
        futures.append(writer.submit(WriteBatch(project_id, spans=prepared.rows, resources=prepared.resources)))
    for future in futures:
        future.result()
    writer.call(lambda: sessions.flush(project_id)).result()
    writer.stop()


def drain(store: Store, sections: dict[str, Any], concurrency: int) -> tuple[int, float]:
    catalogue = load_catalogue(sections)
    evaluations.register_evaluators(store.engine, catalogue.scored)
    worker = EvaluationWorker(Scorer(store, catalogue, NormalizeOptions()), concurrency=concurrency, poll_s=0.05)
    started = time.monotonic()
    worker.start()
    while evaluations.pending(store.engine):
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    worker.stop()
    return worker.done, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000, help="sessions scored by the rules")
    parser.add_argument("--judge-sessions", type=int, default=1500, help="sessions scored by the judge")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds the judge takes per call")
    parser.add_argument("--concurrency", type=int, default=200, help="sessions the worker keeps in flight")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ["BENCH_JUDGE_KEY"] = "bench-key"

    with tempfile.TemporaryDirectory(prefix="agentwatch-evaluate-") as folder:
        store = Store(f"sqlite:///{Path(folder) / 'rules.db'}")
        store.migrate()
        fill(store, args.sessions, args.seed)
        done, elapsed = drain(store, RULES, args.concurrency)
        print(f"rules:  {done} sessions scored by {len(RULES['evaluators'])} evaluators in {elapsed:.1f}s "
              f"= {done / elapsed:,.0f} sessions/s (load, score, write; SQLite)")
        store.close()

        context = multiprocessing.get_context("spawn")
        port_queue, stop = context.Queue(), context.Event()
        judge = context.Process(target=_serve_judge, args=(args.delay, port_queue, stop), daemon=True)
        judge.start()
        base_url = port_queue.get(timeout=30)
        store = Store(f"sqlite:///{Path(folder) / 'judge.db'}")
        store.migrate()
        fill(store, args.judge_sessions, args.seed + 1)
        done, elapsed = drain(store, judge_config(base_url), args.concurrency)
        stop.set()
        peak = port_queue.get(timeout=30)
        judge.join(timeout=10)
        rate = done / elapsed
        verdict = "meets" if peak >= 100 and rate >= 150 else "BELOW"
        print(f"judge:  {done} sessions judged in {elapsed:.1f}s = {rate:,.0f} sessions/s, {peak} calls in flight at "
              f"peak, {args.delay * 1000:.0f} ms per call ({verdict} the target of 100 in flight and 150/s)")
        store.close()
        return 0 if verdict == "meets" else 1


if __name__ == "__main__":
    sys.exit(main())
