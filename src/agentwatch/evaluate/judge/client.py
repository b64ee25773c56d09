"""The judge on the wire: OpenAI chat-completions requests, their retries, and what they cost.

:class:`JudgeClient` POSTs a request body to ``<base_url>/chat/completions``
and answers an :class:`~agentwatch.evaluate.base.EvalResult`: the parsed
verdict with the answering model, tokens and cost, or a failure naming what
went wrong. 429 and 5xx answers, connection errors and timeouts are retried
with full-jitter exponential backoff, or after the server's
:func:`~agentwatch.retry_after.retry_after_s`. Connections are pooled per event loop, at most
``max_concurrency`` requests in flight. The API key is read from the
environment once, sent only in the ``Authorization`` header and scrubbed
from any text that comes back. :class:`JudgeStats` counts requests, retries,
tokens and cost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from agentwatch.errors import ConfigError
from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.judge.config import JudgeConfig
from agentwatch.evaluate.judge.render import VerdictError, excerpt, parse_verdict
from agentwatch.normalize.pricing import ModelPrice, PriceTable
from agentwatch.retry_after import retry_after_s

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Connections per httpx pool (see JudgeClient._new_state).
_POOL_SIZE = 16
_RAW_CHARS = 32_000
_EXCERPT_CHARS = 500


@dataclass(slots=True)
class JudgeStats:
    """Counters of one judge, for metrics and benchmarks (approximate if shared across threads)."""

    evaluations: int = 0
    errors: int = 0
    cache_hits: int = 0
    requests: int = 0
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    in_flight: int = 0
    peak_in_flight: int = 0


class _Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


@dataclass(slots=True)
class _LoopState:
    """One event loop's connection pools and the free request slots, by pool index."""

    clients: list[httpx.AsyncClient]
    slots: asyncio.LifoQueue[int]
    owned: bool


@dataclass(frozen=True, slots=True)
class _Retryable:
    kind: str  # "timeout" | "status" | "network"
    message: str
    delay_s: float | None = None
    raw: str | None = None


@dataclass(slots=True)
class _Usage:
    tokens_in: int | None = None
    tokens_out: int | None = None
    cached: int | None = None


class JudgeClient:
    """One judge's chat-completions requests: pools per event loop, retries, accounting into ``stats``.

    ``version`` names the judge in log lines. Unless ``require_key`` is false,
    a key variable that is not set is a :class:`~agentwatch.errors.ConfigError`;
    otherwise :attr:`missing_key` says so and the judge answers it as an error.
    """

    def __init__(
        self,
        config: JudgeConfig,
        *,
        version: str,
        stats: JudgeStats,
        client: httpx.AsyncClient | None = None,
        prices: PriceTable | None = None,
        environ: Mapping[str, str] | None = None,
        require_key: bool = True,
    ) -> None:
        self.config = config
        self.version = version
        self.prompt_hash = config.prompt_hash
        self.stats = stats
        self._client = client
        self._url = config.chat_completions_url
        self._timeout = httpx.Timeout(config.timeout_s)
        self._key: _Secret | None = None
        #: Why no request can be sent (the key variable is not set), or None.
        self.missing_key: str | None = None
        if config.api_key_env is not None:
            value = (os.environ if environ is None else environ).get(config.api_key_env)
            if value:
                self._key = _Secret(value)
            elif require_key:
                raise ConfigError(f"the judge's API key variable {config.api_key_env} is not set")
            else:
                self.missing_key = f"the judge's API key variable {config.api_key_env} is not set"
        self._price: ModelPrice | None = None
        if config.price_input_per_mtok is not None and config.price_output_per_mtok is not None:
            self._price = ModelPrice(config.price_input_per_mtok, config.price_output_per_mtok)
        self._prices = prices or PriceTable.builtin()
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._states_lock = threading.Lock()

    @property
    def has_key(self) -> bool:
        """Whether requests carry an ``Authorization`` header."""
        return self._key is not None

    async def aclose(self) -> None:
        """Close the connection pool this client opened on the running event loop."""
        loop = asyncio.get_running_loop()
        with self._states_lock:
            state = self._states.pop(loop, None)
        if state is not None and state.owned:
            for client in state.clients:
                await client.aclose()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            with self._states_lock:
                state = self._states.get(loop)
                if state is None:
                    state = self._new_state()
                    self._states[loop] = state
        return state

    def _new_state(self) -> _LoopState:
        # httpcore's pool does work quadratic in its connection count on every request, so the
        # judge spreads its connections over pools of at most _POOL_SIZE; each pool is handed at
        # most as many concurrent requests as it has connections, so no request waits in a pool.
        n = self.config.max_concurrency
        slots: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        if self._client is not None:
            for _ in range(n):
                slots.put_nowait(0)
            return _LoopState(clients=[self._client], slots=slots, owned=False)
        sizes = [min(_POOL_SIZE, n - start) for start in range(0, n, _POOL_SIZE)]
        verify = httpx.create_ssl_context()
        clients = [
            httpx.AsyncClient(timeout=self._timeout, verify=verify, limits=httpx.Limits(
                max_connections=size, max_keepalive_connections=size, keepalive_expiry=30.0))
            for size in sizes
        ]
        for index, size in enumerate(sizes):
            for _ in range(size):
                slots.put_nowait(index)
        return _LoopState(clients=clients, slots=slots, owned=True)

    async def call(self, body: bytes) -> EvalResult:
        """POST ``body``, retrying as configured: the verdict, or a failure saying why there is none."""
        cfg = self.config
        state = self._state()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        last: _Retryable | None = None
        attempts = 0
        for attempt in range(cfg.max_retries + 1):
            if last is not None:
                delay = last.delay_s if last.delay_s is not None else random.uniform(
                    0.0, min(cfg.backoff_cap_s, cfg.backoff_base_s * 2 ** (attempt - 1)))
                logger.debug("LLM judge %s: %s; retry %d in %.2fs", self.version, last.message, attempt, delay)
                self.stats.retries += 1
                await asyncio.sleep(delay)
            attempts += 1
            outcome = await self._attempt(state, body, headers)
            if isinstance(outcome, EvalResult):
                return outcome
            last = outcome
            if last.delay_s is not None and last.delay_s > cfg.retry_after_max_s:
                return self.failure(f"{last.message}; the judge asked to retry after {last.delay_s:g}s, "
                                    f"more than retry_after_max_s={cfg.retry_after_max_s:g}", raw=last.raw,
                                    retryable=True)
        assert last is not None
        if last.kind == "timeout":
            message = f"judge timed out after {cfg.timeout_s:g}s ({attempts} attempts)"
        elif last.kind == "status":
            message = f"{last.message} (after {attempts} attempts)"
        else:
            message = f"judge unreachable after {attempts} attempts: {last.message}"
        return self.failure(message, raw=last.raw, retryable=True)

    async def _attempt(self, state: _LoopState, body: bytes, headers: dict[str, str]) -> EvalResult | _Retryable:
        stats = self.stats
        index = await state.slots.get()
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                response = await state.clients[index].post(self._url, content=body, headers=headers,
                                                           timeout=self._timeout)
        except (TimeoutError, httpx.TimeoutException):
            return _Retryable("timeout", f"judge timed out after {self.config.timeout_s:g}s")
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return _Retryable("network", self.scrub(f"{type(exc).__name__}: {exc}"))
        except httpx.HTTPError as exc:
            return self.failure(f"judge request failed: {type(exc).__name__}: {exc}")
        finally:
            stats.in_flight -= 1
            state.slots.put_nowait(index)
        status = response.status_code
        if 200 <= status < 300:
            return self._verdict(response)
        text = response.text
        message = f"judge answered HTTP {status}: {_error_message(text)}"
        if status in RETRYABLE_STATUSES:
            return _Retryable("status", self.scrub(message), retry_after_s(response.headers),
                              self.scrub(excerpt(text, _RAW_CHARS)))
        return self.failure(message, raw=excerpt(text, _RAW_CHARS))

    def _verdict(self, response: httpx.Response) -> EvalResult:
        text = response.text
        try:
            data = json.loads(text)
        except ValueError:
            return self.failure("judge response is not JSON", raw=excerpt(text, _RAW_CHARS))
        usage = _usage(data)
        model = self.config.model
        if isinstance(data, dict) and isinstance(data.get("model"), str) and data["model"]:
            model = data["model"]
        accounting = self._accounting(model, usage)
        content = _content(data)
        if content is None:
            return self.failure("judge response is not a chat completion with message content",
                                raw=excerpt(text, _RAW_CHARS), judge_model=model, **accounting)
        try:
            score, reason = parse_verdict(content)
        except VerdictError as exc:
            return self.failure(f"judge verdict does not parse: {exc}", raw=excerpt(content, _RAW_CHARS),
                                judge_model=model, **accounting)
        return EvalResult.ok(score, self.scrub(reason), judge_model=model, prompt_hash=self.prompt_hash,
                             **accounting)

    def _accounting(self, model: str, usage: _Usage) -> dict[str, Any]:
        stats = self.stats
        stats.tokens_in += usage.tokens_in or 0
        stats.tokens_out += usage.tokens_out or 0
        if usage.tokens_in is None and usage.tokens_out is None:
            return {"tokens_in": None, "tokens_out": None, "cost_usd": None}
        price = self._price or self._prices.lookup(model) or self._prices.lookup(self.config.model)
        cost = price.cost(usage.tokens_in, usage.tokens_out, usage.cached) if price is not None else None
        if cost is not None:
            stats.cost_usd += cost
        return {"tokens_in": usage.tokens_in, "tokens_out": usage.tokens_out, "cost_usd": cost}

    def failure(self, message: str, *, raw: str | None = None, **extra: Any) -> EvalResult:
        """An error result with the judge's lineage, ``message`` and ``raw`` scrubbed of the key."""
        extra.setdefault("judge_model", self.config.model)
        extra.setdefault("prompt_hash", self.prompt_hash)
        return EvalResult.failure(self.scrub(message), raw=None if raw is None else self.scrub(raw), **extra)

    def scrub(self, text: str) -> str:
        """``text`` with the API key replaced by ``<redacted>``."""
        if self._key is None:
            return text
        return text.replace(self._key.reveal(), "<redacted>")


# -- response helpers --------------------------------------------------------------------------------


def _content(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


def _usage(data: Any) -> _Usage:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return _Usage()
    out = _Usage(tokens_in=_count(usage.get("prompt_tokens")), tokens_out=_count(usage.get("completion_tokens")))
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        out.cached = _count(details.get("cached_tokens"))
    return out


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _error_message(text: str) -> str:
    """The server's error message: OpenAI's ``{"error": {"message"}}``, ``{"error": "..."}``, else the text."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return excerpt(error["message"], _EXCERPT_CHARS)
        if isinstance(error, str):
            return excerpt(error, _EXCERPT_CHARS)
        if isinstance(data.get("message"), str):
            return excerpt(data["message"], _EXCERPT_CHARS)
    return excerpt(text.strip(), _EXCERPT_CHARS) or "(empty body)"
