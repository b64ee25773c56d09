"""LLM judges: score a session with a model behind an OpenAI-compatible API.

Any server that speaks the chat-completions protocol works (OpenAI, vLLM,
Ollama, LiteLLM proxies). The judge renders a prompt template over the
session, asks the pinned model at temperature 0, and parses a strict JSON
verdict ``{"score": <number in [0, 1]>, "reason": "<text>"}``::

    from agentwatch.evaluate.judge import JudgeConfig, LLMJudge, MemoryJudgeCache

    config = JudgeConfig(
        base_url="https://api.openai.com/v1",
        model="gpt-4o-mini-2024-07-18",
        api_key_env="OPENAI_API_KEY",          # the key is read from this variable
        prompt_template="Did the agent answer the question?\\n{transcript}\\n"
                        'Answer {{"score": 0..1, "reason": "..."}}',
    )
    async with LLMJudge(config, version="goal_completion@3f2a", cache=MemoryJudgeCache()) as judge:
        result = await judge.evaluate(session_view)   # EvalResult, never raises

From ``agentwatch.yaml`` (``kind: llm``), :func:`judge_from_params` builds the
judge from the evaluator's ``params``: the fields of :class:`JudgeConfig`, with
``prompt`` and ``system`` as short names. Leaving the ``async with`` (or
``await judge.aclose()``) closes the connections opened on that event loop.

**Lineage.** ``judge_model`` is the model the server says answered (its
``model`` field, e.g. a dated snapshot behind an alias), else the pinned one;
``prompt_hash`` is the first 16 hex digits of the sha256 of system prompt,
template, model and temperature. ``tokens_in``/``tokens_out`` come from
``usage``; ``cost_usd`` from ``price_*_per_mtok`` when both are set, else from
the built-in :class:`~agentwatch.normalize.pricing.PriceTable` (None for an
unknown model).

**Template.** ``str.format`` syntax over these placeholders: ``{transcript}``
(the conversation as text, tool calls included), ``{user}`` (the user's
messages), ``{answer}`` (the agent's last answer), ``{tool_calls}``,
``{documents}`` (retrieved documents), ``{evidence}`` (tool results and
document contents), ``{intent}``, ``{session_id}``, ``{service}``,
``{agent_version}``. Literal braces are doubled (``{{``). An unknown
placeholder, an index or attribute lookup, a format spec or a template with
no placeholder at all is a ``ValueError`` when the config is built. Each
field is cut to ``max_field_chars`` (its head and tail kept).

**Verdict.** The message content must be one JSON object, optionally inside a
single ```` ```json ```` fence and nothing else: no prose around it. It needs
a numeric ``score`` in [0, 1] (booleans, strings, NaN are refused) and a
string ``reason``; other keys are ignored. A ``pass``/``passed`` boolean does
*not* stand in for a missing score: the pinned prompt asks for a score, and a
judge that answers in another shape has drifted, which must show as
evaluation errors rather than be silently mapped to 0 or 1.

**Failures** are ``EvalResult.failure`` (status ``error``) with the raw text,
never a score of 0: an unparseable verdict, a response that is not a chat
completion, a non-retryable HTTP status, retries exhausted, a timeout, or any
unexpected exception. ``evaluate`` never raises (except on cancellation).
Tokens and cost are recorded on failures too whenever the server reported
usage: the call was paid for.

**Retries.** 429, 500, 502, 503, 504, connection errors and timeouts are
retried up to ``max_retries`` times. A ``Retry-After`` (seconds or HTTP date;
``retry-after-ms`` is preferred when present) is honoured; one longer than
``retry_after_max_s`` fails at once instead of retrying early against the
server's wish. Otherwise the wait is exponential backoff with full jitter:
uniform in ``[0, min(backoff_cap_s, backoff_base_s * 2**n)]``. Other 4xx fail
at once with the server's error message. ``timeout_s`` bounds each attempt as
a whole (connect, send, wait, read); after the last attempt times out the
error reads ``judge timed out after Xs (N attempts)``.

**Concurrency.** At most ``max_concurrency`` requests are in flight per judge
and per event loop (a slot is held only while a request is on the wire, not
during backoff). Unless a client is passed in, the judge owns, per event loop,
``max_concurrency`` keep-alive connections spread over pooled
``httpx.AsyncClient`` objects of at most 16 connections each: httpcore's pool
bookkeeping costs time quadratic in its size on every request, which one pool
of 150 connections turns into most of a core.

**Cache.** With a :class:`JudgeCache`, the key is ``"<version>:<sha256 of the
request body>"`` (model, temperature, max tokens, messages as rendered), so
the same session content under the same evaluator version is judged once. A
hit answers the cached result unchanged (score, reason, judge model, prompt
hash) except ``cost_usd=0.0``, ``tokens_in=0`` and ``tokens_out=0``: nothing
was spent for it. Only successful verdicts are cached; errors are retried
next time.

**The API key** is read from ``api_key_env`` when the judge is built
(``api_key_env=None`` sends no ``Authorization`` header, for local servers).
It never appears in reprs, in results or in log lines; text coming back from
the server is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.judge.client import JudgeClient, JudgeStats
from agentwatch.evaluate.judge.config import JudgeConfig, config_from_params
from agentwatch.evaluate.judge.render import (
    DEFAULT_PROMPT_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    PLACEHOLDERS,
    PromptTemplate,
    VerdictError,
    chat_request_body,
    parse_verdict,
)
from agentwatch.normalize.pricing import PriceTable

if TYPE_CHECKING:
    from types import TracebackType

    from agentwatch.evaluate.session import SessionView

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "DEFAULT_SYSTEM_PROMPT",
    "PLACEHOLDERS",
    "JudgeCache",
    "JudgeConfig",
    "JudgeStats",
    "LLMJudge",
    "MemoryJudgeCache",
    "VerdictError",
    "judge_from_params",
    "parse_verdict",
]

logger = logging.getLogger(__name__)


class JudgeCache(Protocol):
    """Verdicts by cache key. Implementations must be cheap: they are called on the event loop."""

    def get(self, key: str) -> EvalResult | None:
        """The result stored under ``key``, or None."""
        ...

    def put(self, key: str, result: EvalResult) -> None:
        """Store ``result`` under ``key`` (replacing any previous one)."""
        ...


class MemoryJudgeCache:
    """A bounded in-memory LRU :class:`JudgeCache`, safe to share between threads."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._items: OrderedDict[str, EvalResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> EvalResult | None:
        with self._lock:
            result = self._items.get(key)
            if result is not None:
                self._items.move_to_end(key)
            return result

    def put(self, key: str, result: EvalResult) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class LLMJudge:
    """An :class:`~agentwatch.evaluate.base.Evaluator` asking an OpenAI-compatible chat model."""

    def __init__(
        self,
        config: JudgeConfig,
        *,
        version: str | None = None,
        client: httpx.AsyncClient | None = None,
        cache: JudgeCache | None = None,
        prices: PriceTable | None = None,
        environ: Mapping[str, str] | None = None,
        require_key: bool = True,
    ) -> None:
        self.config = config
        self.prompt_hash = config.prompt_hash
        #: The evaluator version, the first part of every cache key.
        self.version = version or f"llm-judge:{self.prompt_hash}"
        self.cache = cache
        self.stats = JudgeStats()
        self._template = PromptTemplate.compile(config.prompt_template)
        self._http = JudgeClient(config, version=self.version, stats=self.stats, client=client, prices=prices,
                                 environ=environ, require_key=require_key)

    def __repr__(self) -> str:
        key = f"<from ${self.config.api_key_env}>" if self._http.has_key else "unset"
        return (f"LLMJudge(model={self.config.model!r}, base_url={self.config.base_url!r}, api_key={key}, "
                f"version={self.version!r}, prompt_hash={self.prompt_hash!r})")

    async def __aenter__(self) -> LLMJudge:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool this judge opened on the running event loop."""
        await self._http.aclose()

    # -- rendering ---------------------------------------------------------------------------------

    def render_prompt(self, session: SessionView) -> str:
        """The user message the judge sees for ``session``."""
        return self._template.render(session, self.config.max_field_chars)

    def request_body(self, session: SessionView) -> bytes:
        """The exact JSON body POSTed for ``session`` (what the cache key hashes)."""
        return chat_request_body(self.config, self.render_prompt(session))

    def cache_key(self, body: bytes) -> str:
        return f"{self.version}:{hashlib.sha256(body).hexdigest()}"

    # -- evaluation --------------------------------------------------------------------------------

    async def evaluate(self, session: SessionView) -> EvalResult:
        """Score ``session``; an :meth:`EvalResult.failure` when the judge cannot (never raises)."""
        self.stats.evaluations += 1
        try:
            result = await self._evaluate(session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("LLM judge %s failed unexpectedly", self.version)
            result = EvalResult.failure(self._http.scrub(f"judge failed: {type(exc).__name__}: {exc}"),
                                        judge_model=self.config.model, prompt_hash=self.prompt_hash)
        if result.is_error:
            self.stats.errors += 1
        return result

    async def _evaluate(self, session: SessionView) -> EvalResult:
        if self._http.missing_key is not None:
            return self._http.failure(self._http.missing_key)
        body = self.request_body(session)
        key = self.cache_key(body) if self.cache is not None else None
        if self.cache is not None and key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return replace(hit, cost_usd=0.0, tokens_in=0, tokens_out=0)
        result = await self._http.call(body)
        if self.cache is not None and key is not None and not result.is_error:
            self.cache.put(key, result)
        return result


def judge_from_params(params: Mapping[str, Any], *, version: str, check_only: bool = False,
                      cache: JudgeCache | None = None) -> LLMJudge:
    """An :class:`LLMJudge` from an evaluator's ``params`` in ``agentwatch.yaml``.

    The keys are :class:`JudgeConfig`'s fields (``prompt`` and ``system`` are
    accepted for ``prompt_template`` and ``system_prompt``); ``base_url`` and
    ``model`` are required. ValueError names the offending key. With
    ``check_only`` the key variable is not required: the parameters are
    validated, and an evaluation would answer an error if the key is still missing.
    """
    return LLMJudge(config_from_params(params), version=version, cache=cache, require_key=not check_only)
