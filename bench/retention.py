"""Storage stays bounded under tail retention: a week of traffic, measured day by day.

Seven simulated days at 120 sessions an hour (the generator's daily cycle
around that mean) go to a real server on a SQLite file, with head sampling
at 5%, rule and faithfulness evaluators on every session, and
``retention: {payload_ttl: 1h, sampled: 2d, flagged: 2d}``. After each
simulated day the benchmark flushes (sessions complete, evaluations drain,
retention runs), checkpoints the WAL and prints:

* the database size;
* the bytes held by span payloads (attributes, events, links and the log
  records attached to spans);
* per session, the bytes of session and span rows without payloads, of
  scores, and of rollups (SQLite's ``dbstat``).

Span-payload bytes should level off once the retention periods have passed:
the benchmark reports day 7 against day 3 (the target is within 10%).

    .venv/bin/python bench/retention.py [--days 7] [--rate 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from agentwatch.testing import ServerProcess
from agentwatch.traffic import Generator, flush, send

DAY_NS = 86_400 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z

CONFIG = """
sampling: {default_rate: 0.05}
retention: {payload_ttl: 1h, sampled: 2d, flagged: 2d}
evaluators:
  - {name: tool_use, kind: rule, rule: tool_error, threshold: 1.0, severity: page}
  - {name: budget, kind: rule, rule: budget, params: {max_latency_ms: 60000, max_turns: 6}, threshold: 1.0}
  - {name: faithfulness, kind: faithfulness, threshold: 0.8}
"""


def measure(db: Path) -> dict[str, float]:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        span_payload = conn.execute(
            "SELECT COALESCE(SUM(LENGTH(attributes) + COALESCE(LENGTH(events), 0) + COALESCE(LENGTH(links), 0)), 0)"
            " FROM span_payloads"
        ).fetchone()[0]
        event_payload = conn.execute(
            "SELECT COALESCE(SUM(LENGTH(attributes) + COALESCE(LENGTH(body), 0)), 0) FROM span_events"
        ).fetchone()[0]
        retained = conn.execute("SELECT COUNT(*) FROM sessions WHERE payload_dropped_at IS NULL").fetchone()[0]
        flagged = conn.execute("SELECT COUNT(*) FROM sessions WHERE flagged").fetchone()[0]
        sampled = conn.execute("SELECT COUNT(*) FROM sessions WHERE sampled").fetchone()[0]
        scores = conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    finally:
        conn.close()

    def table(*names: str) -> int:
        return sum(int(v) for k, v in sizes.items() if k in names or any(k.startswith(f"ix_{n}") or
                                                                            k.startswith(f"ux_{n}") or
                                                                            k == f"sqlite_autoindex_{n}_1"
                                                                            for n in names))

    payload = span_payload + event_payload
    rows = table("sessions", "spans", "trace_sessions", "resources")
    return {
        "db_bytes": db.stat().st_size,
        "payload_bytes": payload,
        "sessions": sessions,
        "retained_sessions": retained,
        "flagged": flagged,
        "sampled": sampled,
        "scores": scores,
        "row_bytes_per_session": rows / max(sessions, 1),
        "score_bytes_per_session": table("scores") / max(sessions, 1),
        "rollup_bytes_per_session": table("rollups") / max(sessions, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rate", type=float, default=120.0, help="mean sessions per hour")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON lines")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="agentwatch-retention-") as folder:
        root = Path(folder)
        (root / "agentwatch.yaml").write_text(CONFIG)
        db = root / "agentwatch.db"
        generator = Generator(seed=args.seed, start_ns=T0, sessions_per_hour=args.rate)
        stream = generator.sessions()
        pending = next(stream)
        rows = []
        with ServerProcess(f"sqlite:///{db}", config=root / "agentwatch.yaml", grpc=False, cwd=root) as server:
            print(f"{args.days} simulated days at {args.rate:g} sessions/h on SQLite; sampling 5%, "
                  "retention payload_ttl 1h, sampled 2d, flagged 2d")
            print(f"{'day':>3} {'sessions':>8} {'retained':>8} {'flagged':>7} {'db MB':>7} {'payload MB':>10} "
                  f"{'rows B/s':>8} {'scores B/s':>10} {'rollups B/s':>11} {'sent s':>6} {'flush s':>7}")
            for day in range(1, args.days + 1):
                end = T0 + day * DAY_NS
                batch = []
                while pending.start_ns < end:
                    batch.append(pending)
                    pending = next(stream)
                started = time.monotonic()
                send(batch, server.url, concurrency=4)
                sent = time.monotonic() - started
                started = time.monotonic()
                flush(server.url)
                flushed = time.monotonic() - started
                figures = measure(db) | {"day": day, "send_s": sent, "flush_s": flushed}
                rows.append(figures)
                print(f"{day:>3} {figures['sessions']:>8} {figures['retained_sessions']:>8} {figures['flagged']:>7} "
                      f"{figures['db_bytes'] / 1e6:>7.1f} {figures['payload_bytes'] / 1e6:>10.2f} "
                      f"{figures['row_bytes_per_session']:>8.0f} {figures['score_bytes_per_session']:>10.0f} "
                      f"{figures['rollup_bytes_per_session']:>11.0f} {sent:>6.1f} {flushed:>7.1f}", flush=True)
                if args.json:
                    print(json.dumps(figures))
        if len(rows) >= 7:
            day3, day7 = rows[2]["payload_bytes"], rows[6]["payload_bytes"]
            change = (day7 - day3) / day3 if day3 else float("inf")
            verdict = "within" if abs(change) <= 0.10 else "OUTSIDE"
            print(f"span payload bytes, day 7 against day 3: {change:+.1%} ({verdict} the 10% target)")
            return 0 if abs(change) <= 0.10 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
