"""Dashboard page times with 100 thousand sessions stored (and any other sizes).

For each size N the store is built as ``bench/monitor.py`` builds its own
(weeks of 8 services' traffic with scores, minute and hour rollups, failure
templates and hits, payload-less sessions; see its docstring), the monitor
checks the last hour once (so alerts, SLO status and the last tick exist),
then every page is requested in-process through the ASGI app (Starlette's
test client, no lifespan: no background thread competes) ``--repeats`` times
after one warm-up request. Printed per page: median, p95 and max in ms of
wall time, the median CPU time of this process (server and client: what the
page costs when the machine is shared, where wall time also counts the
waits for a core), the
statements it ran (a count that does not grow with the sessions stored) and
the page's size. Exit status 1 when a page's median is over ``--budget-ms``
(300).

    .venv/bin/python bench/ui.py                       # 100k sessions, temporary SQLite file
    .venv/bin/python bench/ui.py --sizes 1000,100000
    .venv/bin/python bench/ui.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor import (  # noqa: E402 - the benches share their store building
    CATALOGUE,
    END_NS,
    MINUTE_NS,
    PROJECT,
    SLOS,
    build,
    fresh_database,
)
from sqlalchemy import event, func, select  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from agentwatch.alert.routes import load_routes  # noqa: E402
from agentwatch.api.app import create_app  # noqa: E402
from agentwatch.evaluate.catalogue import load_catalogue  # noqa: E402
from agentwatch.monitor import slo  # noqa: E402
from agentwatch.monitor.checker import Monitor  # noqa: E402
from agentwatch.monitor.config import MonitorConfig  # noqa: E402
from agentwatch.pipeline import Pipeline  # noqa: E402
from agentwatch.settings import Settings  # noqa: E402
from agentwatch.store import models as m  # noqa: E402
from agentwatch.store.engine import make_engine, migrate  # noqa: E402
from agentwatch.store.store import Store  # noqa: E402


def pages(engine: Any) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        session_id = conn.execute(select(m.sessions.c.session_id).where(m.sessions.c.project_id == PROJECT)
                                  .order_by(m.sessions.c.start_ns.desc()).limit(1)).scalar_one()
        alert_id = conn.execute(select(func.max(m.alerts.c.id))).scalar()
        failing_session = conn.execute(select(m.scores.c.session_id).where(
            m.scores.c.project_id == PROJECT, m.scores.c.passed.is_(False)).order_by(
            m.scores.c.event_time_ns.desc()).limit(1)).scalar()
    out = [("overview", "/"), ("overview 7d", "/?range=7d"), ("dimensions", "/dimensions"),
           ("dimensions 7d", "/dimensions?range=7d"), ("dimensions 30d", "/dimensions?range=30d"),
           ("alerts", "/alerts"), ("sessions", "/sessions"), ("sessions flagged", "/sessions?flagged=true"),
           ("sessions failing", "/sessions?failing=tool_use&range=7d"), ("session", f"/sessions/{session_id}"),
           ("clusters", "/clusters"), ("clusters 7d", "/clusters?range=7d"), ("evaluators", "/evaluators")]
    if failing_session:
        out.append(("failing session", f"/sessions/{failing_session}"))
    if alert_id is not None:
        out.append(("alert", f"/alerts/{alert_id}"))
    return out


def run_size(n: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    db, folder = fresh_database(args.database_url, n)
    catalogue = load_catalogue(CATALOGUE)
    slos = slo.load_slos(SLOS, None, catalogue)
    print(f"\n== {n:,} sessions, {'PostgreSQL' if db.dialect == 'postgresql' else 'SQLite'} ==", flush=True)
    try:
        engine = make_engine(db.url)
        migrate(engine)
        built = build(db, engine, n, catalogue, args.seed)
        print(f"build     {built.seconds:.1f} s; sessions {built.counts['sessions']:,}, scores "
              f"{built.counts['scores']:,}, rollups {built.counts['rollups']:,} + {built.counts['rollups_hourly']:,} "
              f"hourly, templates {built.counts['failure_templates']:,}", flush=True)
        started = time.perf_counter()
        Monitor(engine, catalogue, MonitorConfig(), slos, load_routes({}), idle_timeout_s=300.0).run(
            PROJECT, END_NS + 10 * MINUTE_NS, final_event_ns=END_NS - 1)
        with engine.connect() as conn:
            alerts = conn.execute(select(func.count()).select_from(m.alerts)).scalar_one()
        print(f"monitor   last hour checked in {time.perf_counter() - started:.1f} s; {alerts} alerts", flush=True)
        engine.dispose()

        settings = Settings(database_url=db.url, decode_workers=0, sections={**CATALOGUE, **SLOS})
        store = Store(db.url)
        pipeline = Pipeline(settings, store)
        client = TestClient(create_app(settings, pipeline))  # no lifespan: the pages only read
        statements = {"n": 0}

        def count(*_: Any) -> None:
            statements["n"] += 1

        event.listen(store.engine, "before_cursor_execute", count)
        results = []
        print(f"{'page':<18} {'median ms':>9} {'p95 ms':>8} {'max ms':>8} {'cpu ms':>8} {'statements':>10} {'kB':>6}")
        for name, path in pages(store.engine):
            first = client.get(path)
            if first.status_code != 200:
                raise SystemExit(f"{path}: {first.status_code} {first.text[:300]}")
            times, cpu = [], []
            statements["n"] = 0
            for _ in range(args.repeats):
                began, began_cpu = time.perf_counter(), time.process_time()
                response = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                cpu.append((time.process_time() - began_cpu) * 1000)
                assert response.status_code == 200, path
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            row = {"sessions": n, "page": name, "path": path, "median_ms": statistics.median(times), "p95_ms": p95,
                   "max_ms": times[-1], "cpu_ms": statistics.median(cpu), "statements": statements["n"] / args.repeats,
                   "bytes": len(first.content)}
            results.append(row)
            print(f"{name:<18} {row['median_ms']:>9.1f} {p95:>8.1f} {times[-1]:>8.1f} {row['cpu_ms']:>8.1f} "
                  f"{row['statements']:>10.0f} {row['bytes'] / 1000:>6.0f}", flush=True)
        store.close()
        return results
    finally:
        db.drop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="stored sessions per run, comma-separated")
    parser.add_argument("--database-url", help="postgresql://... (a fresh database per size, dropped after) or "
                                               "sqlite:///dir/x.db (temporary files in that folder)")
    parser.add_argument("--repeats", type=int, default=20, help="timed requests per page")
    parser.add_argument("--budget-ms", type=float, default=300.0, help="the median a page must stay under")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = [row for n in (int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
               for row in run_size(n, args)]
    slow = [r for r in results if r["median_ms"] > args.budget_ms]
    worst = max(results, key=lambda r: r["median_ms"])
    load = os.getloadavg()[0]
    print(f"\nslowest page: {worst['page']} at {worst['sessions']:,} sessions, median {worst['median_ms']:.1f} ms "
          f"({worst['cpu_ms']:.1f} ms CPU); every page under {args.budget_ms:g} ms: {'yes' if not slow else 'no'}; "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
