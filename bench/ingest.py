#!/usr/bin/env python
"""Ingest benchmark: OTLP/HTTP agent sessions end to end, against this machine's limit.

Pre-encodes realistic agent sessions (``agentwatch.testing.agent_session_request``:
20 spans, ~500-byte messages, ~13 kB per protobuf body, one distinct session and
trace per body), then, against a real ``agentwatch serve`` (started here unless
``--url`` is given), POSTs them as ``application/x-protobuf`` to ``/v1/traces``
from ``--concurrency`` persistent connections, each sending its next body once
the previous one is answered. Each body is sent once (retried only after
429/503), so every acknowledged span must be in the store afterwards.

Printed: accepted (and offered) spans/s over the measured window, request
counts by status, request latency p50/p99, the server's peak RSS and CPU, the
bytes on disk per span, and this machine's limit for the same bodies, measured
defined as: one thread; ``ExportTraceServiceRequest.FromString``;
each span walked to a row tuple with its attributes as ``json.dumps``;
``sqlite3.executemany`` into a WAL, ``synchronous=NORMAL`` file with one unique
and two secondary indexes, one transaction per body; limit = min(walk spans/s,
insert rows/s). Then the end-to-end/limit ratio (target on SQLite: >= 0.25)
and the spans lost (acknowledged with 200 but not stored; must be 0).

    .venv/bin/python bench/ingest.py                       # temp SQLite file
    .venv/bin/python bench/ingest.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:4318 --database-url sqlite:///agentwatch.db

Exit status 1 when spans were lost, 0 otherwise (the ratio is reported, not enforced).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import math
import os
import random
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from agentwatch.store.engine import normalize_url
from agentwatch.testing import ServerProcess, agent_session_request

TRACES_PATH = "/v1/traces"
CONTENT_TYPE = "application/x-protobuf"
TARGET_RATIO = 0.25
GOAL_RATIO = 0.5
PEER_SPANS_PER_S = 230
#: Spans in one ``agent_session_request`` with its defaults (6 tool calls).
SPANS_PER_SESSION = 20


# -- bodies ------------------------------------------------------------------


@dataclass
class Bodies:
    """Pre-encoded request bodies and the spans in each."""

    bodies: list[bytes]
    spans: list[int]
    seconds: float

    @property
    def total_spans(self) -> int:
        return sum(self.spans)

    @property
    def mean_bytes(self) -> float:
        return sum(map(len, self.bodies)) / max(len(self.bodies), 1)


def make_bodies(count: int, seed: int) -> Bodies:
    rng = random.Random(seed)
    started = time.perf_counter()
    bodies: list[bytes] = []
    spans: list[int] = []
    for _ in range(count):
        request, spec = agent_session_request(rng)
        bodies.append(request.SerializeToString())
        spans.append(len(spec.span_ids))
    return Bodies(bodies, spans, time.perf_counter() - started)


# -- the machine limit ---------------------------------------------------------


def _plain(value: Any) -> Any:
    """An OTLP AnyValue as a plain Python value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_plain(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _plain(item.value) for item in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def walk_body(body: bytes) -> list[tuple[Any, ...]]:
    """FromString, then one row tuple per span, attributes as JSON text."""
    rows = []
    request = ExportTraceServiceRequest.FromString(body)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {kv.key: _plain(kv.value) for kv in span.attributes}
                rows.append((
                    span.trace_id.hex(),
                    span.span_id.hex(),
                    span.parent_span_id.hex() or None,
                    span.name,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.kind,
                    span.status.code,
                    json.dumps(attributes),
                ))
    return rows


_LIMIT_SCHEMA = (
    "CREATE TABLE spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL,"
    " start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, kind INTEGER NOT NULL, status_code INTEGER NOT NULL,"
    " attributes TEXT NOT NULL, UNIQUE (trace_id, span_id))",
    "CREATE INDEX ix_spans_name ON spans (name)",
    "CREATE INDEX ix_spans_start ON spans (start_ns)",
)
_LIMIT_INSERT = "INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass
class Limit:
    bodies: int
    spans: int
    walk_spans_per_s: float
    insert_rows_per_s: float

    @property
    def spans_per_s(self) -> float:
        return min(self.walk_spans_per_s, self.insert_rows_per_s)


def machine_limit(bodies: list[bytes], workdir: Path, repeats: int = 1) -> Limit:
    """One thread, in this process: walk every body, then insert every body's rows in its own transaction.

    With ``repeats`` > 1 each half is timed that many times (a fresh file each) and the best kept, which
    is what the machine can do when the other work on it leaves room.
    """
    walk_s = insert_s = math.inf
    per_body: list[list[tuple[Any, ...]]] = []
    for _ in range(repeats):
        started = time.perf_counter()
        per_body = [walk_body(body) for body in bodies]
        walk_s = min(walk_s, time.perf_counter() - started)
    spans = sum(map(len, per_body))
    for attempt in range(repeats):
        path = workdir / f"limit-{attempt}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _LIMIT_SCHEMA:
                conn.execute(statement)
            started = time.perf_counter()
            for rows in per_body:
                conn.execute("BEGIN")
                conn.executemany(_LIMIT_INSERT, rows)
                conn.execute("COMMIT")
            insert_s = min(insert_s, time.perf_counter() - started)
            stored = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
        finally:
            conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        if stored != spans:
            raise RuntimeError(f"limit run stored {stored} of {spans} rows")
    return Limit(len(bodies), spans, spans / walk_s, spans / insert_s)


# -- the database and the server ---------------------------------------------------


@dataclass
class Database:
    """The store the server writes to, and how to undo creating it."""

    url: str
    dialect: str
    sqlite_path: Path | None = None
    created_pg: tuple[str, str] | None = None  # (admin URL, database name) to drop afterwards
    label: str = ""

    def engine(self) -> Engine:
        return create_engine(normalize_url(self.url), poolclass=NullPool)

    def drop(self) -> None:
        if self.created_pg is None:
            return
        import psycopg

        admin, name = self.created_pg
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare_database(url: str | None, workdir: Path, *, fresh_pg: bool) -> Database:
    if url is None:
        path = workdir / "agentwatch.db"
        return Database(f"sqlite:///{path}", "sqlite", sqlite_path=path, label="SQLite (temp file)")
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = Path(parsed.database or "").expanduser().resolve()
        return Database(url, "sqlite", sqlite_path=path, label=f"SQLite {path}")
    if not parsed.drivername.startswith("postgres"):
        raise SystemExit(f"unsupported --database-url {url!r}: use sqlite:///path or postgresql://...")
    if not fresh_pg:
        return Database(url, "postgresql", label=f"PostgreSQL {parsed.database}")
    import psycopg

    admin = parsed.set(drivername="postgresql", database=parsed.database or "test")
    admin_url = admin.render_as_string(hide_password=False)
    name = f"aw_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    bench_url = parsed.set(database=name).render_as_string(hide_password=False)
    return Database(bench_url, "postgresql", created_pg=(admin_url, name), label=f"PostgreSQL {name} (fresh)")


def store_counts(db: Database) -> tuple[int, int]:
    engine = db.engine()
    try:
        with engine.connect() as conn:
            spans = conn.execute(text("SELECT count(*) FROM spans")).scalar_one()
            sessions = conn.execute(text("SELECT count(*) FROM sessions")).scalar_one()
    finally:
        engine.dispose()
    return int(spans), int(sessions)


def disk_bytes(db: Database) -> int:
    """SQLite: main file + WAL after a TRUNCATE checkpoint. PostgreSQL: pg_database_size."""
    engine = db.engine()
    try:
        with engine.connect() as conn:
            if db.dialect == "postgresql":
                return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
            for _ in range(20):
                row = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if row is None or not row[0]:  # (busy, WAL frames, frames checkpointed)
                    break
                time.sleep(0.1)
    finally:
        engine.dispose()
    assert db.sqlite_path is not None
    wal = Path(f"{db.sqlite_path}-wal")
    return db.sqlite_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def post(base: tuple[str, int], path: str, body: bytes = b"", timeout: float = 120) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*base, timeout=timeout)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class ProcStats:
    """CPU and memory of one process, from /proc."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def cpu_s(self) -> float | None:
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.ticks  # utime, stime

    def memory_kb(self, key: str) -> int | None:
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / ticks, total / ticks


# -- the load ------------------------------------------------------------------------


@dataclass
class Job:
    """What the senders share: the bodies, the next one to send and when to stop."""

    bodies: list[bytes]
    deadline: float
    retries: int = 5
    timeout: float = 60.0
    exhausted_at: float | None = None
    _next: Iterator[int] = field(default_factory=itertools.count)

    def take(self) -> int | None:
        if time.perf_counter() >= self.deadline:
            return None
        index = next(self._next)  # atomic under the GIL
        if index >= len(self.bodies):
            if self.exhausted_at is None:
                self.exhausted_at = time.perf_counter()
            return None
        return index


#: One answered (or failed) exchange: (finished at, seconds, HTTP status or 0 for a transport error, body index).
Exchange = tuple[float, float, int, int]


def _retry_wait(retry_after: str | None) -> float:
    try:
        return min(max(float(retry_after or 1), 0.05), 1.0)
    except ValueError:
        return 1.0


def _thread_sender(host: str, port: int, job: Job, out: list[Exchange]) -> None:
    headers = {"Content-Type": CONTENT_TYPE}
    conn = http.client.HTTPConnection(host, port, timeout=job.timeout)
    try:
        while (index := job.take()) is not None:
            body = job.bodies[index]
            for attempt in range(job.retries + 1):
                started = time.perf_counter()
                retry_after = None
                try:
                    conn.request("POST", TRACES_PATH, body, headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    retry_after = response.getheader("retry-after")
                except (OSError, http.client.HTTPException):
                    conn.close()  # reconnects on the next request
                    status = 0
                done = time.perf_counter()
                out.append((done, done - started, status, index))
                if status not in (429, 503) or attempt == job.retries:
                    break
                time.sleep(_retry_wait(retry_after))
    finally:
        conn.close()


def run_threads(host: str, port: int, job: Job, concurrency: int) -> list[Exchange]:
    outs: list[list[Exchange]] = [[] for _ in range(concurrency)]
    threads = [threading.Thread(target=_thread_sender, args=(host, port, job, out), daemon=True) for out in outs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for out in outs for x in out]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str | None, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    retry_after = None
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"retry-after":
            retry_after = value.strip().decode("ascii", "replace")
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, retry_after, close


async def _async_sender(host: str, port: int, job: Job, out: list[Exchange]) -> None:
    prefix = (f"POST {TRACES_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {CONTENT_TYPE}\r\n"
              "Content-Length: ").encode("ascii")
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while (index := job.take()) is not None:
            body = job.bodies[index]
            message = prefix + str(len(body)).encode("ascii") + b"\r\n\r\n" + body
            for attempt in range(job.retries + 1):
                started = time.perf_counter()
                retry_after = None
                try:
                    async with asyncio.timeout(job.timeout):
                        if streams is None:
                            streams = await asyncio.open_connection(host, port)
                        reader, writer = streams
                        writer.write(message)
                        status, retry_after, close = await _read_response(reader)
                    if close:
                        writer.close()
                        streams = None
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                    if streams is not None:
                        streams[1].close()
                    streams = None
                    status = 0
                done = time.perf_counter()
                out.append((done, done - started, status, index))
                if status not in (429, 503) or attempt == job.retries:
                    break
                await asyncio.sleep(_retry_wait(retry_after))
    finally:
        if streams is not None:
            streams[1].close()


def run_asyncio(host: str, port: int, job: Job, concurrency: int) -> list[Exchange]:
    out: list[Exchange] = []

    async def main() -> None:
        await asyncio.gather(*(_async_sender(host, port, job, out) for _ in range(concurrency)))

    asyncio.run(main())
    return out


SENDERS: dict[str, Callable[[str, int, Job, int], list[Exchange]]] = {"asyncio": run_asyncio, "threads": run_threads}


# -- figures ---------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _num(value: float | None, fmt: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def summarize(figures: dict[str, Any]) -> str:
    f = figures
    lines = [
        f"agentwatch ingest benchmark: {f['store']}, {f['concurrency']} {f['client']} connections, "
        f"{f['warmup_s']:g} s warm-up + {f['measured_s']:.1f} s measured",
        f"bodies:       {f['bodies']} pre-encoded sessions, {f['spans_per_body']:.1f} spans and "
        f"{f['body_bytes'] / 1000:.1f} kB each, generated in {f['generate_s']:.1f} s (seed {f['seed']})",
    ]
    if f.get("bodies_exhausted_after_s") is not None:
        lines.append(f"note:         the bodies ran out after {f['bodies_exhausted_after_s']:.1f} s, so the measured "
                     "window is short of --duration: raise --sessions or --rate-guess")
    lines += [
        f"end to end:   {_num(f['spans_per_s'])} spans/s accepted, {_num(f['offered_spans_per_s'])} offered "
        f"(peer on this kind of machine: ~{PEER_SPANS_PER_S})",
        f"requests:     {f['requests']} in all (2xx {f['status_2xx']}, 429 {f['status_429']}, "
        f"other {f['status_other']}), {_num(f['requests_per_s'], ',.1f')}/s answered 2xx in the window",
        f"latency:      p50 {_num(f['p50_ms'], '.1f', ' ms')}, p99 {_num(f['p99_ms'], '.1f', ' ms')}, "
        f"max {_num(f['max_ms'], '.1f', ' ms')}",
        f"server:       peak RSS {_num(f['server_peak_rss_mb'], '.1f', ' MB')}, CPU "
        f"{_num(f['server_cpu_pct'], '.0f', '%')} of a core ({_num(f['server_cpu_us_per_span'], ',.0f')} us/span)",
        f"cpu:          client {_num(f['client_cpu_pct'], '.0f', '%')} of a core; machine "
        f"{_num(f['machine_busy_pct'], '.0f', '%')} busy ({os.cpu_count()} cores, other processes included)",
        f"disk:         {_num(f['disk_bytes_per_span'], ',.0f')} bytes/span "
        f"({_num(f['disk_mb'], ',.1f', ' MB')} in the store)",
    ]
    if f.get("limit_spans_per_s"):
        lines += [
            f"limit:        walk {_num(f['limit_walk_spans_per_s'])} spans/s, insert "
            f"{_num(f['limit_insert_rows_per_s'])} rows/s -> {_num(f['limit_spans_per_s'])} spans/s "
            f"(1 thread, {f['limit_bodies']} bodies, best of {f['limit_repeats']})",
            f"ratio:        {_num(f['ratio'], '.3f')} of the limit (target >= {TARGET_RATIO}, "
            f"headed for {GOAL_RATIO}): "
            + ("meets the target" if (f["ratio"] or 0) >= TARGET_RATIO else "BELOW the target"),
        ]
    if f.get("lost_spans") is None:
        lines.append("lost spans:   not checked (give --database-url with --url)")
    else:
        lines.append(
            f"lost spans:   {f['lost_spans']} (stored {f['stored_spans']} of {f['acknowledged_spans']} acknowledged"
            f"; sessions {f['stored_sessions']} of {f['acknowledged_sessions']}, {f['lost_sessions']} missing)"
        )
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None,
                        help="store of the server: sqlite:///path.db or postgresql://user@host:port/db (a fresh "
                             "aw_bench_<random> database is created through that one and dropped afterwards). "
                             "Default: a temporary SQLite file. With --url: the running server's store, read to "
                             "check nothing was lost.")
    parser.add_argument("--url", default=None, help="send to this running server instead of starting one")
    parser.add_argument("--server-pid", type=int, default=None, help="with --url: its pid, for RSS and CPU figures")
    parser.add_argument("--sessions", type=int, default=None,
                        help="distinct pre-encoded session bodies, each sent once; the run ends early when they "
                             "run out (default: enough for --rate-guess spans/s over warm-up + duration)")
    parser.add_argument("--rate-guess", type=float, default=15000,
                        help="spans/s the default --sessions is sized for (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections sending at once (default %(default)s)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds sent before measuring, not counted in rates (default %(default)s)")
    parser.add_argument("--client", choices=sorted(SENDERS), default="asyncio",
                        help="asyncio: raw streams on one event loop; threads: http.client, one connection per "
                             "thread (default %(default)s)")
    parser.add_argument("--limit-bodies", type=int, default=1000,
                        help="bodies the machine limit is measured on; 0 skips it (default %(default)s)")
    parser.add_argument("--limit-repeats", type=int, default=3,
                        help="times each half of the limit is timed, best kept (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the generated sessions (default: random)")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="run py-spy on the server over the measured window: FILE.svg (flame graph), "
                             "FILE.json (speedscope) or anything else (collapsed stacks)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary SQLite file / PostgreSQL database")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)
    if args.limit_repeats < 1:
        parser.error("--limit-repeats must be >= 1")
    if args.concurrency < 1 or (args.sessions is not None and args.sessions < 1) or args.duration <= 0 \
            or args.warmup < 0 or args.rate_guess <= 0:
        parser.error("--concurrency and --sessions must be >= 1, --duration and --rate-guess > 0, --warmup >= 0")
    if args.sessions is None:
        args.sessions = max(args.concurrency, math.ceil((args.warmup + args.duration) * args.rate_guess
                                                        / SPANS_PER_SESSION))
    return args


def start_profiler(path: str, pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return None
    fmt = "flamegraph" if path.endswith(".svg") else "speedscope" if path.endswith(".json") else "raw"
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--output", path, "--format", fmt, "--rate", "100",
                             "--duration", str(max(1, math.ceil(seconds))), "--nonblocking", "--threads"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    bodies = make_bodies(args.sessions, seed)
    workdir = Path(tempfile.mkdtemp(prefix="aw-bench-"))
    figures: dict[str, Any] = {
        "seed": seed, "bodies": len(bodies.bodies), "spans_per_body": bodies.total_spans / len(bodies.bodies),
        "body_bytes": bodies.mean_bytes, "generate_s": bodies.seconds, "concurrency": args.concurrency,
        "client": args.client, "warmup_s": args.warmup,
    }
    try:
        if args.limit_bodies > 0:
            limit = machine_limit(bodies.bodies[: args.limit_bodies], workdir, args.limit_repeats)
            figures.update(limit_bodies=limit.bodies, limit_repeats=args.limit_repeats,
                           limit_walk_spans_per_s=limit.walk_spans_per_s,
                           limit_insert_rows_per_s=limit.insert_rows_per_s, limit_spans_per_s=limit.spans_per_s)
        db = (prepare_database(args.database_url, workdir, fresh_pg=args.url is None)
              if args.database_url or args.url is None else None)
        server: ServerProcess | None = None
        try:
            if args.url is None:
                assert db is not None
                server = ServerProcess(db.url, grpc=False, cwd=workdir, extra_args=["--log-level", "warning"])
                server.start(timeout=60)
                assert server.proc is not None
                base_url, pid = server.url, server.proc.pid
            else:
                base_url, pid = args.url.rstrip("/"), args.server_pid
            figures["store"] = db.label if db else "server at " + base_url
            send(args, base_url, pid, db, bodies, figures)
        finally:
            if server is not None:
                server.stop()
            if db is not None and not args.keep:
                db.drop()
            elif db is not None:
                print(f"kept the store: {db.url}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept the work directory: {workdir}", file=sys.stderr)
    limit_sps = figures.get("limit_spans_per_s")
    figures["ratio"] = figures["spans_per_s"] / limit_sps if limit_sps and figures["spans_per_s"] else None
    return figures


def send(args: argparse.Namespace, base_url: str, pid: int | None, db: Database | None, bodies: Bodies,
         figures: dict[str, Any]) -> None:
    split = urllib.parse.urlsplit(base_url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    stats = ProcStats(pid)
    before = store_counts(db) if db else None
    disk_before = disk_bytes(db) if db else None

    def snapshot() -> dict[str, Any]:
        return {"server": stats.cpu_s(), "client": resource.getrusage(resource.RUSAGE_SELF),
                "machine": machine_busy(), "at": time.perf_counter()}

    first = snapshot()
    started = first["at"]
    measure_from = started + args.warmup
    job = Job(bodies.bodies, deadline=measure_from + args.duration)
    window: dict[str, Any] = {}
    done = threading.Event()

    def mark() -> None:  # counters at the start of the measured window
        if done.wait(max(measure_from - time.perf_counter(), 0)):
            return
        window.update(snapshot())
        if args.profile and pid is not None:
            window["profiler"] = start_profiler(args.profile, pid, args.duration)

    marker = threading.Thread(target=mark, daemon=True)
    marker.start()
    exchanges = SENDERS[args.client](host, port, job, args.concurrency)
    done.set()
    marker.join()
    last = snapshot()
    finished = last["at"]
    if "at" not in window:
        print("the bodies ran out during the warm-up: measuring from the first request", file=sys.stderr)
        window.update(first)

    status, body = post((host, port), "/api/v1/admin/flush")
    if status != 200:
        print(f"flush answered {status}: {body[:200]!r}", file=sys.stderr)
    peak_kb = stats.memory_kb("VmHWM")

    profiler = window.get("profiler")
    if profiler is not None:
        try:
            _, err = profiler.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            profiler.kill()
            _, err = profiler.communicate()
        if profiler.returncode:
            print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)

    measured_s = max(finished - window["at"], 1e-9)
    server_cpu_end, client_end, machine_end = last["server"], last["client"], last["machine"]
    in_window = [x for x in exchanges if x[0] >= window["at"]]
    ok_window = [x for x in in_window if 200 <= x[2] < 300]
    spans_ok = sum(bodies.spans[x[3]] for x in ok_window)
    latencies = sorted(x[1] for x in ok_window)
    acknowledged = {x[3] for x in exchanges if 200 <= x[2] < 300}
    ack_spans = sum(bodies.spans[i] for i in acknowledged)
    client_cpu = (client_end.ru_utime + client_end.ru_stime
                  - window["client"].ru_utime - window["client"].ru_stime)
    busy = machine_end[0] - window["machine"][0]
    total = machine_end[1] - window["machine"][1]
    server_cpu = (server_cpu_end - window["server"]
                  if server_cpu_end is not None and window["server"] is not None else None)
    figures.update(
        measured_s=measured_s,
        requests=len(exchanges),
        status_2xx=sum(1 for x in exchanges if 200 <= x[2] < 300),
        status_429=sum(1 for x in exchanges if x[2] == 429),
        status_other=sum(1 for x in exchanges if not (200 <= x[2] < 300 or x[2] == 429)),
        requests_per_s=len(ok_window) / measured_s,
        spans_per_s=spans_ok / measured_s,
        offered_spans_per_s=sum(bodies.spans[x[3]] for x in in_window) / measured_s,
        p50_ms=_ms(percentile(latencies, 50)),
        p99_ms=_ms(percentile(latencies, 99)),
        max_ms=_ms(latencies[-1] if latencies else None),
        server_peak_rss_mb=peak_kb / 1024 if peak_kb is not None else None,
        server_cpu_pct=100 * server_cpu / measured_s if server_cpu is not None else None,
        server_cpu_us_per_span=1e6 * server_cpu / spans_ok if server_cpu is not None and spans_ok else None,
        client_cpu_pct=100 * client_cpu / measured_s,
        machine_busy_pct=100 * busy / total if total else None,
        bodies_exhausted_after_s=(job.exhausted_at - started) if job.exhausted_at is not None else None,
        acknowledged_spans=ack_spans,
        acknowledged_sessions=len(acknowledged),
    )
    if db is None or before is None or disk_before is None:
        figures.update(lost_spans=None, lost_sessions=None, stored_spans=None, stored_sessions=None,
                       disk_bytes_per_span=None, disk_mb=None)
        return
    after = store_counts(db)
    stored_spans, stored_sessions = after[0] - before[0], after[1] - before[1]
    disk_after = disk_bytes(db)
    figures.update(
        stored_spans=stored_spans,
        stored_sessions=stored_sessions,
        lost_spans=max(ack_spans - stored_spans, 0),
        lost_sessions=max(len(acknowledged) - stored_sessions, 0),
        disk_mb=disk_after / 1e6,
        disk_bytes_per_span=(disk_after - disk_before) / stored_spans if stored_spans else None,
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures = run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(summarize(figures))
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    lost = figures.get("lost_spans") or figures.get("lost_sessions")
    extra = (figures.get("stored_spans") or 0) - figures["acknowledged_spans"]
    if extra > 0:
        print(f"note: {extra} more spans stored than acknowledged (requests that failed in transport may have "
              "been committed)", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
