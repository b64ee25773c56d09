"""Backpressure: a full in-flight budget answers 429 with Retry-After, never loses an acknowledged span.

The server runs with ``ingest.max_inflight_bytes`` of 64 KiB, so two or
three 30-60 KB requests fill it. Raw senders see 429s, retry, and every
request answered 200 is in the store; the official OTLP/HTTP exporter,
which retries 429s by itself, gets every span in. Last, clients that give
up while their request waits for the commit (gRPC deadlines) must not stop
the writer.
"""

from __future__ import annotations

import gzip
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
import requests
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import create_engine, text

from agentwatch.testing import ServerProcess, agent_session_request

BUDGET = 64 * 1024
PROTOBUF = {"content-type": "application/x-protobuf"}


@dataclass
class Tiny:
    server: ServerProcess
    db_url: str

    def stored(self, trace_ids: set[str]) -> set[tuple[str, str]]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("select trace_id, span_id from spans"))
                return {(r[0], r[1]) for r in rows if r[0] in trace_ids}
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def tiny(module_db: tuple[str, Path]) -> Iterator[Tiny]:
    url, tmp = module_db
    config = tmp / "agentwatch.yaml"
    config.write_text(f"ingest: {{max_inflight_bytes: {BUDGET}}}\n")
    with ServerProcess(url, cwd=tmp, config=config) as server:
        yield Tiny(server, url)


def _still_serving(url: str) -> None:
    assert httpx.get(url + "/readyz", timeout=10).status_code == 200
    body, spec = agent_session_request(random.Random(99_999))
    assert httpx.post(url + "/v1/traces", content=body.SerializeToString(), headers=PROTOBUF,
                      timeout=10).status_code == 200
    spans = httpx.get(f"{url}/api/v1/traces/{spec.trace_id}", timeout=10).json()["spans"]
    assert sorted(s["span_id"] for s in spans) == sorted(spec.span_ids)


@dataclass
class Tally:
    ok: dict[str, list[str]] = field(default_factory=dict)  # trace id -> span ids, for each 200
    throttled: int = 0
    retry_after: set[str] = field(default_factory=set)
    status_codes: set[int] = field(default_factory=set)
    other: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def test_concurrent_senders_get_429_and_every_200_is_stored(tiny: Tiny) -> None:
    rng = random.Random(4)
    work = []
    for _ in range(16 * 8):
        request, spec = agent_session_request(rng, message_bytes=rng.randint(2000, 4500))
        body = request.SerializeToString()
        assert 28_000 < len(body) < 64_000
        work.append((body, spec))
    tally = Tally()

    def sender(items: list[tuple[bytes, object]]) -> None:
        pause = random.Random(len(items))
        with httpx.Client(timeout=30) as client:
            for body, spec in items:
                for _attempt in range(500):
                    response = client.post(tiny.server.url + "/v1/traces", content=body, headers=PROTOBUF)
                    with tally.lock:
                        if response.status_code == 200:
                            tally.ok[spec.trace_id] = spec.span_ids  # type: ignore[attr-defined]
                        elif response.status_code == 429:
                            tally.throttled += 1
                            tally.retry_after.add(response.headers.get("retry-after", "missing"))
                            status = status_pb2.Status.FromString(response.content)
                            tally.status_codes.add(status.code)
                        else:
                            tally.other.append((response.status_code, response.text[:200]))
                    if response.status_code != 429:
                        break
                    time.sleep(pause.uniform(0.002, 0.02))  # pacing only, not a synchronisation

    threads = [threading.Thread(target=sender, args=(work[i::16],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not tally.other, tally.other[:3]
    assert tally.throttled > 0, "16 senders of 30-60 KB against a 64 KiB budget were never throttled"
    assert tally.retry_after == {"1"}
    assert tally.status_codes == {code_pb2.RESOURCE_EXHAUSTED}
    assert len(tally.ok) == len(work), "some requests were never accepted"
    expected = {(trace_id, s) for trace_id, span_ids in tally.ok.items() for s in span_ids}
    assert tiny.stored(set(tally.ok)) == expected
    _still_serving(tiny.server.url)


class Holder:
    """An upload that reserves most of the budget and sends the rest of its body only when released."""

    def __init__(self, url: str, seed: int) -> None:
        request, self.spec = agent_session_request(random.Random(seed), message_bytes=4000)
        self.body = request.SerializeToString()
        assert BUDGET // 2 < len(self.body) < BUDGET
        self.url = url
        self.started = threading.Event()
        self.release = threading.Event()
        self.answer: list[int] = []
        self.thread = threading.Thread(target=self._send)
        self.thread.start()
        assert self.started.wait(10)

    def _body(self) -> Iterator[bytes]:
        yield self.body[:100]
        self.started.set()  # headers and the first bytes are on the wire
        self.release.wait(60)
        yield self.body[100:]

    def _send(self) -> None:
        response = httpx.post(self.url + "/v1/traces", content=self._body(),
                              headers={**PROTOBUF, "content-length": str(len(self.body))}, timeout=60)
        self.answer.append(response.status_code)

    def finish(self) -> int:
        self.release.set()
        self.thread.join(60)
        return self.answer[0]


def _hold_budget(tiny: Tiny, accepted: dict[str, list[str]]) -> Holder:
    """A holder that has reserved its bytes: a 40 KB probe sent after it is refused with 429.

    Probes answered 200 (the holder met one in flight and was itself refused) go into ``accepted``.
    """
    probe_request, probe = agent_session_request(random.Random(6), message_bytes=3000)
    probe_body = probe_request.SerializeToString()
    for attempt in range(5):
        holder = Holder(tiny.server.url, seed=100 + attempt)
        for _ in range(5):
            answer = httpx.post(tiny.server.url + "/v1/traces", content=probe_body, headers=PROTOBUF, timeout=10)
            if answer.status_code == 429:
                return holder
            assert answer.status_code == 200
            accepted[probe.trace_id] = probe.span_ids
        # The holder met a probe in flight and was refused; let it go and start another.
        assert holder.finish() == 429
    pytest.fail("no upload ever held the budget")


def test_inflated_and_chunked_bodies_count_against_the_budget(tiny: Tiny) -> None:
    """The budget counts what a body becomes, not what its Content-Length says."""
    accepted: dict[str, list[str]] = {}
    holder = _hold_budget(tiny, accepted)
    try:
        request, spec = agent_session_request(random.Random(7), message_bytes=800)
        body = request.SerializeToString()
        packed = gzip.compress(body)
        assert len(holder.body) + len(packed) <= BUDGET < len(holder.body) + len(body)
        zipped = httpx.post(tiny.server.url + "/v1/traces", content=packed,
                            headers={**PROTOBUF, "content-encoding": "gzip"}, timeout=10)
        chunked = httpx.post(tiny.server.url + "/v1/traces", content=iter([body[:1000], body[1000:]]),
                             headers=PROTOBUF, timeout=10)
        assert "content-length" not in chunked.request.headers
    finally:
        holder.release.set()
    assert holder.finish() == 200
    assert (zipped.status_code, zipped.headers.get("retry-after")) == (429, "1")
    assert (chunked.status_code, chunked.headers.get("retry-after")) == (429, "1")
    accepted[holder.spec.trace_id] = holder.spec.span_ids
    assert tiny.stored(set(accepted)) == {(t, s) for t, ids in accepted.items() for s in ids}
    assert tiny.stored({spec.trace_id}) == set()
    # Alone in flight, the same requests pass.
    for content, headers in [(packed, {**PROTOBUF, "content-encoding": "gzip"}), (iter([body]), PROTOBUF)]:
        assert httpx.post(tiny.server.url + "/v1/traces", content=content, headers=headers,
                          timeout=10).status_code == 200
    assert tiny.stored({spec.trace_id}) == {(spec.trace_id, s) for s in spec.span_ids}


def test_otel_exporter_retries_429_until_every_span_is_stored(tiny: Tiny) -> None:
    """A slow upload holds the budget; exporters meet 429, honour Retry-After and get everything in."""
    accepted: dict[str, list[str]] = {}  # trace id -> span ids of every 200 outside the exporters
    holder = _hold_budget(tiny, accepted)

    seen: list[int] = []
    seen_changed = threading.Condition()

    def hook(response: requests.Response, *args: object, **kwargs: object) -> None:
        with seen_changed:
            seen.append(response.status_code)
            seen_changed.notify_all()

    providers, span_ids, traces = [], set(), set()
    try:
        for p in range(3):
            session = requests.Session()
            session.hooks["response"].append(hook)
            exporter = OTLPSpanExporter(endpoint=f"{tiny.server.url}/v1/traces", timeout=60, session=session)
            provider = TracerProvider(resource=Resource.create({"service.name": f"exporter-{p}"}))
            provider.add_span_processor(BatchSpanProcessor(
                exporter, max_queue_size=4096, max_export_batch_size=40, schedule_delay_millis=60_000,
                export_timeout_millis=60_000))
            providers.append(provider)
            tracer = provider.get_tracer("backpressure")
            # Each 40 spans make one ~45 KB export, sent at once: into the held budget.
            for s in range(4 * 40):
                with tracer.start_as_current_span(f"chat {s}", attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.conversation.id": f"exp-{p}-{s // 20}",
                    "gen_ai.usage.input_tokens": 10, "payload": "x" * 1000,
                }) as span:
                    context = span.get_span_context()
                    span_ids.add((format(context.trace_id, "032x"), format(context.span_id, "016x")))
                    traces.add(format(context.trace_id, "032x"))
        with seen_changed:
            assert seen_changed.wait_for(lambda: 429 in seen, timeout=30), seen
        assert holder.finish() == 200
        accepted[holder.spec.trace_id] = holder.spec.span_ids
        flushed = [provider.force_flush(90_000) for provider in providers]
    finally:
        holder.release.set()
        for provider in providers:
            provider.shutdown()

    assert flushed == [True, True, True]
    assert seen.count(200) == 3 * 4, f"every batch of 40 spans is accepted once: {seen}"
    assert seen.count(429) >= 1 and set(seen) <= {200, 429}, seen
    assert tiny.stored(traces) == span_ids
    assert tiny.stored(set(accepted)) == {(t, s) for t, ids in accepted.items() for s in ids}
    _still_serving(tiny.server.url)


def test_clients_that_give_up_do_not_stop_the_writer(server: ServerProcess, db_url: str) -> None:
    """gRPC calls whose deadline passes while they wait for the commit are cancelled on the server;
    their batches still commit and later requests are still answered."""
    rng = random.Random(8)
    load = [agent_session_request(rng, message_bytes=2000) for _ in range(30)]
    stop = threading.Event()
    acknowledged: dict[str, list[str]] = {}
    lock = threading.Lock()

    def http_load(offset: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = offset
            while not stop.is_set():
                request, spec = load[i % len(load)]
                try:
                    response = client.post(server.url + "/v1/traces", content=request.SerializeToString(),
                                           headers=PROTOBUF)
                except httpx.TimeoutException:
                    return  # a stalled server; the checks below say so
                if response.status_code == 200:
                    with lock:
                        acknowledged[spec.trace_id] = spec.span_ids
                i += 1

    loaders = [threading.Thread(target=http_load, args=(k,)) for k in range(4)]
    for thread in loaders:
        thread.start()
    outcomes: dict[str, int] = {}
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    grpc_ok: dict[str, list[str]] = {}
    try:
        for _ in range(150):
            request, spec = agent_session_request(rng)
            try:
                stub.Export(request, timeout=rng.uniform(0.002, 0.03))
                outcomes["ok"] = outcomes.get("ok", 0) + 1
                grpc_ok[spec.trace_id] = spec.span_ids
            except grpc.RpcError as exc:
                outcomes[exc.code().name] = outcomes.get(exc.code().name, 0) + 1
    finally:
        stop.set()
        for thread in loaders:
            thread.join(30)
    assert outcomes.get("DEADLINE_EXCEEDED", 0) > 0, outcomes
    # The server is still whole: a patient call over each transport is answered.
    request, spec = agent_session_request(rng)
    stub.Export(request, timeout=10)
    channel.close()
    _still_serving(server.url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = {(r[0], r[1]) for r in conn.execute(text("select trace_id, span_id from spans"))}
    finally:
        engine.dispose()
    for trace_id, span_ids in [*acknowledged.items(), *grpc_ok.items(), (spec.trace_id, spec.span_ids)]:
        assert {(trace_id, s) for s in span_ids} <= stored
