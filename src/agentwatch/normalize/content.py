"""Content fields of a normalized span: messages, texts, tool payloads, documents, evaluations.

These are the expensive fields (JSON parsing, regrouping flattened keys), so
``normalize(..., content=False)`` skips this module entirely and the read path
fills them on demand.
"""

from __future__ import annotations

from typing import Any

from agentwatch._types import NormalizedSpan, RawSpan
from agentwatch.normalize.attributes import as_float, as_str, indexed, json_text, json_value
from agentwatch.normalize.messages import (
    MESSAGE_EVENTS,
    event_message,
    first_output_text,
    flattened_messages,
    last_user_text,
    legacy_messages,
    message_text,
    parse_messages,
    parse_parts,
)

_OI_INPUT = "llm.input_messages."
_OI_OUTPUT = "llm.output_messages."
_LEGACY_PROMPT = "gen_ai.prompt."
_LEGACY_COMPLETION = "gen_ai.completion."
_OI_DOCUMENTS = "retrieval.documents."
_RERANKER_DOCUMENTS = "reranker.output_documents."
_OI_EVALUATIONS = "evaluations."
_FLAT_PREFIXES = (
    _OI_INPUT,
    _OI_OUTPUT,
    _LEGACY_PROMPT,
    _LEGACY_COMPLETION,
    _OI_DOCUMENTS,
    _RERANKER_DOCUMENTS,
    _OI_EVALUATIONS,
)
_DB_RESULT_EVENTS = ("db.query.result", "db.search.result")


def fill_content(span: NormalizedSpan, raw: RawSpan) -> None:
    """Set the content fields of ``span`` from ``raw``'s attributes and span events."""
    attrs = raw.attributes
    get = attrs.get
    flat = _flattened(attrs)

    span.system_instructions = parse_parts(get("gen_ai.system_instructions"))
    span.input_messages = _messages(attrs, flat, "input")
    span.output_messages = _messages(attrs, flat, "output")
    if not span.input_messages and not span.output_messages:
        _event_messages(span, raw.events)

    if span.kind == "tool" or "gen_ai.tool.call.arguments" in attrs or "gen_ai.tool.call.result" in attrs:
        span.tool_args, span.tool_result = _tool_payloads(attrs, span.kind == "tool")

    span.input_text = input_text(span, attrs)
    span.output_text = output_text(span, attrs)
    span.retrieved_documents = _documents(attrs, flat, raw.events)
    span.evaluations = _evaluations(flat.get(_OI_EVALUATIONS))


def input_text(span: NormalizedSpan, attrs: dict[str, Any]) -> str | None:
    """Section 6.7: the last user message's text, else the family's generic input."""
    if span.input_messages:
        return last_user_text(span.input_messages)
    get = attrs.get
    for key in ("gen_ai.retrieval.query.text", "gen_ai.tool.call.arguments", "input.value"):
        value = get(key)
        if value is not None:
            return json_text(value)
    return _traceloop_text(get("traceloop.entity.input"))


def output_text(span: NormalizedSpan, attrs: dict[str, Any]) -> str | None:
    """Section 6.7: the first output message's text, else the family's generic output."""
    if span.output_messages:
        return first_output_text(span.output_messages)
    get = attrs.get
    for key in ("gen_ai.tool.call.result", "output.value"):
        value = get(key)
        if value is not None:
            return json_text(value)
    return _traceloop_text(get("traceloop.entity.output"))


def _traceloop_text(value: Any) -> str | None:
    """Text of ``traceloop.entity.input``/``output``: unwraps ``{"args", "kwargs"}`` and message lists."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith('{"args"'):
        parsed = json_value(value)
        if isinstance(parsed, dict) and set(parsed) <= {"args", "kwargs"}:
            args = parsed.get("args") or []
            kwargs = parsed.get("kwargs") or {}
            if not args and not kwargs:
                return None
            if not kwargs and len(args) == 1 and isinstance(args[0], str):
                return args[0]
    elif value.startswith('[{"role"'):
        parsed = json_value(value)
        if isinstance(parsed, list):
            for message in reversed(parse_messages(parsed, "assistant")):
                if message.get("role") == "assistant":
                    text = message_text(message)
                    if text:
                        return text
    return value


def _flattened(attrs: dict[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    flat: dict[str, list[tuple[str, Any]]] = {}
    for key, value in attrs.items():
        if key.startswith(_FLAT_PREFIXES):
            for prefix in _FLAT_PREFIXES:
                if key.startswith(prefix):
                    bucket = flat.get(prefix)
                    if bucket is None:
                        flat[prefix] = [(key, value)]
                    else:
                        bucket.append((key, value))
                    break
    return flat


def _messages(attrs: dict[str, Any], flat: dict[str, list[tuple[str, Any]]], side: str) -> list[dict[str, Any]]:
    if side == "input":
        key, oi, legacy, role = "gen_ai.input.messages", _OI_INPUT, _LEGACY_PROMPT, "user"
    else:
        key, oi, legacy, role = "gen_ai.output.messages", _OI_OUTPUT, _LEGACY_COMPLETION, "assistant"
    value = attrs.get(key)
    if value is not None:
        messages = parse_messages(value, role)
        if messages:
            return messages
    items = flat.get(oi)
    if items:
        messages = flattened_messages(items, oi)
        if messages:
            return messages
    items = flat.get(legacy)
    if items:
        return legacy_messages(items, legacy, role)
    return []


def _event_messages(span: NormalizedSpan, events: list[dict[str, Any]]) -> None:
    for event in events:
        name = event.get("name")
        if name not in MESSAGE_EVENTS:
            continue
        attributes = event.get("attributes") or {}
        payload = attributes.get("body")
        if payload is None:
            payload = attributes.get("gen_ai.event.content")
        if payload is None:
            payload = attributes
        found = event_message(name, payload)
        if found is None:
            continue
        side, message = found
        (span.output_messages if side == "output" else span.input_messages).append(message)


def _tool_payloads(attrs: dict[str, Any], is_tool: bool) -> tuple[Any, Any]:
    get = attrs.get
    args = get("gen_ai.tool.call.arguments")
    result = get("gen_ai.tool.call.result")
    if args is not None:
        args = json_value(args)
    elif is_tool:
        value = get("input.value")
        if value is None:
            value = get("traceloop.entity.input")
            args = _traceloop_args(json_value(value)) if value is not None else None
        else:
            args = json_value(value)
    if result is not None:
        result = json_value(result)
    elif is_tool:
        value = get("output.value")
        if value is None:
            value = get("traceloop.entity.output")
        result = json_value(value) if value is not None else None
    return args, result


def _traceloop_args(value: Any) -> Any:
    if isinstance(value, dict) and set(value) <= {"args", "kwargs"}:
        args = value.get("args")
        kwargs = value.get("kwargs")
        if not args:
            return kwargs if kwargs is not None else {}
    return value


def _documents(
    attrs: dict[str, Any], flat: dict[str, list[tuple[str, Any]]], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    value = attrs.get("gen_ai.retrieval.documents")
    if value is not None:
        parsed = json_value(value)
        if isinstance(parsed, dict):
            parsed = [parsed]
        if isinstance(parsed, list):
            return [_document(item) for item in parsed if isinstance(item, dict)]
    for prefix in (_OI_DOCUMENTS, _RERANKER_DOCUMENTS):
        items = flat.get(prefix)
        if items:
            return [
                {
                    "id": fields.get("document.id"),
                    "score": as_float(fields.get("document.score")),
                    "content": fields.get("document.content"),
                    "metadata": json_value(fields.get("document.metadata")),
                }
                for _, fields in indexed(items, prefix)
            ]
    documents = []
    for event in events:
        name = event.get("name")
        if name in _DB_RESULT_EVENTS:
            fields = event.get("attributes") or {}
            score = fields.get(f"{name}.score")
            if score is None:
                score = fields.get(f"{name}.distance")
            documents.append(
                {
                    "id": fields.get(f"{name}.id"),
                    "score": as_float(score),
                    "content": fields.get(f"{name}.document"),
                    "metadata": json_value(fields.get(f"{name}.metadata")),
                }
            )
    return documents


def _document(item: dict[str, Any]) -> dict[str, Any]:
    document = {
        "id": item.get("id"),
        "score": as_float(item.get("score")),
        "content": item.get("content"),
        "metadata": item.get("metadata"),
    }
    for key, value in item.items():
        if key not in document:
            document[key] = value
    return document


def _evaluations(items: list[tuple[str, Any]] | None) -> list[dict[str, Any]]:
    if not items:
        return []
    evaluations = []
    for _, fields in indexed(items, _OI_EVALUATIONS):
        evaluation: dict[str, Any] = {
            "name": as_str(fields.get("evaluation.name")),
            "score": as_float(fields.get("evaluation.score")),
            "label": as_str(fields.get("evaluation.label")),
            "explanation": as_str(fields.get("evaluation.explanation")),
            "source": "span",
        }
        for extra in ("identifier", "annotator_kind"):
            value = fields.get(f"evaluation.{extra}")
            if value is not None:
                evaluation[extra] = value
        metadata = fields.get("evaluation.metadata")
        if metadata is not None:
            evaluation["metadata"] = json_value(metadata)
        evaluations.append(evaluation)
    return evaluations
