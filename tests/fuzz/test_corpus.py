"""The kept corpus of malformed OTLP/HTTP bodies against one real server per engine.

Every body must get a 200 (full or partial success, a response message in
the request's encoding) or a 4xx whose ``google.rpc.Status`` (in the
request's encoding) carries a message: never a 5xx, never a dropped
connection. Afterwards the server is still ready, a session sent before the
corpus is whole, and its log holds no traceback.
The whole corpus runs on SQLite and every other body on PostgreSQL (decoding is the same on both; what
they store differs). The corpus is written by ``make_corpus.py``.
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from make_corpus import CAPTURES, CORPUS, generate, load, write
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentwatch.testing import ServerProcess, SessionSpec, agent_session_request

CLIENTS = 8
#: Each category is in the corpus at least this often.
MIN_PER_CATEGORY = {
    "truncation": 1000, "bitflip": 1000, "wire_type": 1000, "huge_repeated": 200, "deep_nesting": 60,
    "invalid_utf8": 500, "bad_ids": 500, "timestamps": 500, "attr_values": 1000, "random_bytes": 300,
    "json_shape": 300, "cross_encoding": 20, "compression": 100, "seed": 10,
}


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    return load()


def test_corpus_size_and_categories(corpus: list[dict[str, Any]]) -> None:
    assert len(corpus) >= 10_000
    assert CORPUS.stat().st_size < 5 * 1024 * 1024
    counts = Counter(r["category"] for r in corpus)
    assert set(counts) == set(MIN_PER_CATEGORY), counts
    for category, minimum in MIN_PER_CATEGORY.items():
        assert counts[category] >= minimum, (category, counts[category])
    cells = Counter((r["category"], r["signal"], r["content_type"]) for r in corpus)
    for category in MIN_PER_CATEGORY:
        for signal in ("traces", "logs"):
            for content_type in ("application/x-protobuf", "application/json"):
                if category == "json_shape" and content_type == "application/x-protobuf":
                    continue  # random JSON documents: JSON only
                assert cells[(category, signal, content_type)] > 0, (category, signal, content_type)
    assert len({r["id"] for r in corpus}) == len(corpus)
    assert {r["encoding"] for r in corpus} == {"identity", "gzip"}


@pytest.mark.skipif(not CAPTURES.is_dir(), reason="the OTLP captures are needed to regenerate the corpus")
def test_corpus_regenerates_byte_for_byte() -> None:
    assert write(generate()) == CORPUS.read_bytes(), "run tests/fuzz/make_corpus.py and commit the corpus"


@dataclass
class Served:
    server: ServerProcess
    good: SessionSpec


@pytest.fixture(scope="module")
def served(engine: str, module_db: tuple[str, Path]) -> Iterator[Served]:
    url, tmp = module_db
    with ServerProcess(url, cwd=tmp, grpc=False) as server:
        good_request, good = agent_session_request(random.Random(77), session_id=f"fuzz-good-{engine}")
        response = httpx.post(server.url + "/v1/traces", content=good_request.SerializeToString(),
                              headers={"content-type": "application/x-protobuf"}, timeout=60)
        assert response.status_code == 200, response.text
        yield Served(server, good)


def _problem(record: dict[str, Any], response: httpx.Response) -> str | None:
    """What is wrong with the answer to ``record``, or None."""
    status = response.status_code
    json_request = record["content_type"] == "application/json"
    media = response.headers.get("content-type", "")
    if status == 200:
        answer = ExportTraceServiceResponse() if record["signal"] == "traces" else ExportLogsServiceResponse()
        try:
            if json_request:
                json_format.Parse(response.text, answer)
            else:
                answer.ParseFromString(response.content)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return f"200 whose body is not an export response ({media}): {exc}"
        return None
    if not 400 <= status < 500:
        return f"status {status}: {response.text[:300]!r}"
    if media.split(";")[0].strip() != ("application/json" if json_request else "application/x-protobuf"):
        return f"{status} answered in {media!r}"
    try:
        message = (json_format.Parse(response.text, status_pb2.Status()) if json_request
                   else status_pb2.Status.FromString(response.content)).message
    except Exception as exc:  # noqa: BLE001
        return f"{status} whose body is not a google.rpc.Status: {exc}"
    return None if message.strip() else f"{status} with an empty message"


def test_every_body_is_answered_and_the_server_keeps_serving(
    served: Served, corpus: list[dict[str, Any]], engine: str
) -> None:
    # The decoding is the same on both engines; PostgreSQL stores every other body, every category still in.
    records = corpus if engine == "sqlite" else corpus[::2]
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120)
            with lock:
                clients.append(local.client)
        made: httpx.Client = local.client
        return made

    def send(record: dict[str, Any]) -> tuple[str, int, str | None]:
        headers = {"content-type": record["content_type"]}
        if record["encoding"] == "gzip":
            headers["content-encoding"] = "gzip"
        url = f"{served.server.url}/v1/{record['signal']}"
        body = base64.b64decode(record["body_b64"])
        try:
            response = client().post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return record["id"], -1, f"connection failed: {type(exc).__name__}: {exc}"
        return record["id"], response.status_code, _problem(record, response)

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(send, records))
    finally:
        for c in clients:
            c.close()
    elapsed = time.monotonic() - started
    statuses = Counter(status for _, status, _ in results)
    print(f"\n{engine}: {len(records)} bodies in {elapsed:.1f}s; statuses {dict(sorted(statuses.items()))}")
    problems = [(rid, status, problem) for rid, status, problem in results if problem]
    assert not problems, f"{len(problems)} bad answers, e.g. {problems[:15]}"
    assert 200 in statuses and 400 in statuses

    server = served.server
    assert server.proc is not None and server.proc.poll() is None, server.log()[-3000:]
    with httpx.Client(timeout=30) as c:
        assert c.get(server.url + "/readyz").status_code == 200
        detail = c.get(f"{server.url}/api/v1/sessions/{served.good.session_id}")
        assert detail.status_code == 200, detail.text
        session = detail.json()["session"]
        assert session["spans"] == len(served.good.span_ids) == 20
        assert (session["tokens_in"], session["tokens_out"]) == (served.good.tokens_in, served.good.tokens_out)
        trace = c.get(f"{server.url}/api/v1/traces/{served.good.trace_id}").json()["spans"]
        assert sorted(s["span_id"] for s in trace) == sorted(served.good.span_ids)
    tracebacks = _tracebacks(server.log())
    assert not tracebacks, f"{len(tracebacks)} tracebacks in the server log, e.g.\n" + "\n".join(tracebacks[:3])


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _tracebacks(log: str) -> list[str]:
    """Each traceback of the log with the log line that introduced it."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = i + 1
            while end < len(lines) and not _LOG_LINE.match(lines[end]):
                end += 1
            found.append("\n".join(lines[max(0, i - 1):end]))
    return found


