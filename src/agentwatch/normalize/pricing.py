"""Model prices and the cost of a call.

The built-in table holds the providers' published list prices, in USD per
million tokens, for a handful of common models **at the time of writing**.
Prices change and discounts (batch, committed use, regional) are not modelled:
users override or extend the table from their configuration
(``PriceTable.with_overrides``).

A model name matches the longest table key that is a prefix of it and ends at
a separator, so ``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini`` (not
``gpt-4o``) and ``claude-3-5-sonnet-20241022`` as ``claude-3-5-sonnet``.
Keys may be qualified by provider (``azure.ai.openai/gpt-4o``); the qualified
key is tried first. Bedrock ids (``us.anthropic.claude-sonnet-4-...-v1:0``) and
routed names (``openai/gpt-4o``) are also tried without their prefix.

Input tokens include cached tokens (the GenAI convention), so cache reads and
writes are taken out of the input count and priced at their own rate when the
table has one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentwatch.errors import ConfigError

_SEPARATORS = frozenset("-:@_/ ")
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens. Cache rates default to the input rate when None."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(
        self,
        tokens_in: int | None,
        tokens_out: int | None,
        cache_read: int | None = None,
        cache_write: int | None = None,
    ) -> float:
        """Cost in USD; ``tokens_in`` includes ``cache_read`` and ``cache_write``."""
        read = cache_read or 0
        write = cache_write or 0
        uncached = max((tokens_in or 0) - read - write, 0)
        read_rate = self.input if self.cache_read is None else self.cache_read
        write_rate = self.input if self.cache_write is None else self.cache_write
        micro = (
            uncached * self.input
            + read * read_rate
            + write * write_rate
            + (tokens_out or 0) * self.output
        )
        return micro / 1_000_000


#: Token counts at or above this are not real ones and get no cost.
MAX_TOKENS = 2**40

BUILTIN_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(2.50, 10.00, cache_read=1.25),
    "gpt-4o-2024-05-13": ModelPrice(5.00, 15.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60, cache_read=0.075),
    "gpt-4.1": ModelPrice(2.00, 8.00, cache_read=0.50),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60, cache_read=0.10),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40, cache_read=0.025),
    "o3-mini": ModelPrice(1.10, 4.40, cache_read=0.55),
    "o4-mini": ModelPrice(1.10, 4.40, cache_read=0.275),
    "text-embedding-3-small": ModelPrice(0.02, 0.0),
    "text-embedding-3-large": ModelPrice(0.13, 0.0),
    "text-embedding-ada-002": ModelPrice(0.10, 0.0),
    "claude-3-haiku": ModelPrice(0.25, 1.25, cache_read=0.03, cache_write=0.30),
    "claude-3-5-haiku": ModelPrice(0.80, 4.00, cache_read=0.08, cache_write=1.00),
    "claude-3-5-sonnet": ModelPrice(3.00, 15.00, cache_read=0.30, cache_write=3.75),
    "claude-3-7-sonnet": ModelPrice(3.00, 15.00, cache_read=0.30, cache_write=3.75),
    "claude-sonnet-4": ModelPrice(3.00, 15.00, cache_read=0.30, cache_write=3.75),
    "claude-opus-4": ModelPrice(15.00, 75.00, cache_read=1.50, cache_write=18.75),
}


class PriceTable:
    """Prices by model-name prefix, with a lookup cache."""

    __slots__ = ("_prices", "_keys", "_cache", "_lock")

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = {key.lower(): price for key, price in prices.items()}
        self._keys = sorted(self._prices, key=len, reverse=True)
        self._cache: dict[tuple[str | None, str], ModelPrice | None] = {}
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to decode worker processes: the prices travel, the cache and lock are made anew.
        return (PriceTable, (self._prices,))

    @classmethod
    def builtin(cls) -> PriceTable:
        """The built-in list prices."""
        return cls(BUILTIN_PRICES)

    @property
    def prices(self) -> dict[str, ModelPrice]:
        return dict(self._prices)

    def with_overrides(self, mapping: Mapping[str, Any]) -> PriceTable:
        """A new table with entries added or replaced from configuration.

        ``mapping`` is ``{model: {"input": usd_per_mtok, "output": ..., "cache_read": ...,
        "cache_write": ...}}``. For a model already in the table, missing rates keep
        their current value; a new model needs ``input`` and ``output``.
        """
        prices = dict(self._prices)
        for model, entry in mapping.items():
            if not isinstance(model, str) or not model:
                raise ConfigError(f"prices: model names must be non-empty strings, got {model!r}")
            key = model.lower()
            if isinstance(entry, ModelPrice):
                prices[key] = entry
                continue
            if not isinstance(entry, Mapping):
                raise ConfigError(f"prices.{model}: expected a mapping of rates, got {type(entry).__name__}")
            unknown = set(entry) - {"input", "output", "cache_read", "cache_write"}
            if unknown:
                raise ConfigError(f"prices.{model}: unknown rate(s) {', '.join(sorted(map(str, unknown)))}")
            rates = {name: _rate(model, name, value) for name, value in entry.items()}
            base = prices.get(key)
            if base is None:
                missing = [name for name in ("input", "output") if rates.get(name) is None]
                if missing:
                    raise ConfigError(f"prices.{model}: a new model needs {' and '.join(missing)}")
                prices[key] = ModelPrice(
                    input=rates["input"],  # type: ignore[arg-type]
                    output=rates["output"],  # type: ignore[arg-type]
                    cache_read=rates.get("cache_read"),
                    cache_write=rates.get("cache_write"),
                )
            else:
                prices[key] = ModelPrice(
                    input=base.input if rates.get("input") is None else rates["input"],  # type: ignore[arg-type]
                    output=base.output if rates.get("output") is None else rates["output"],  # type: ignore[arg-type]
                    cache_read=rates["cache_read"] if "cache_read" in rates else base.cache_read,
                    cache_write=rates["cache_write"] if "cache_write" in rates else base.cache_write,
                )
        return PriceTable(prices)

    def lookup(self, model: str | None, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model`` (longest matching prefix), or None if unknown."""
        if not model:
            return None
        cache_key = (provider, model)
        cache = self._cache
        if cache_key in cache:
            return cache[cache_key]
        price = self._match(model.lower(), provider.lower() if provider else None)
        with self._lock:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[cache_key] = price
        return price

    def cost(
        self,
        model: str | None,
        provider: str | None,
        tokens_in: int | None,
        tokens_out: int | None,
        cache_read: int | None = None,
        cache_write: int | None = None,
    ) -> float | None:
        """Cost in USD of one call, or None when the model is unknown or no tokens were counted."""
        if tokens_in is None and tokens_out is None:
            return None
        price = self.lookup(model, provider)
        if price is None:
            return None
        counts = (tokens_in, tokens_out, cache_read, cache_write)
        if any(n is not None and not 0 <= n < MAX_TOKENS for n in counts):
            return None  # not a real token count: no cost rather than an overflow
        return price.cost(tokens_in, tokens_out, cache_read, cache_write)

    def _match(self, model: str, provider: str | None) -> ModelPrice | None:
        candidates = []
        if provider:
            candidates.append(f"{provider}/{model}")
        candidates.append(model)
        if "/" in model:
            candidates.append(model.rsplit("/", 1)[1])
        if "anthropic." in model:
            candidates.append(model.split("anthropic.", 1)[1])
        for candidate in candidates:
            for key in self._keys:
                if candidate.startswith(key) and (
                    len(candidate) == len(key) or candidate[len(key)] in _SEPARATORS
                ):
                    return self._prices[key]
        return None


def _rate(model: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(
            f"prices.{model}.{name}: expected a non-negative number (USD per million tokens), got {value!r}"
        )
    return float(value)
