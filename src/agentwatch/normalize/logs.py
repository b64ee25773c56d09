"""GenAI events that travel as log records, folded into the span they name.

Handled events (ingest conventions 4.4): ``gen_ai.evaluation.result``,
``gen_ai.client.inference.operation.details``, ``gen_ai.client.operation.exception``
and the deprecated per-message events (``gen_ai.system.message``,
``gen_ai.user.message``, ``gen_ai.assistant.message``, ``gen_ai.tool.message``,
``gen_ai.choice``). Other records are ignored.
"""

from __future__ import annotations

from typing import Any

from agentwatch._types import NormalizedSpan, RawLogRecord
from agentwatch.normalize.attributes import as_float, as_str
from agentwatch.normalize.content import input_text, output_text
from agentwatch.normalize.messages import MESSAGE_EVENTS, event_message, parse_messages, parse_parts

EVALUATION_RESULT = "gen_ai.evaluation.result"
OPERATION_DETAILS = "gen_ai.client.inference.operation.details"
OPERATION_EXCEPTION = "gen_ai.client.operation.exception"


def attach_log_records(span: NormalizedSpan, records: list[RawLogRecord]) -> None:
    """Fold the log records that name ``span`` into it (mutates ``span``).

    Messages from events fill only an empty side (span attributes win); texts
    are recomputed afterwards.
    """
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for record in records:
        name = record.event_name
        attrs = record.attributes
        if name == EVALUATION_RESULT:
            span.evaluations.append(evaluation_of(attrs))
        elif name == OPERATION_DETAILS:
            if not span.input_messages:
                span.input_messages = parse_messages(attrs.get("gen_ai.input.messages"), "user")
            if not span.output_messages:
                span.output_messages = parse_messages(attrs.get("gen_ai.output.messages"), "assistant")
            if not span.system_instructions:
                span.system_instructions = parse_parts(attrs.get("gen_ai.system_instructions"))
        elif name == OPERATION_EXCEPTION:
            span.success = False
            if span.error_type is None:
                span.error_type = as_str(attrs.get("exception.type")) or as_str(attrs.get("error.type"))
            if span.error_message is None:
                span.error_message = as_str(attrs.get("exception.message"))
        elif name in MESSAGE_EVENTS:
            found = event_message(name, record.body if record.body is not None else attrs)
            if found is not None:
                side, message = found
                (outputs if side == "output" else inputs).append(message)
    if inputs and not span.input_messages:
        span.input_messages = inputs
    if outputs and not span.output_messages:
        span.output_messages = outputs
    attrs = span.raw_attributes
    span.input_text = input_text(span, attrs)
    span.output_text = output_text(span, attrs)


def evaluation_of(attrs: dict[str, Any]) -> dict[str, Any]:
    """An evaluation entry from a ``gen_ai.evaluation.result`` event's attributes."""
    return {
        "name": as_str(attrs.get("gen_ai.evaluation.name")),
        "score": as_float(attrs.get("gen_ai.evaluation.score.value")),
        "label": as_str(attrs.get("gen_ai.evaluation.score.label")),
        "explanation": as_str(attrs.get("gen_ai.evaluation.explanation")),
        "source": "event",
        "response_id": as_str(attrs.get("gen_ai.response.id")),
        "error_type": as_str(attrs.get("error.type")),
    }
