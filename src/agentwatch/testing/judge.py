"""A fake OpenAI-compatible judge on a real loopback socket, for tests and benchmarks.

:class:`FakeJudgeServer` answers ``POST /v1/chat/completions`` (and
``/chat/completions``) in the OpenAI response shape, from an asyncio event
loop in a background thread, with a minimal HTTP/1.1 keep-alive parser: it
holds hundreds of slow concurrent requests for the price of a coroutine
each. What it answers is scripted per request: queued :class:`Reply` objects
first, then ``handler(request)`` when one is set, then ``default``::

    from agentwatch.testing.judge import FakeJudgeServer, Reply

    with FakeJudgeServer(default=Reply.verdict(0.9, "fine", delay_s=0.5)) as server:
        server.script(Reply.rate_limited(retry_after=1), Reply.error(500), Reply(content="not json"))
        config = JudgeConfig(base_url=server.base_url, model="gpt-4o-mini", api_key_env=None)
        ...
        assert server.requests[0].json["temperature"] == 0
        assert server.peak_in_flight <= 100

Every chat-completions request is recorded (:class:`JudgeRequest`: method, path, lower-cased
headers, parsed JSON body). ``in_flight`` and ``peak_in_flight`` count chat
requests between the end of their body and the end of their answer. With
``api_key`` set, a request without ``Authorization: Bearer <api_key>`` gets 401.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["FakeJudgeServer", "JudgeRequest", "Reply"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_error"}
_MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. ``body`` (raw bytes or text) replaces the generated body when set."""

    content: str = '{"score": 1.0, "reason": "the request was completed"}'
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    #: Error message for a non-200 status without ``body``.
    message: str | None = None
    #: Usage reported; None estimates about four characters per token.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: The ``model`` answered; None echoes the request's.
    model: str | None = None
    #: Close the connection without answering (after ``delay_s``).
    disconnect: bool = False

    @classmethod
    def verdict(cls, score: Any, reason: str = "ok", **kwargs: Any) -> Reply:
        """A well-formed verdict ``{"score": score, "reason": reason}``."""
        return cls(content=json.dumps({"score": score, "reason": reason}), **kwargs)

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = 1, **kwargs: Any) -> Reply:
        """429 with ``Retry-After`` (seconds, or an HTTP date string; None sends none)."""
        headers = dict(kwargs.pop("headers", {}))
        if retry_after is not None:
            headers["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        return cls(status=429, headers=headers, message=kwargs.pop("message", "Rate limit reached"), **kwargs)

    @classmethod
    def error(cls, status: int = 500, message: str | None = None, **kwargs: Any) -> Reply:
        """An error status with an OpenAI-style ``{"error": {...}}`` body."""
        return cls(status=status, message=message or f"fake judge error {status}", **kwargs)


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float

    @property
    def prompt(self) -> str:
        """The text of every message, joined (what the judge was shown)."""
        messages = self.json.get("messages") if isinstance(self.json, dict) else None
        if not isinstance(messages, list):
            return ""
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))


class FakeJudgeServer:
    """A scriptable OpenAI chat-completions server on 127.0.0.1, in a background thread."""

    def __init__(self, *, default: Reply | None = None, handler: Callable[[JudgeRequest], Reply] | None = None,
                 api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.default = default or Reply()
        self.handler = handler
        self.api_key = api_key
        self.host = host
        self.port = port
        self.in_flight = 0
        self.peak_in_flight = 0
        self._queue: collections.deque[Reply] = collections.deque()
        self._requests: list[JudgeRequest] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the OpenAI-style base URL."""
        return f"http://{self.host}:{self.port}/v1"

    # -- scripting and inspection ------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order, before ``handler`` and ``default``."""
        self._queue.extend(replies)

    @property
    def requests(self) -> list[JudgeRequest]:
        """Every chat-completions request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests, the peak and queued replies."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self.peak_in_flight = self.in_flight

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeJudgeServer:
        if self._thread is not None:
            raise RuntimeError("the fake judge server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._connection, self.host, self.port, backlog=2048, limit=_MAX_BODY))
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._closing = False
        self._thread = threading.Thread(target=run, name="fake-judge-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the fake judge server did not start")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None
            self._loop = None

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- HTTP --------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    await _write(writer, 400, {}, _error_body(400, "malformed request line"), close=True)
                    return
                method, target, version = parts
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    await _write(writer, 400, {}, _error_body(400, "chunked bodies are not supported"), close=True)
                    return
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    length = -1
                if not 0 <= length <= _MAX_BODY:
                    await _write(writer, 400, {}, _error_body(400, "bad Content-Length"), close=True)
                    return
                try:
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                close = version != "HTTP/1.1" or headers.get("connection", "").lower() == "close"
                if not await self._dispatch(writer, method, target.split("?", 1)[0], headers, body, close):
                    return
                if close:
                    return
        except ConnectionError:
            return
        except asyncio.CancelledError:
            if self._closing:
                return  # our own shutdown: end quietly
            raise
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _dispatch(self, writer: asyncio.StreamWriter, method: str, path: str, headers: dict[str, str],
                        body: bytes, close: bool) -> bool:
        """Answer one request; False when the connection must be dropped."""
        if path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            if method == "GET" and path.rstrip("/") in ("/v1/models", "/models"):
                payload = {"object": "list", "data": [{"id": "fake-judge", "object": "model", "owned_by": "fake"}]}
                await _write(writer, 200, {}, json.dumps(payload).encode(), close)
            else:
                await _write(writer, 404, {}, _error_body(404, f"no route {method} {path}"), close)
            return True
        if method != "POST":
            await _write(writer, 405, {"Allow": "POST"}, _error_body(405, "use POST"), close)
            return True
        try:
            data: Any = json.loads(body) if body else None
        except ValueError:
            data = None
        request = JudgeRequest(method=method, path=path, headers=headers, json=data, received_at=time.monotonic())
        with self._lock:
            self._requests.append(request)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
                await _write(writer, 401, {}, _error_body(401, "Incorrect API key provided"), close)
                return True
            if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
                await _write(writer, 400, {}, _error_body(400, "the body must be a JSON object with messages"),
                             close)
                return True
            reply = self._next_reply(request)
            if reply.delay_s > 0:
                await asyncio.sleep(reply.delay_s)
            if reply.disconnect:
                return False
            await _write(writer, reply.status, reply.headers, _reply_body(reply, request), close)
            return True
        finally:
            with self._lock:
                self.in_flight -= 1

    def _next_reply(self, request: JudgeRequest) -> Reply:
        try:
            return self._queue.popleft()
        except IndexError:
            pass
        if self.handler is not None:
            return self.handler(request)
        return self.default


def _reply_body(reply: Reply, request: JudgeRequest) -> bytes:
    if reply.body is not None:
        return reply.body.encode() if isinstance(reply.body, str) else reply.body
    if reply.status != 200:
        return _error_body(reply.status, reply.message or f"fake judge error {reply.status}")
    prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else len(request.prompt) // 4 + 1
    completion_tokens = (reply.completion_tokens if reply.completion_tokens is not None
                         else len(reply.content) // 4 + 1)
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or str(request.json.get("model", "fake-judge")),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    return json.dumps(payload).encode()


def _error_body(status: int, message: str) -> bytes:
    error = {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "param": None,
             "code": None}
    return json.dumps({"error": error}).encode()


async def _write(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes,
                 close: bool) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append("Connection: close" if close else "Connection: keep-alive")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
