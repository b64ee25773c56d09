"""Overload: more senders than the server can take, for a minute; nothing acknowledged is lost.

Pre-encoded OTLP requests (agent sessions, one trace each) go from many
concurrent senders to a real server whose in-flight budget and memory limit
are small. The senders share the machine's two cores with the server, so
pressure shows as 429/503 answers: the target is at least a third of the
answers. A refused sender pauses briefly (the ``Retry-After`` it got, capped
at 50 ms, so the pressure stays on), puts the refused body back in the pool to
be sent again, as a client would, and sends its next one. Printed:

* offered and accepted spans/s, and the answers by status;
* the server's peak RSS (its own process, and with its decode workers)
  against the configured memory limit;
* the spans lost: spans of requests answered 200 that are not in the store (must be 0).

    .venv/bin/python bench/overload.py [--duration 60] [--senders 64] [--spans 100]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from agentwatch.testing import ServerProcess, agent_session_request

T0 = 1_767_225_600 * 10**9


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


class Watch(threading.Thread):
    """Samples the server's RSS (alone, and with its children) every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_server = 0
        self.peak_total = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            own = rss_bytes(self.pid)
            total = own + sum(rss_bytes(c) for c in children(self.pid))
            self.peak_server = max(self.peak_server, own)
            self.peak_total = max(self.peak_total, total)


async def sender(port: int, bodies: collections.deque[tuple[bytes, str, int]], deadline: float,
                 stats: dict[str, int], accepted: list[tuple[str, int]]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline and bodies:
            body, trace_id, spans = bodies.popleft()
            head = (f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            retry_after = 0.0
            close = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "retry-after":
                    retry_after = float(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            stats["offered_spans"] += spans
            stats[str(status)] = stats.get(str(status), 0) + 1
            if status == 200:
                stats["accepted_spans"] += spans
                accepted.append((trace_id, spans))
            elif status in (429, 503):
                bodies.append((body, trace_id, spans))  # as a client would: sent again later
                await asyncio.sleep(min(retry_after, 0.05))
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def drive(port: int, bodies: list[tuple[bytes, str, int]], senders: int, duration: float
                ) -> tuple[dict[str, int], list[tuple[str, int]], float]:
    stats = {"offered_spans": 0, "accepted_spans": 0}
    accepted: list[tuple[str, int]] = []
    pool = collections.deque(bodies)
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(*(sender(port, pool, deadline, stats, accepted) for _ in range(senders)))
    return stats, accepted, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--tool-calls", type=int, default=33, help="per session; spans = 2 + 3 x tool calls")
    parser.add_argument("--bodies", type=int, default=0, help="pre-encoded bodies (default: enough for the run)")
    parser.add_argument("--inflight", type=int, default=1 << 20, help="ingest.max_inflight_bytes of the server")
    parser.add_argument("--memory-mb", type=int, default=400, help="ingest.memory_limit_mb of the server")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    spans_per_body = 2 + 3 * args.tool_calls
    # Refused bodies go back to the pool, so only what is accepted needs a body of its own.
    count = args.bodies or int(args.duration * 20_000 / spans_per_body)
    rng = random.Random(args.seed)
    print(f"encoding {count} sessions of {spans_per_body} spans...", flush=True)
    bodies = []
    for i in range(count):
        request, spec = agent_session_request(rng, start_ns=T0 + i * 10**8, tool_calls=args.tool_calls)
        bodies.append((request.SerializeToString(), spec.trace_id, len(spec.span_ids)))
    print(f"{len(bodies)} bodies, {sum(len(b[0]) for b in bodies) / len(bodies) / 1024:.0f} KiB each", flush=True)

    with tempfile.TemporaryDirectory(prefix="agentwatch-overload-") as folder:
        root = Path(folder)
        (root / "agentwatch.yaml").write_text(
            f"ingest: {{max_inflight_bytes: {args.inflight}, memory_limit_mb: {args.memory_mb}}}\n")
        db = root / "agentwatch.db"
        with ServerProcess(f"sqlite:///{db}", config=root / "agentwatch.yaml", grpc=False, cwd=root) as server:
            assert server.proc is not None
            watch = Watch(server.proc.pid)
            watch.start()
            stats, accepted, elapsed = asyncio.run(drive(server.port, bodies, args.senders, args.duration))
            watch.stop.set()
            watch.join()
            import httpx

            httpx.post(server.url + "/api/v1/admin/flush", timeout=600)
        conn = sqlite3.connect(db)
        stored = dict(conn.execute("SELECT trace_id, COUNT(*) FROM spans GROUP BY trace_id").fetchall())
        conn.close()
    lost = sum(max(0, spans - stored.get(trace_id, 0)) for trace_id, spans in accepted)
    answers = {k: v for k, v in stats.items() if k.isdigit()}
    total = sum(answers.values())
    refused = answers.get("429", 0) + answers.get("503", 0)
    print(f"{args.senders} senders for {elapsed:.0f}s; in-flight budget {args.inflight / 1024:.0f} KiB, "
          f"memory limit {args.memory_mb} MB")
    print(f"offered:  {stats['offered_spans'] / elapsed:,.0f} spans/s   accepted: "
          f"{stats['accepted_spans'] / elapsed:,.0f} spans/s")
    print(f"answers:  {total} ({', '.join(f'{k}: {v}' for k, v in sorted(answers.items()))}); "
          f"429/503 share {refused / max(total, 1):.1%} (target >= 33%)")
    print(f"rss:      server peak {watch.peak_server / 1e6:.0f} MB (limit {args.memory_mb} MB), "
          f"with decode workers {watch.peak_total / 1e6:.0f} MB")
    print(f"lost:     {lost} spans of {stats['accepted_spans']} acknowledged")
    ok = lost == 0 and refused / max(total, 1) >= 1 / 3 and watch.peak_server <= args.memory_mb * 1e6
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
