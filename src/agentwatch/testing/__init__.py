"""Factories and a real server process for tests and benchmarks.

``agent_session_request`` builds a realistic OTLP request: one agent
session with an ``invoke_agent`` root, model calls, tool calls and
message content, in the OpenTelemetry GenAI conventions. ``ServerProcess``
runs ``agentwatch serve`` on free loopback ports and waits until it is
ready.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

_WORDS = ("refund order account billing plan premium invoice shipping delivery charge card policy "
          "customer request amount support ticket update status review confirm").split()


def kv(key: str, value: Any) -> KeyValue:
    """An OTLP attribute from a Python value."""
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
        return out
    return AnyValue(string_value=str(value))


def new_trace_id(rng: random.Random) -> bytes:
    return rng.getrandbits(128).to_bytes(16, "big") or b"\x01" * 16


def new_span_id(rng: random.Random) -> bytes:
    return (rng.getrandbits(64) | 1).to_bytes(8, "big")


def filler_text(rng: random.Random, nbytes: int, vocabulary: tuple[str, ...] | list[str] = _WORDS) -> str:
    """About ``nbytes`` of words drawn from ``vocabulary``: message content of a plausible size."""
    words: list[str] = []
    size = 0
    while size < nbytes:
        word = rng.choice(vocabulary)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


@dataclass
class SessionSpec:
    """What :func:`agent_session_request` put into a request, for assertions."""

    session_id: str
    trace_id: str
    span_ids: list[str]
    tokens_in: int
    tokens_out: int
    llm_calls: int
    tool_calls: int
    tool_errors: int


def agent_session_request(
    rng: random.Random,
    *,
    session_id: str | None = None,
    start_ns: int | None = None,
    tool_calls: int = 6,
    message_bytes: int = 500,
    service: str = "support-agent",
    service_version: str = "1.4.0",
    intent: str | None = "refund",
    user_id: str | None = "user-1",
    tool_error_rate: float = 0.0,
) -> tuple[ExportTraceServiceRequest, SessionSpec]:
    """One agent session as an OTLP request, its root span last (as SDK batches send it).

    Spans: the ``invoke_agent`` root; per tool call an llm span, the tool
    span and a guardrail check; a closing llm span: ``2 + 3 * tool_calls``
    spans (20 with the default six tool calls), each llm span with about
    ``message_bytes`` of message content.
    """
    trace_id = new_trace_id(rng)
    session_id = session_id or f"sess-{trace_id.hex()[:16]}"
    t = start_ns if start_ns is not None else time.time_ns() - 60 * 10**9
    root_id = new_span_id(rng)
    spans: list[Span] = []
    tokens_in = tokens_out = errors = 0

    def span(name: str, parent: bytes | None, start: int, dur_ms: int, attrs: dict[str, Any],
             error: str | None = None) -> Span:
        s = Span(trace_id=trace_id, span_id=new_span_id(rng), parent_span_id=parent or b"", name=name,
                 kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start,
                 end_time_unix_nano=start + dur_ms * 1_000_000)
        s.attributes.extend(kv(k, v) for k, v in attrs.items())
        if error:
            s.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
        spans.append(s)
        return s

    cursor = t + 1_000_000
    user_text = filler_text(rng, message_bytes)
    for i in range(tool_calls + 1):
        n_in, n_out = rng.randint(200, 900), rng.randint(20, 200)
        tokens_in += n_in
        tokens_out += n_out
        final = i == tool_calls
        output = ([{"role": "assistant", "parts": [{"type": "text", "content": filler_text(rng, message_bytes)}]}]
                  if final else
                  [{"role": "assistant", "parts": [{"type": "tool_call", "id": f"call_{i}", "name": "lookup_order",
                                                    "arguments": {"order_id": f"A-{rng.randint(1000, 9999)}"}}]}])
        llm = span("chat gpt-4o-mini", root_id, cursor, rng.randint(300, 1500), {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": n_in, "gen_ai.usage.output_tokens": n_out,
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": user_text}]}]),
            "gen_ai.output.messages": json.dumps(output),
            "gen_ai.response.finish_reasons": ["stop" if final else "tool_calls"],
        })
        llm.kind = Span.SPAN_KIND_CLIENT
        cursor = llm.end_time_unix_nano + 1_000_000
        if final:
            break
        failed = rng.random() < tool_error_rate
        errors += failed
        attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
                 "gen_ai.tool.call.id": f"call_{i}",
                 "gen_ai.tool.call.arguments": json.dumps({"order_id": f"A-{rng.randint(1000, 9999)}"})}
        if failed:
            attrs["error.type"] = "timeout"
        else:
            note = filler_text(rng, message_bytes // 2)
            attrs["gen_ai.tool.call.result"] = json.dumps({"status": "shipped", "note": note})
        tool = span("execute_tool lookup_order", root_id, cursor, rng.randint(20, 400), attrs,
                    error="order service timed out" if failed else None)
        cursor = tool.end_time_unix_nano + 1_000_000
        guard = span("apply_guardrail pii", root_id, cursor, 5, {
            "gen_ai.operation.name": "apply_guardrail", "gen_ai.guardrail.component.name": "pii",
            "gen_ai.guardrail.result.type": "allow"})
        cursor = guard.end_time_unix_nano + 1_000_000
    root_attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": service,
                                  "gen_ai.conversation.id": session_id}
    if intent:
        root_attrs["agentwatch.intent"] = intent
    if user_id:
        root_attrs["user.id"] = user_id
    root = Span(trace_id=trace_id, span_id=root_id, name=f"invoke_agent {service}", kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=t, end_time_unix_nano=cursor + 1_000_000)
    root.attributes.extend(kv(k, v) for k, v in root_attrs.items())
    spans.append(root)

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", service), kv("service.version", service_version),
                                   kv("telemetry.sdk.language", "python")])
    ss = rs.scope_spans.add()
    ss.scope.name = "agentwatch.testing"
    ss.spans.extend(spans)
    spec = SessionSpec(session_id=session_id, trace_id=trace_id.hex(), span_ids=[s.span_id.hex() for s in spans],
                       tokens_in=tokens_in, tokens_out=tokens_out, llm_calls=tool_calls + 1,
                       tool_calls=tool_calls, tool_errors=errors)
    return request, spec


def make_span(
    trace_id: str,
    span_id: str,
    *,
    parent: str | None = None,
    name: str = "span",
    attributes: dict[str, Any] | None = None,
    start_ns: int = 1_767_225_600_000_000_000,
    duration_ms: int = 10,
    error: str | None = None,
) -> Span:
    """One protobuf span; ids are hex strings (padded to size)."""
    span = Span(trace_id=bytes.fromhex(trace_id.rjust(32, "0")), span_id=bytes.fromhex(span_id.rjust(16, "0")),
                parent_span_id=bytes.fromhex(parent.rjust(16, "0")) if parent else b"", name=name,
                start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + duration_ms * 1_000_000)
    span.attributes.extend(kv(k, v) for k, v in (attributes or {}).items())
    if error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return span


def traces_request(spans: list[Span], *, service: str = "support-agent",
                   resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    """An export request holding ``spans`` under one resource and scope."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(kv(k, v) for k, v in {"service.name": service, **(resource or {})}.items())
    ss = rs.scope_spans.add()
    ss.scope.name = "agentwatch.testing"
    ss.spans.extend(spans)
    return request


def configured_pipeline(database_url: str, folder: Path, config: str,
                        modules: dict[str, str] | None = None) -> Any:
    """An in-process pipeline on a migrated database, configured by ``config`` written to ``folder``.

    ``modules`` are Python files (name -> source) written beside the config,
    for ``kind: python`` evaluators; an earlier import of the same name is
    forgotten first. Decoding stays in-process (no worker processes).
    """
    from agentwatch.pipeline import Pipeline
    from agentwatch.settings import load_settings
    from agentwatch.store.store import Store

    for name, source in (modules or {}).items():
        sys.modules.pop(name, None)
        (folder / f"{name}.py").write_text(source)
    (folder / "agentwatch.yaml").write_text(config)
    store = Store(database_url)
    store.migrate()
    settings = load_settings(folder / "agentwatch.yaml", environ={}, database_url=database_url, decode_workers=0)
    return Pipeline(settings, store)


def child_processes(pid: int) -> list[tuple[int, str]]:
    """``(pid, name)`` of each live child of ``pid``, read from ``/proc`` (Linux): the name is what the
    process calls itself (``aw-evaluate-0``; ``python3`` for most)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                out.append((int(entry.name), (entry / "comm").read_text().strip()))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``agentwatch serve`` in a child process on free loopback ports."""

    def __init__(self, database_url: str, *, config: str | os.PathLike[str] | None = None, grpc: bool = True,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.config = config
        self.env = env or {}
        self.cwd = cwd
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        args = [sys.executable, "-m", "agentwatch.cli", "serve", "--port", str(self.port),
                "--grpc-port", str(self.grpc_port), "--database-url", self.database_url, *self.extra_args]
        if self.config:
            args += ["--config", str(self.config)]
        env = {**os.environ, **self.env}
        import tempfile

        log = tempfile.NamedTemporaryFile(prefix="agentwatch-server-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        self.proc = subprocess.Popen(args, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Headless Chromium for the dashboard's browser tests and screenshots: Debian's package, never a download.
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
