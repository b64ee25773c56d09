"""The judge's settings: :class:`JudgeConfig`, its validation, and reading it from ``agentwatch.yaml``.

A config holds how to reach the judge and what to ask it; every field is
checked when it is built (the prompt template included), so a judge that
starts is a judge that can be asked. :func:`config_from_params` reads an
``llm`` evaluator's ``params``: the fields of :class:`JudgeConfig`, with
``prompt`` and ``system`` as short names and ``${NAME}`` expanded in
``base_url``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentwatch.evaluate.judge.render import DEFAULT_PROMPT_TEMPLATE, DEFAULT_SYSTEM_PROMPT, compile_template


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    """How to reach the judge and what to ask it. Holds the key's variable name, never the key."""

    base_url: str
    model: str
    #: Environment variable holding the API key; None sends no Authorization header.
    api_key_env: str | None = "OPENAI_API_KEY"
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    temperature: float = 0.0
    #: Sent when set; some servers honour it for reproducible sampling.
    seed: int | None = None
    max_tokens: int | None = 512
    #: Send ``response_format: {"type": "json_object"}`` (not every server supports it).
    json_response_format: bool = False
    #: Bound on one attempt as a whole, in seconds.
    timeout_s: float = 30.0
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 20.0
    #: A Retry-After longer than this fails the evaluation at once.
    retry_after_max_s: float = 60.0
    max_concurrency: int = 100
    #: Each rendered field is cut to this many characters (head and tail kept).
    max_field_chars: int = 20_000
    #: USD per million tokens; both None looks the model up in the built-in price table.
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model.strip():
            raise ValueError("model must be a pinned model name")
        if self.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise ValueError("api_key_env must be the name of an environment variable")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if self.backoff_base_s < 0 or self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_base_s must be >= 0 and backoff_cap_s >= backoff_base_s")
        if self.retry_after_max_s < 0:
            raise ValueError("retry_after_max_s must be >= 0")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {self.max_tokens!r}")
        if self.max_field_chars < 100:
            raise ValueError(f"max_field_chars must be >= 100, got {self.max_field_chars!r}")
        prices = (self.price_input_per_mtok, self.price_output_per_mtok)
        if (prices[0] is None) != (prices[1] is None):
            raise ValueError("set both price_input_per_mtok and price_output_per_mtok, or neither")
        if any(p is not None and (not math.isfinite(p) or p < 0) for p in prices):
            raise ValueError("prices must be non-negative numbers (USD per million tokens)")
        compile_template(self.prompt_template)

    @property
    def chat_completions_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def prompt_hash(self) -> str:
        """sha256 of system prompt, template, model and temperature: the first 16 hex digits."""
        identity = json.dumps([self.system_prompt or "", self.prompt_template, self.model, self.temperature])
        return hashlib.sha256(identity.encode()).hexdigest()[:16]


_PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "base_url": (str,), "model": (str,), "api_key_env": (str, type(None)), "prompt_template": (str,),
    "system_prompt": (str, type(None)), "temperature": (int, float), "seed": (int, type(None)),
    "max_tokens": (int, type(None)), "json_response_format": (bool,), "timeout_s": (int, float),
    "max_retries": (int,), "backoff_base_s": (int, float), "backoff_cap_s": (int, float),
    "retry_after_max_s": (int, float), "max_concurrency": (int,), "max_field_chars": (int,),
    "price_input_per_mtok": (int, float, type(None)), "price_output_per_mtok": (int, float, type(None)),
}
#: Shorter spellings accepted in ``agentwatch.yaml``.
_PARAM_ALIASES = {"prompt": "prompt_template", "system": "system_prompt"}


def _expand_env(text: str) -> str:
    """``${NAME}`` replaced by the environment variable's value; ValueError when it is not set."""

    def value(match: re.Match[str]) -> str:
        found = os.environ.get(match.group(1))
        if found is None:
            raise ValueError(f"judge parameter 'base_url': environment variable {match.group(1)} is not set")
        return found

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value, text)


def config_from_params(params: Mapping[str, Any]) -> JudgeConfig:
    """A :class:`JudgeConfig` from an ``llm`` evaluator's ``params``; ValueError names the offending key."""
    values: dict[str, Any] = {}
    for key, value in params.items():
        name = _PARAM_ALIASES.get(key, key)
        if name not in _PARAM_TYPES:
            known = sorted({*_PARAM_TYPES, *_PARAM_ALIASES})
            raise ValueError(f"unknown judge parameter {key!r}; known: {', '.join(known)}")
        if name in values:
            raise ValueError(f"judge parameter {name!r} is given twice (as {key!r})")
        types = _PARAM_TYPES[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"judge parameter {key!r}: expected {expected}, got {type(value).__name__}")
        values[name] = value
    for required in ("base_url", "model"):
        if required not in values:
            raise ValueError(f"judge parameter {required!r} is required")
    values["base_url"] = _expand_env(values["base_url"])
    return JudgeConfig(**values)
