"""``RawSpan`` -> ``NormalizedSpan``: one model whatever the instrumentation family.

``normalize(raw, content=False)`` is the ingest path: every column (kind,
operation, ids, session, user, agent, provider, models, tokens, cost, tool
identity, success and errors, finish reasons) but none of the content fields.
``normalize(raw)`` adds messages, texts, tool payloads, retrieved documents and
evaluations (see ``content``). Session inheritance across spans and turns are
the store's work; this module looks at one span only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentwatch._types import NormalizedSpan, RawSpan
from agentwatch.normalize.attributes import as_float, as_int, as_str, json_value
from agentwatch.normalize.content import fill_content
from agentwatch.normalize.conventions import (
    AGENT_ID_KEYS,
    AGENT_NAME_KEYS,
    CACHE_READ_KEYS,
    CACHE_WRITE_KEYS,
    FINISH_REASON_KEYS,
    MODEL_FALLBACK_KEYS,
    MODEL_REQUESTED_KEYS,
    MODEL_RESPONDED_KEYS,
    PROVIDER_KEYS,
    REASONING_KEYS,
    SESSION_KEYS,
    TOKENS_IN_KEYS,
    TOKENS_OUT_KEYS,
    TOOL_CALL_ID_KEYS,
    TOOL_NAME_KEYS,
    USER_KEYS,
    conventions_of,
    kind_of,
    name_subject,
    operation_of,
    provider_name,
)
from agentwatch.normalize.pricing import PriceTable
from agentwatch.normalize.redact import Redactor

if TYPE_CHECKING:
    from agentwatch.settings import Settings

_PRICED_KINDS = frozenset({"llm", "embedding"})
_TRACELOOP_PROPERTIES = "traceloop.association.properties."


@dataclass(frozen=True, slots=True)
class NormalizeOptions:
    """Per-deployment normalizer settings."""

    #: Span attributes naming the user's intent, first found wins; each is also
    #: looked up as ``traceloop.association.properties.<name>``.
    intent_attributes: tuple[str, ...] = ("agentwatch.intent", "app.intent", "intent")
    prices: PriceTable = field(default_factory=PriceTable.builtin)
    #: What ingest redacts before storing (e-mails and card numbers by default); see ``docs/redaction.md``.
    redaction: Redactor = field(default_factory=Redactor)
    intent_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys: list[str] = []
        for name in self.intent_attributes:
            keys.append(name)
            keys.append(_TRACELOOP_PROPERTIES + name)
        object.__setattr__(self, "intent_keys", tuple(keys))

    @classmethod
    def from_settings(cls, settings: Settings) -> NormalizeOptions:
        """The options a server runs with; its evaluation processes build the same ones."""
        return cls(
            intent_attributes=settings.intent_attributes,
            prices=PriceTable.builtin().with_overrides(settings.pricing),
            redaction=Redactor.from_section(settings.sections.get("redaction"),
                                            settings.config_path or "agentwatch.yaml"),
        )


DEFAULT_OPTIONS = NormalizeOptions()


def normalize(raw: RawSpan, options: NormalizeOptions = DEFAULT_OPTIONS, *, content: bool = True) -> NormalizedSpan:
    """Normalize one span; with ``content=False`` the content fields stay empty."""
    attrs = raw.attributes
    get = attrs.get
    name = raw.name
    kind = kind_of(attrs, name)
    operation = operation_of(attrs)
    traceloop_kind = get("traceloop.span.kind")

    agent_name = _first_str(get, AGENT_NAME_KEYS)
    if agent_name is None and kind == "agent":
        if traceloop_kind == "agent":
            agent_name = as_str(get("traceloop.entity.name"))
        if agent_name is None:
            agent_name = name_subject(name)
    tool_name = _first_str(get, TOOL_NAME_KEYS)
    if tool_name is None and kind == "tool":
        if traceloop_kind == "tool":
            tool_name = as_str(get("traceloop.entity.name"))
        if tool_name is None:
            tool_name = name_subject(name)

    provider = _first_str(get, PROVIDER_KEYS)
    if provider is not None:
        provider = provider_name(provider)
    model_requested = _first_str(get, MODEL_REQUESTED_KEYS)
    if model_requested is None:
        model_requested = _invocation_model(get("llm.invocation_parameters")) or _first_str(
            get, MODEL_FALLBACK_KEYS
        )
    model_responded = _first_str(get, MODEL_RESPONDED_KEYS)

    if operation == "fetch_response":
        tokens_in = tokens_out = cache_read = cache_write = reasoning = None
    else:
        tokens_in = _first_int(get, TOKENS_IN_KEYS)
        tokens_out = _first_int(get, TOKENS_OUT_KEYS)
        cache_read = _first_int(get, CACHE_READ_KEYS)
        cache_write = _first_int(get, CACHE_WRITE_KEYS)
        reasoning = _first_int(get, REASONING_KEYS)

    cost = as_float(get("llm.cost.total"))
    cost_source: str | None = "reported" if cost is not None else None
    if cost is None and kind in _PRICED_KINDS:
        cost = options.prices.cost(
            model_responded or model_requested, provider, tokens_in, tokens_out, cache_read, cache_write
        )
        if cost is not None:
            cost_source = "computed"

    status_error = raw.status_code == 2
    error_type = as_str(get("error.type"))
    failed = status_error or error_type is not None or get("gen_ai.task.status") == "failure"
    error_message = (raw.status_message or None) if status_error else None
    if failed and (error_type is None or error_message is None):
        exception = _last_exception(raw.events)
        if exception is not None:
            if error_type is None:
                error_type = as_str(exception.get("exception.type"))
            if error_message is None:
                error_message = as_str(exception.get("exception.message"))

    agent_version = as_str(get("gen_ai.agent.version")) or raw.resource.service_version

    span = NormalizedSpan(
        trace_id=raw.trace_id,
        span_id=raw.span_id,
        parent_span_id=raw.parent_span_id,
        start_ns=raw.start_ns,
        end_ns=raw.end_ns,
        name=name,
        convention=conventions_of(attrs),
        kind=kind,
        operation=operation,
        session_id=_first_str(get, SESSION_KEYS),
        user_id=_first_str(get, USER_KEYS),
        agent_name=agent_name,
        agent_id=_first_str(get, AGENT_ID_KEYS),
        agent_version=agent_version,
        service=raw.resource.service_name,
        intent=_first_str(get, options.intent_keys),
        provider=provider,
        model_requested=model_requested,
        model_responded=model_responded,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        tokens_cache_read=cache_read,
        tokens_cache_write=cache_write,
        tokens_reasoning=reasoning,
        cost_usd=cost,
        cost_source=cost_source,
        tool_name=tool_name,
        tool_call_id=_first_str(get, TOOL_CALL_ID_KEYS),
        success=not failed,
        error_type=error_type,
        error_message=error_message,
        finish_reasons=_finish_reasons(attrs),
        raw_attributes=attrs,
    )
    if content:
        fill_content(span, raw)
    return span


def _first_str(get: Any, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = get(key)
        if value is not None:
            text = as_str(value)
            if text is not None:
                return text
    return None


def _first_int(get: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = get(key)
        if value is not None:
            number = as_int(value)
            if number is not None:
                return number
    return None


def _invocation_model(value: Any) -> str | None:
    if value is None:
        return None
    params = json_value(value)
    if isinstance(params, dict):
        return as_str(params.get("model"))
    return None


def _finish_reasons(attrs: dict[str, Any]) -> list[str]:
    get = attrs.get
    for key in FINISH_REASON_KEYS:
        value = get(key)
        if value is None:
            continue
        if isinstance(value, list):
            reasons = [str(item) for item in value if item is not None]
        else:
            reasons = [str(value)]
        if reasons:
            return reasons
    reasons = []
    index = 0
    while (value := get(f"gen_ai.completion.{index}.finish_reason")) is not None:
        reasons.append(str(value))
        index += 1
    return reasons


def _last_exception(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.get("name") == "exception":
            return event.get("attributes") or {}
    return None
