#!/usr/bin/env python
"""Steady-state ingest: realistic payloads, evaluations running, a store that keeps growing.

``bench/ingest.py`` measures a fresh store that never completes a session. This
one measures what production sees: sessions of several turns whose spans carry
both the OpenTelemetry GenAI and the OpenInference attributes (about
``--span-bytes`` of protobuf each), ``--sessions-per-request`` sessions per
request, and event time that advances with every request, so that sessions
complete, are evaluated (rules and offline faithfulness on every session, a
loopback LLM judge on 5%) and lose their payloads to retention while ingest
goes on. The run lasts until both ``--duration`` seconds have passed and
``--spans`` spans were accepted (capped by ``--max-duration``).

Request bodies are patched copies of a few pre-encoded templates: new trace
ids, session ids and timestamps are written at byte offsets found once, so the
load generator costs a few percent of a core and never repeats an id. Event
time starts ``--event-days`` before the wall clock and advances by
``--event-step`` seconds per request, so the run covers that many simulated
days (retention's ``payload_ttl``, ``sampled`` and ``flagged`` periods play out
as they would in production).

Printed: accepted spans/s per minute and its ratio to this machine's
single-core limit measured on the same bodies in the same run (decode + walk +
``sqlite3`` insert, as ``bench/ingest.py`` defines it), the evaluation lag per
minute (the oldest queued completed session: event time behind the watermark
and wall time queued), request latency p50/p99, peak RSS of every process
(server, decode workers, evaluation processes, judge, this client), bytes on disk per stored span and
per retained session, the load average before and after.

    .venv/bin/python bench/steady.py                                  # temp SQLite, >= 5 min and 1M spans
    .venv/bin/python bench/steady.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/steady.py --duration 60 --spans 0          # a short look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ingest import (  # the benches make and measure a store alike
    Database,
    ProcStats,
    _read_response,
    disk_bytes,
    machine_limit,
    percentile,
    prepare_database,
    start_profiler,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from sqlalchemy import text

from agentwatch.testing import ServerProcess, child_processes, filler_text, kv

TRACES_PATH = "/v1/traces"
CONTENT_TYPE = "application/x-protobuf"
GOAL_RATIO = 0.5
#: Template marker time: every timestamp of a template is this plus a unique offset.
_T_MARK = 1_500_000_000 * 10**9
_WORDS = ("order", "refund", "shipping", "delivery", "account", "invoice", "customer", "policy", "return",
          "package", "tracking", "warehouse", "payment", "card", "address", "window", "days", "status",
          "support", "request", "the", "a", "was", "is", "for", "with", "and", "of", "to", "on", "your")


def _text(rng: random.Random, nbytes: int) -> str:
    return filler_text(rng, nbytes, _WORDS)


# -- one session: 3 turns of retrieval, planner chat, 2 tool calls, responder chat, guardrail ------


@dataclass
class _Builder:
    rng: random.Random
    trace_id: bytes
    session_id: str
    text_bytes: int
    tool_error_rate: float
    spans: list[Span] = field(default_factory=list)
    offset_ns: int = 0

    def new_id(self) -> bytes:
        return (self.rng.getrandbits(64) | 1).to_bytes(8, "big")

    def span(self, name: str, parent: bytes, dur_ms: int, attrs: dict[str, Any], kind: int = Span.SPAN_KIND_INTERNAL,
             error: str | None = None) -> Span:
        # Offsets unique to the nanosecond so each timestamp is found once in the encoded body.
        start = self.offset_ns + self.rng.randrange(1, 999)
        span = Span(trace_id=self.trace_id, span_id=self.new_id(), parent_span_id=parent, name=name, kind=kind,
                    start_time_unix_nano=_T_MARK + start, end_time_unix_nano=_T_MARK + start + dur_ms * 10**6
                    + self.rng.randrange(1, 999))
        span.attributes.extend(kv(k, v) for k, v in attrs.items())
        if error:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
        self.spans.append(span)
        self.offset_ns = span.end_time_unix_nano - _T_MARK + 2 * 10**6
        return span


def _chat(b: _Builder, parent: bytes, role: str, user_text: str, answer: str, tool_calls: list[dict[str, Any]],
          tokens: tuple[int, int]) -> None:
    output: list[dict[str, Any]] = [{"role": "assistant", "parts": (
        [{"type": "tool_call", "id": c["id"], "name": c["name"], "arguments": c["arguments"]} for c in tool_calls]
        or [{"type": "text", "content": answer}])}]
    inputs = [{"role": "system", "parts": [{"type": "text", "content": f"You are the {role} of a support agent."}]},
              {"role": "user", "parts": [{"type": "text", "content": user_text}]}]
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": tokens[0], "gen_ai.usage.output_tokens": tokens[1],
        "gen_ai.input.messages": json.dumps(inputs), "gen_ai.output.messages": json.dumps(output),
        "gen_ai.response.finish_reasons": ["tool_calls" if tool_calls else "stop"],
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
        "llm.token_count.prompt": tokens[0], "llm.token_count.completion": tokens[1],
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": f"You are the {role} of a support agent.",
        "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": user_text,
        "llm.output_messages.0.message.role": "assistant",
        "input.value": json.dumps({"messages": [{"role": "user", "content": user_text}]}),
        "input.mime_type": "application/json",
        "output.value": answer if not tool_calls else json.dumps(tool_calls), "output.mime_type": "text/plain",
    }
    if not tool_calls:
        attrs["llm.output_messages.0.message.content"] = answer
    b.span(f"chat {role}", parent, b.rng.randint(300, 1500), attrs, kind=Span.SPAN_KIND_CLIENT)


def session_spans(rng: random.Random, trace_id: bytes, session_id: str, *, turns: int, text_bytes: int,
                  tool_error_rate: float, user: str) -> list[Span]:
    """One session in one trace: an agent root and per turn six spans (``1 + 6 * turns`` spans)."""
    b = _Builder(rng, trace_id, session_id, text_bytes, tool_error_rate)
    root_id = b.new_id()
    b.offset_ns = 10**6
    for turn in range(turns):
        order = f"A-{rng.randint(1000, 9999)}"
        amount = f"{rng.randint(10, 400)}.{rng.randint(10, 99)}"
        question = f"Where is my order {order}? " + _text(rng, text_bytes // 3)
        doc = f"Refunds up to ${amount} are paid within 14 days. " + _text(rng, text_bytes // 2)
        b.span("retrieve policy", root_id, rng.randint(20, 120), {
            "gen_ai.operation.name": "retrieval", "openinference.span.kind": "RETRIEVER",
            "gen_ai.data_source.id": "policies", "input.value": question,
            "retrieval.documents.0.document.id": f"doc-{rng.randint(1, 500)}",
            "retrieval.documents.0.document.content": doc,
            "retrieval.documents.0.document.score": round(rng.random(), 3),
        })
        calls = [{"id": f"call_{turn}_{i}", "name": name, "arguments": {"order_id": order}}
                 for i, name in enumerate(("lookup_order", "check_refund"))]
        _chat(b, root_id, "planner", question, "", calls, (rng.randint(400, 1200), rng.randint(30, 120)))
        results = []
        for call in calls:
            failed = rng.random() < tool_error_rate
            result = {"order_id": order, "status": "shipped", "refundable": amount,
                      "note": _text(rng, text_bytes // 3)}
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call["name"],
                "gen_ai.tool.call.id": call["id"], "gen_ai.tool.call.arguments": json.dumps(call["arguments"]),
                "openinference.span.kind": "TOOL", "tool.name": call["name"],
                "input.value": json.dumps(call["arguments"]), "input.mime_type": "application/json",
            }
            if failed:
                attrs["error.type"] = "timeout"
            else:
                attrs["gen_ai.tool.call.result"] = json.dumps(result)
                attrs["output.value"] = json.dumps(result)
                attrs["output.mime_type"] = "application/json"
                results.append(result)
            b.span(f"execute_tool {call['name']}", root_id, rng.randint(20, 400), attrs,
                   error="order service timed out" if failed else None)
        answer = (f"Your order {order} has shipped; a refund of ${amount} is possible. "
                  + _text(rng, text_bytes // 3))
        _chat(b, root_id, "responder", question, answer, [], (rng.randint(600, 1600), rng.randint(80, 300)))
        b.span("apply_guardrail pii", root_id, 5, {
            "gen_ai.operation.name": "apply_guardrail", "gen_ai.guardrail.component.name": "pii",
            "gen_ai.guardrail.result.type": "allow", "openinference.span.kind": "GUARDRAIL",
            "input.value": answer, "output.value": "allow"})
    root = Span(trace_id=trace_id, span_id=root_id, name="invoke_agent support-agent", kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=_T_MARK + 10**6 - 1 - rng.randrange(0, 999), end_time_unix_nano=_T_MARK
                + b.offset_ns + rng.randrange(1, 999))
    root.attributes.extend(kv(k, v) for k, v in {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-agent",
        "gen_ai.conversation.id": session_id, "session.id": session_id, "openinference.span.kind": "AGENT",
        "agentwatch.intent": rng.choice(("refund", "order_status", "plan_change")), "user.id": user,
    }.items())
    return [*b.spans, root]


# -- templates: encoded once, patched per request --------------------------------------------


@dataclass
class Template:
    body: bytes
    spans: int
    #: (position, offset from the request's base time) of every start/end timestamp.
    times: list[tuple[int, int]]
    #: Per session: the positions of its 16-byte trace id and of its 24-character session id.
    trace_positions: list[list[int]]
    session_positions: list[list[int]]


def _positions(body: bytes, needle: bytes) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(needle), body)]


def make_template(rng: random.Random, *, sessions: int, turns: int, span_bytes: int, tool_error_rate: float,
                  step_ns: int) -> Template:
    # About 70% of a span's bytes are the texts it carries, repeated once per convention.
    text_bytes = max(40, int(span_bytes * 0.75))
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "support-agent"), kv("service.version", "1.4.0"),
                                   kv("telemetry.sdk.language", "python"), kv("deployment.environment", "prod")])
    ss = rs.scope_spans.add()
    ss.scope.name = "bench.steady"
    shifts = []
    markers = []
    for j in range(sessions):
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        session_id = "".join(rng.choice("ghijklmnopqrstuvwxyz") for _ in range(24))
        spans = session_spans(rng, trace_id, session_id, turns=turns, text_bytes=text_bytes,
                              tool_error_rate=tool_error_rate, user=f"user-{rng.randint(1, 5000)}")
        shift = j * step_ns // sessions
        for span in spans:
            span.start_time_unix_nano += shift
            span.end_time_unix_nano += shift
        shifts.append(shift)
        markers.append((trace_id, session_id))
        ss.spans.extend(spans)
    body = request.SerializeToString()
    times = []
    for span in ss.spans:
        for tag, value in ((b"\x39", span.start_time_unix_nano), (b"\x41", span.end_time_unix_nano)):
            found = _positions(body, tag + struct.pack("<Q", value))
            if len(found) != 1:
                raise RuntimeError(f"timestamp {value} found {len(found)} times in the template")
            times.append((found[0] + 1, value - _T_MARK))
    trace_positions = [_positions(body, t) for t, _ in markers]
    session_positions = [_positions(body, s.encode()) for _, s in markers]
    return Template(body, len(ss.spans), times, trace_positions, session_positions)


class Bodies:
    """Request bodies, each with fresh ids and the event time of its index."""

    def __init__(self, templates: list[Template], start_ns: int, step_ns: int, run: int) -> None:
        self.templates = templates
        self.start_ns = start_ns
        self.step_ns = step_ns
        self.run = run

    def body(self, index: int) -> tuple[bytes, int]:
        template = self.templates[index % len(self.templates)]
        buf = bytearray(template.body)
        base = self.start_ns + index * self.step_ns
        pack = struct.pack_into
        for pos, offset in template.times:
            pack("<Q", buf, pos, base + offset)
        for j, positions in enumerate(template.trace_positions):
            trace_id = struct.pack(">IIII", self.run, index >> 16, index & 0xFFFF, j + 1)
            for pos in positions:
                buf[pos : pos + 16] = trace_id
        for j, positions in enumerate(template.session_positions):
            session_id = f"s{self.run:07x}{index:011x}{j:05x}".encode()
            for pos in positions:
                buf[pos : pos + 24] = session_id
        return bytes(buf), template.spans


# -- the catalogue and the judge ---------------------------------------------------------------


def config_text(judge_url: str, judge_rate: float) -> str:
    return yaml.safe_dump({
        "sampling": {"default_rate": 0.05},
        "evaluators": [
            {"name": "tool_use", "kind": "rule", "rule": "tool_error", "threshold": 1.0},
            {"name": "budget", "kind": "rule", "rule": "budget",
             "params": {"max_latency_ms": 120000, "max_turns": 6}, "threshold": 1.0},
            {"name": "no_secrets", "kind": "rule", "rule": "answer_pattern",
             "params": {"forbidden": [r"(?i)api[_ ]key", r"\b\d{16}\b"]}, "threshold": 1.0},
            {"name": "faithfulness", "kind": "faithfulness", "threshold": 0.8},
            {"name": "helpfulness", "kind": "llm", "sample_rate": judge_rate, "threshold": 0.5,
             "params": {"base_url": judge_url, "model": "gpt-4o-mini", "api_key_env": "BENCH_JUDGE_KEY",
                        "max_concurrency": 100, "timeout_s": 30}},
        ],
    }, sort_keys=False)


def _serve_judge(delay: float, port_queue: Any, stop: Any) -> None:
    from agentwatch.testing.judge import FakeJudgeServer, Reply

    with FakeJudgeServer(default=Reply.verdict(0.8, "resolved", delay_s=delay)) as server:
        port_queue.put((server.base_url, os.getpid()))
        stop.wait()


# -- the load -----------------------------------------------------------------------------------


@dataclass
class Load:
    bodies: Bodies
    deadline: float
    min_spans: int
    max_deadline: float
    accepted_spans: int = 0
    next_index: int = 0
    #: (answered at, seconds, status, spans)
    exchanges: list[tuple[float, float, int, int]] = field(default_factory=list)

    def take(self) -> int | None:
        now = time.perf_counter()
        if now >= self.max_deadline or (now >= self.deadline and self.accepted_spans >= self.min_spans):
            return None
        index = self.next_index
        self.next_index += 1
        return index


async def _sender(host: str, port: int, load: Load) -> None:
    prefix = (f"POST {TRACES_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {CONTENT_TYPE}\r\n"
              "Content-Length: ").encode("ascii")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (index := load.take()) is not None:
            body, spans = load.bodies.body(index)
            message = prefix + str(len(body)).encode("ascii") + b"\r\n\r\n" + body
            for _attempt in range(20):
                started = time.perf_counter()
                try:
                    writer.write(message)
                    status, retry_after, _ = await asyncio.wait_for(_read_response(reader), 120)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    status, retry_after = 0, None
                done = time.perf_counter()
                load.exchanges.append((done, done - started, status, spans))
                if 200 <= status < 300:
                    load.accepted_spans += spans
                    break
                if status not in (0, 429, 503):
                    print(f"request {index} answered {status}", file=sys.stderr)
                    break
                await asyncio.sleep(min(float(retry_after or 1), 1.0))
    finally:
        writer.close()


def send(host: str, port: int, load: Load, concurrency: int) -> None:
    async def main() -> None:
        await asyncio.gather(*(_sender(host, port, load) for _ in range(concurrency)))

    asyncio.run(main())


# -- sampling the server while it runs ---------------------------------------------------------


#: What the server's children are called here: its evaluation processes name themselves aw-evaluate-N.
_SERVER_CHILDREN = ("decode worker", "evaluation process", "server child")


def _role(pid: int, name: str) -> str:
    if name.startswith("aw-evaluate"):
        return "evaluation process"
    try:
        if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return "server child"
    except OSError:
        return "server child"
    return "decode worker"


@dataclass
class Sample:
    at: float
    accepted_spans: int
    queued_jobs: int
    lag_event_s: float | None
    lag_wall_s: float | None
    stored_sessions: int


def sample_lag(db: Database, idle_ns: int) -> tuple[int, float | None, float | None, int]:
    """Queued completion jobs, how far the oldest is behind (event s, wall s), sessions stored."""
    engine = db.engine()
    try:
        with engine.connect() as conn:
            queued = conn.execute(text("SELECT count(*) FROM eval_jobs WHERE reason = 'complete'")).scalar_one()
            oldest = conn.execute(text(
                "SELECT j.created_at, s.end_ns FROM eval_jobs j JOIN sessions s ON s.project_id = j.project_id "
                "AND s.session_id = j.session_id WHERE j.reason = 'complete' ORDER BY j.id LIMIT 1")).first()
            watermark = conn.execute(text("SELECT max(watermark_ns) FROM watermarks")).scalar()
            sessions = conn.execute(text("SELECT max(rowid) FROM sessions" if db.dialect == "sqlite"
                                         else "SELECT n_live_tup FROM pg_stat_user_tables "
                                              "WHERE relname = 'sessions'")).scalar() or 0
    finally:
        engine.dispose()
    if oldest is None:
        return int(queued), 0.0, 0.0, int(sessions)
    created, end_ns = oldest
    if isinstance(created, str):
        from datetime import datetime, timezone

        created = datetime.fromisoformat(created)
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
    wall = time.time() - created.timestamp()
    event = (int(watermark) - idle_ns - int(end_ns)) / 1e9 if watermark else None
    return int(queued), event, max(wall, 0.0), int(sessions)


def retained(db: Database) -> dict[str, int]:
    engine = db.engine()
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT count(*), sum(CASE WHEN payload_dropped_at IS NULL THEN 1 ELSE 0 END), "
                "sum(CASE WHEN evaluated_at IS NOT NULL THEN 1 ELSE 0 END), "
                "sum(CASE WHEN flagged THEN 1 ELSE 0 END), sum(CASE WHEN sampled THEN 1 ELSE 0 END), "
                "sum(spans) FROM sessions")).one()
            scores = conn.execute(text("SELECT count(*) FROM scores")).scalar_one()
            stored_spans = conn.execute(text("SELECT count(*) FROM spans")).scalar_one()
    finally:
        engine.dispose()
    return {"sessions": int(row[0]), "with_payload": int(row[1] or 0), "evaluated": int(row[2] or 0),
            "flagged": int(row[3] or 0), "sampled": int(row[4] or 0), "session_spans": int(row[5] or 0),
            "scores": int(scores), "stored_spans": int(stored_spans)}


def live_bytes(db: Database, file_bytes: int) -> int:
    """Bytes in use: SQLite's pages less its free list (free pages are reused before the file grows);
    PostgreSQL's database size."""
    if db.dialect != "sqlite":
        return file_bytes
    engine = db.engine()
    try:
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    finally:
        engine.dispose()
    return int((pages - free) * size)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the run ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None,
                        help="sqlite:///path.db, or postgresql://... (a fresh aw_bench_<random> database is made "
                             "through it and dropped afterwards). Default: a temporary SQLite file")
    parser.add_argument("--duration", type=float, default=300, help="least seconds of load (default %(default)s)")
    parser.add_argument("--spans", type=int, default=1_000_000,
                        help="least spans accepted before the load stops (default %(default)s)")
    parser.add_argument("--max-duration", type=float, default=900, help="seconds after which the load stops "
                        "whatever was accepted (default %(default)s)")
    parser.add_argument("--span-bytes", type=int, default=2500, help="about this much protobuf per span "
                        "(default %(default)s)")
    parser.add_argument("--turns", type=int, default=3, help="turns per session: 1 + 6 * turns spans "
                        "(default %(default)s)")
    parser.add_argument("--sessions-per-request", type=int, default=20, help="(default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="connections sending at once (default %(default)s)")
    parser.add_argument("--event-step", type=float, default=230.0,
                        help="event seconds each request advances the clock by (default %(default)s: 1M spans of "
                             "the default shape cover about 7 days)")
    parser.add_argument("--event-days", type=float, default=7.5,
                        help="event time starts this many days before the wall clock (default %(default)s)")
    parser.add_argument("--judge-rate", type=float, default=0.05, help="sessions the LLM judge scores "
                        "(default %(default)s)")
    parser.add_argument("--judge-delay", type=float, default=0.3, help="seconds the judge takes (default %(default)s)")
    parser.add_argument("--tool-error-rate", type=float, default=0.005, help="(default %(default)s)")
    parser.add_argument("--templates", type=int, default=8, help="distinct pre-encoded bodies (default %(default)s)")
    parser.add_argument("--limit-bodies", type=int, default=40,
                        help="bodies the single-core limit is measured on (default %(default)s)")
    parser.add_argument("--config-extra", default="", help="YAML appended to the generated config")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="py-spy the server (decode workers included) for --profile-seconds from a minute into "
                             "the load: FILE.svg, FILE.json or collapsed stacks")
    parser.add_argument("--profile-seconds", type=float, default=60)
    parser.add_argument("--drain-timeout", type=float, default=120,
                        help="seconds to wait, after the load, for the evaluation queue to empty (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the store and work directory")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    step_ns = int(args.event_step * 1e9)
    started_gen = time.perf_counter()
    templates = [make_template(rng, sessions=args.sessions_per_request, turns=args.turns,
                               span_bytes=args.span_bytes, tool_error_rate=args.tool_error_rate, step_ns=step_ns)
                 for _ in range(args.templates)]
    start_ns = time.time_ns() - int(args.event_days * 86400e9)
    bodies = Bodies(templates, start_ns, step_ns, run=rng.getrandbits(28))
    figures: dict[str, Any] = {
        "spans_per_request": templates[0].spans,
        "bytes_per_span": sum(len(t.body) for t in templates) / sum(t.spans for t in templates),
        "request_bytes": sum(len(t.body) for t in templates) / len(templates),
        "generate_s": time.perf_counter() - started_gen, "concurrency": args.concurrency,
        "load_before": _loadavg(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="aw-steady-"))
    limit_bodies = [bodies.body(i)[0] for i in range(args.limit_bodies)]
    limit = machine_limit(limit_bodies, workdir, repeats=2)
    del limit_bodies
    figures.update(limit_walk=limit.walk_spans_per_s, limit_insert=limit.insert_rows_per_s,
                   limit=limit.spans_per_s)

    context = multiprocessing.get_context("spawn")
    port_queue, stop = context.Queue(), context.Event()
    judge = context.Process(target=_serve_judge, args=(args.judge_delay, port_queue, stop), daemon=True)
    judge.start()
    judge_url, judge_pid = port_queue.get(timeout=30)
    config = workdir / "agentwatch.yaml"
    config.write_text(config_text(judge_url, args.judge_rate) + "\n" + args.config_extra)
    db = prepare_database(args.database_url, workdir, fresh_pg=True)
    figures["store"] = db.label
    server = ServerProcess(db.url, config=config, grpc=False, cwd=workdir, extra_args=["--log-level", "warning"],
                           env={"BENCH_JUDGE_KEY": "bench"})
    try:
        server.start(timeout=60)
        assert server.proc is not None
        figures.update(_drive(args, server, db, bodies, judge_pid))
    finally:
        server.stop()
        stop.set()
        judge.join(timeout=10)
        if judge.is_alive():
            judge.kill()
        figures["load_after"] = _loadavg()
        if not args.keep:
            db.drop()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir} and {db.url}", file=sys.stderr)
    return figures


def _drive(args: argparse.Namespace, server: ServerProcess, db: Database, bodies: Bodies,
           judge_pid: int) -> dict[str, Any]:
    assert server.proc is not None
    pid = server.proc.pid
    idle_ns = 300 * 10**9
    now = time.perf_counter()
    load = Load(bodies, deadline=now + args.duration, min_spans=args.spans, max_deadline=now + args.max_duration)
    samples: list[Sample] = []
    peaks: dict[str, int] = {}
    #: CPU seconds of each process at its first and last sample.
    cpu: dict[str, list[float]] = {}
    done = threading.Event()

    def watch() -> None:
        stats = {"judge": ProcStats(judge_pid), "client": ProcStats(os.getpid())}
        while not done.wait(5.0):
            for child, name in child_processes(pid):
                stats.setdefault(f"{_role(child, name)} {child}", ProcStats(child))
            stats["server"] = ProcStats(pid)
            for name, st in stats.items():
                kb = st.memory_kb("VmHWM")
                if kb is not None:
                    peaks[name] = max(peaks.get(name, 0), kb)
                used = st.cpu_s()
                if used is not None:
                    cpu.setdefault(name, [used, used])[1] = used
            try:
                queued, lag_event, lag_wall, sessions = sample_lag(db, idle_ns)
            except Exception as exc:  # noqa: BLE001 - a busy store only costs one sample
                print(f"sample failed: {exc}", file=sys.stderr)
                continue
            samples.append(Sample(time.perf_counter(), load.accepted_spans, queued, lag_event, lag_wall, sessions))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    profiler: list[Any] = []
    if args.profile:
        def profile() -> None:
            if not done.wait(60):
                profiler.append(start_profiler(args.profile, pid, args.profile_seconds))

        threading.Thread(target=profile, daemon=True).start()
    host, port = "127.0.0.1", server.port
    t0 = time.perf_counter()
    send(host, port, load, args.concurrency)
    t1 = time.perf_counter()
    done.set()
    watcher.join()
    for proc in profiler:
        if proc is not None:
            proc.wait(timeout=args.profile_seconds + 30)
    # The backlog left when the load stopped: how long the evaluation takes to catch up.
    backlog_started = time.perf_counter()
    drained_s = None
    while time.perf_counter() - backlog_started < args.drain_timeout:
        queued, _, _, _ = sample_lag(db, idle_ns)
        if queued == 0:
            drained_s = time.perf_counter() - backlog_started
            break
        time.sleep(1)
    figures: dict[str, Any] = {"load_s": t1 - t0, "accepted_spans": load.accepted_spans,
                               "requests": len(load.exchanges), "drain_after_load_s": drained_s}
    ok = sorted(x[1] for x in load.exchanges if 200 <= x[2] < 300)
    figures.update(p50_ms=1000 * (percentile(ok, 50) or 0), p99_ms=1000 * (percentile(ok, 99) or 0),
                   max_ms=1000 * (ok[-1] if ok else 0),
                   status_429=sum(1 for x in load.exchanges if x[2] == 429),
                   status_other=sum(1 for x in load.exchanges if not (200 <= x[2] < 300 or x[2] == 429)))
    # Accepted spans per wall minute from the answers' own times.
    minutes: dict[int, int] = {}
    for at, _, status, spans in load.exchanges:
        if 200 <= status < 300:
            minutes[int((at - t0) // 60)] = minutes.get(int((at - t0) // 60), 0) + spans
    full = int((t1 - t0) // 60)
    per_minute = []
    for minute in sorted(minutes):
        seconds = 60.0 if minute < full else (t1 - t0) - 60 * full
        in_minute = [s for s in samples if minute * 60 <= s.at - t0 < (minute + 1) * 60]
        lag_wall = max((s.lag_wall_s or 0 for s in in_minute), default=None)
        lag_event = max((s.lag_event_s or 0 for s in in_minute), default=None)
        per_minute.append({"minute": minute + 1, "seconds": round(seconds, 1), "spans_per_s": minutes[minute] / seconds,
                           "max_lag_wall_s": lag_wall, "max_lag_event_s": lag_event,
                           "queued_at_end": in_minute[-1].queued_jobs if in_minute else None,
                           "sessions": in_minute[-1].stored_sessions if in_minute else None})
    figures["per_minute"] = per_minute
    figures["peak_rss_mb"] = {k: round(v / 1024, 1) for k, v in sorted(peaks.items())}
    figures["cpu_s"] = {k: round(v[1] - v[0], 1) for k, v in sorted(cpu.items())}
    served = sum(v for k, v in figures["cpu_s"].items() if k == "server" or k.startswith(_SERVER_CHILDREN))
    figures["server_cpu_us_per_span"] = 1e6 * served / load.accepted_spans if load.accepted_spans else None
    kept = retained(db)
    figures["store_counts"] = kept
    size = disk_bytes(db)
    figures["disk_bytes"] = size
    figures["live_bytes"] = size = live_bytes(db, size)
    figures["disk_bytes_per_span"] = size / kept["stored_spans"] if kept["stored_spans"] else None
    retained_sessions = kept["with_payload"]
    figures["disk_bytes_per_retained_session"] = size / retained_sessions if retained_sessions else None
    figures["event_days_covered"] = load.next_index * bodies.step_ns / 86400e9
    return figures


def summarize(f: dict[str, Any]) -> str:
    lines = [
        f"agentwatch steady-state benchmark: {f['store']}, {f['concurrency']} connections, "
        f"{f['spans_per_request']} spans and {f['request_bytes'] / 1e6:.2f} MB per request "
        f"({f['bytes_per_span']:,.0f} bytes of protobuf per span)",
        f"load average: {f['load_before']} before, {f['load_after']} after ({os.cpu_count()} cores)",
        f"limit:        {f['limit']:,.0f} spans/s on one core (walk {f['limit_walk']:,.0f}, "
        f"insert {f['limit_insert']:,.0f}), measured on these bodies in this run",
        f"load:         {f['accepted_spans']:,} spans accepted in {f['load_s']:.0f} s = "
        f"{f['accepted_spans'] / f['load_s']:,.0f} spans/s = {f['accepted_spans'] / f['load_s'] / f['limit']:.3f} "
        f"of the limit (goal {GOAL_RATIO}); {f['event_days_covered']:.1f} event days",
        f"requests:     {f['requests']:,} ({f['status_429']} answered 429, {f['status_other']} other); "
        f"latency p50 {f['p50_ms']:,.0f} ms, p99 {f['p99_ms']:,.0f} ms, max {f['max_ms']:,.0f} ms",
        "per minute:   minute  spans/s  ratio  lag(wall s)  lag(event s)  queued  sessions",
    ]
    for row in f["per_minute"]:
        lines.append(f"              {row['minute']:>6}  {row['spans_per_s']:>7,.0f}  "
                     f"{row['spans_per_s'] / f['limit']:>5.3f}  {_n(row['max_lag_wall_s'], '>11.1f')}  "
                     f"{_n(row['max_lag_event_s'], '>12.0f')}  {_n(row['queued_at_end'], '>6')}  "
                     f"{_n(row['sessions'], '>8,')}")
    rates = [r["spans_per_s"] for r in f["per_minute"] if r["seconds"] >= 59]
    if len(rates) >= 2:
        lines.append(f"trend:        last full minute / first = {rates[-1] / rates[0]:.2f} "
                     f"(min {min(rates):,.0f}, max {max(rates):,.0f} spans/s)")
    lines.append(f"catch-up:     the evaluation queue emptied {_n(f['drain_after_load_s'], '.1f')} s after the load "
                 "stopped")
    lines.append("peak RSS:     " + ", ".join(f"{k} {v:,.0f} MB" for k, v in f["peak_rss_mb"].items()))
    lines.append("CPU:          " + ", ".join(f"{k} {v:,.0f} s" for k, v in f["cpu_s"].items())
                 + f" over the load; server and its children {_n(f['server_cpu_us_per_span'], ',.0f')} us per "
                 "accepted span (ingest and evaluation together)")
    c = f["store_counts"]
    lines.append(f"store:        {c['stored_spans']:,} spans, {c['sessions']:,} sessions "
                 f"({c['evaluated']:,} evaluated, "
                 f"{c['flagged']:,} flagged, {c['sampled']:,} sampled, {c['with_payload']:,} with payloads), "
                 f"{c['scores']:,} scores")
    lines.append(f"disk:         {f['disk_bytes'] / 1e6:,.0f} MB on disk, {f['live_bytes'] / 1e6:,.0f} MB in use = "
                 f"{_n(f['disk_bytes_per_span'], ',.0f')} bytes per stored span, "
                 f"{_n(f['disk_bytes_per_retained_session'], ',.0f')} per session with payloads")
    return "\n".join(lines)


def _n(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = run(args)
    print(summarize(figures))
    if args.json:
        print(json.dumps(figures, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
