#!/usr/bin/env python
"""Role processes on PostgreSQL: ingest spans/s and judged sessions/s with 1, 2 and 4 processes per role.

For each count n, a fresh PostgreSQL database gets n ``--role ingest``
processes, n ``--role worker`` processes (each scoring in its own interpreter)
and one ``--role monitor``; the load is ``bench/steady.py``'s (sessions of
19 spans of about ``--span-bytes`` each, both conventions' attributes, 20
sessions per request, event time advancing so sessions complete), sent on 4
connections per ingest process, round robin, for ``--duration`` seconds. The
catalogue is steady's: rules and offline faithfulness on every session, a
loopback LLM judge (``--judge-delay`` seconds per call) on 5%.

Printed per n: accepted spans/s and its ratio to this machine's single-core
limit on the same bodies, sessions scored/s and judged/s over the run, the
evaluation queue left at the end, and the CPU each role used per unit of work
(µs per accepted span in ingest processes, ms per scored session in workers).
Those unit costs are what ``docs/deployment.md``'s capacity model rests on;
the last lines print what it predicts for the machine's cores and for 16.

    .venv/bin/python bench/scale.py                       # counts 1,2,4, 60 s each, on 127.0.0.1:5432/test
    .venv/bin/python bench/scale.py --counts 1 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ingest import ProcStats, machine_limit, prepare_database  # the benches make and measure a store alike
from sqlalchemy import func, select
from steady import Bodies, Load, _sender, _serve_judge, config_text, make_template

from agentwatch.store import models as m
from agentwatch.store.store import Store
from agentwatch.testing import ServerProcess

ENV = {"AGENTWATCH_EVALUATION_WORKERS": "0", "AGENTWATCH_DECODE_WORKERS": "0", "BENCH_JUDGE_KEY": "bench"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL server; each count runs on a fresh database made there")
    parser.add_argument("--counts", default="1,2,4", help="processes per role to measure (default %(default)s)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load per count (default %(default)s)")
    parser.add_argument("--span-bytes", type=int, default=2500)
    parser.add_argument("--connections", type=int, default=4, help="per ingest process (default %(default)s)")
    parser.add_argument("--judge-rate", type=float, default=0.05)
    parser.add_argument("--judge-delay", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def _send(targets: list[ServerProcess], load: Load, connections: int) -> None:
    async def main() -> None:
        await asyncio.gather(*(_sender("127.0.0.1", proc.port, load) for proc in targets for _ in range(connections)))

    asyncio.run(main())


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu(procs: list[ServerProcess]) -> float:
    total = 0.0
    for proc in procs:
        assert proc.proc is not None
        total += ProcStats(proc.proc.pid).cpu_s() or 0.0
    return total


def measure(n: int, args: argparse.Namespace, bodies: Bodies, judge_url: str, workdir: Path) -> dict[str, Any]:
    db = prepare_database(args.database_url, workdir, fresh_pg=True)
    config = workdir / "agentwatch.yaml"
    config.write_text(config_text(judge_url, args.judge_rate))
    Store(db.url).migrate()

    def role(name: str) -> ServerProcess:
        return ServerProcess(db.url, config=config, grpc=False, cwd=workdir, env=ENV,
                             extra_args=["--role", name, "--log-level", "warning"])

    ingest = [role("ingest") for _ in range(n)]
    workers = [role("worker") for _ in range(n)]
    monitor = role("monitor")
    everything = [*ingest, *workers, monitor]
    try:
        for proc in everything:
            proc.start(timeout=60)
        engine = db.engine()
        cpu_ingest, cpu_workers, cpu_monitor = _cpu(ingest), _cpu(workers), _cpu([monitor])
        machine, client = _machine_busy_s(), ProcStats(os.getpid()).cpu_s() or 0.0
        with engine.connect() as conn:
            scored_before = conn.execute(select(func.count(m.scores.c.session_id.distinct()))).scalar_one()
        started = time.perf_counter()
        load = Load(bodies, deadline=started + args.duration, min_spans=0, max_deadline=started + args.duration)
        _send(ingest, load, args.connections)
        elapsed = time.perf_counter() - started
        cpu_ingest, cpu_workers = _cpu(ingest) - cpu_ingest, _cpu(workers) - cpu_workers
        cpu_monitor = _cpu([monitor]) - cpu_monitor
        # What is left of the machine's busy time: PostgreSQL's backends, the judge, the kernel.
        cpu_other = (_machine_busy_s() - machine) - cpu_ingest - cpu_workers - cpu_monitor - (
            (ProcStats(os.getpid()).cpu_s() or 0.0) - client)
        sc = m.scores.c
        with engine.connect() as conn:
            scored = conn.execute(select(func.count(sc.session_id.distinct()))).scalar_one() - scored_before
            judged = conn.execute(select(func.count()).select_from(m.scores)
                                  .where(sc.evaluator == "helpfulness")).scalar_one()
            queued = conn.execute(select(func.count()).select_from(m.eval_jobs)).scalar_one()
            completed = conn.execute(select(func.count()).select_from(m.sessions)
                                     .where(m.sessions.c.complete.is_(True))).scalar_one()
        engine.dispose()
        return {"n": n, "spans": load.accepted_spans, "elapsed": elapsed, "scored": scored, "judged": judged,
                "queued": queued, "completed": completed, "cpu_ingest": cpu_ingest, "cpu_workers": cpu_workers,
                "cpu_monitor": cpu_monitor, "cpu_other": max(cpu_other, 0.0)}
    finally:
        for proc in everything:
            proc.stop()
        db.drop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c]
    rng = random.Random(args.seed)
    step_ns = 230 * 10**9
    templates = [make_template(rng, sessions=20, turns=3, span_bytes=args.span_bytes, tool_error_rate=0.005,
                               step_ns=step_ns) for _ in range(8)]
    workdir = Path(tempfile.mkdtemp(prefix="aw-scale-"))
    limit = machine_limit([Bodies(templates, time.time_ns(), step_ns, 1).body(i)[0] for i in range(40)], workdir,
                          repeats=2).spans_per_s
    context = multiprocessing.get_context("spawn")
    port_queue, stop = context.Queue(), context.Event()
    judge = context.Process(target=_serve_judge, args=(args.judge_delay, port_queue, stop), daemon=True)
    judge.start()
    judge_url, _ = port_queue.get(timeout=30)
    cores = os.cpu_count() or 1
    print(f"{cores} cores; single-core limit on these bodies: {limit:,.0f} spans/s; {args.duration:g} s per count")
    print(f"{'per role':>8} {'spans/s':>9} {'x limit':>7} {'scored/s':>9} {'judged/s':>9} {'queued':>7} "
          f"{'ingest µs/span':>15} {'worker ms/session':>18} {'db+other µs/span':>17} {'monitor %':>9}")
    rows = []
    try:
        for n in counts:
            bodies = Bodies(templates, time.time_ns() - 7 * 86400 * 10**9, step_ns, rng.getrandbits(28))
            r = measure(n, args, bodies, judge_url, workdir)
            rows.append(r)
            spans_s = r["spans"] / r["elapsed"]
            us_span = 1e6 * r["cpu_ingest"] / max(r["spans"], 1)
            ms_session = 1e3 * r["cpu_workers"] / max(r["scored"], 1)
            other_us = 1e6 * r["cpu_other"] / max(r["spans"], 1)
            r.update(spans_s=spans_s, us_span=us_span, ms_session=ms_session, other_us=other_us)
            print(f"{n:>8} {spans_s:>9,.0f} {spans_s / limit:>7.3f} {r['scored'] / r['elapsed']:>9,.1f} "
                  f"{r['judged'] / r['elapsed']:>9,.1f} {r['queued']:>7,} {us_span:>15,.0f} {ms_session:>18,.2f} "
                  f"{other_us:>17,.0f} {100 * r['cpu_monitor'] / r['elapsed']:>9.1f}", flush=True)
    finally:
        stop.set()
        judge.join(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    best = min(rows, key=lambda r: 19 * r["us_span"] / 1e3 + r["ms_session"] + 19 * r["other_us"] / 1e3)
    ingest_ms, worker_ms, db_ms = 19 * best["us_span"] / 1e3, best["ms_session"], 19 * best["other_us"] / 1e3
    print(f"capacity model (unit costs of n={best['n']}): a 19-span session costs {ingest_ms:.1f} ms of ingest CPU, "
          f"{worker_ms:.1f} ms of worker CPU and {db_ms:.1f} ms of PostgreSQL (and other) CPU")
    for c in (cores, 16):
        sessions_s = 0.8 * c / ((ingest_ms + worker_ms + db_ms) / 1e3)
        print(f"  {c:>2} cores at 80% busy: about {sessions_s:,.0f} sessions/s ({19 * sessions_s:,.0f} spans/s): "
              f"{sessions_s * ingest_ms / 800:.1f} ingest, {sessions_s * worker_ms / 800:.1f} worker processes, "
              f"{sessions_s * db_ms / 800:.1f} cores of PostgreSQL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
