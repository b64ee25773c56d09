"""Chat messages in the GenAI "parts" model, from every encoding met on the wire.

Target shape (ingest conventions 4.3)::

    [{"role": "user", "parts": [{"type": "text", "content": "..."},
                                {"type": "tool_call", "id": ..., "name": ..., "arguments": {...}},
                                {"type": "tool_call_response", "id": ..., "response": ...}]}]

Sources: the GenAI attributes (JSON string or structured value), OpenAI-style
``{"role", "content", "tool_calls"}`` dicts (legacy events, framework
outputs), OpenInference's flattened ``llm.*_messages.N.message.*`` keys and
OpenLLMetry's flattened ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` keys.
Part types this module does not know are kept unchanged. Values that came from
span attributes are never mutated; changed parts are new dicts.
"""

from __future__ import annotations

import json
from typing import Any

from agentwatch.normalize.attributes import indexed, json_value

#: Deprecated per-message events (span events or log records) -> (side, default role).
MESSAGE_EVENTS = {
    "gen_ai.system.message": ("input", "system"),
    "gen_ai.user.message": ("input", "user"),
    "gen_ai.assistant.message": ("input", "assistant"),
    "gen_ai.tool.message": ("input", "tool"),
    "gen_ai.choice": ("output", "assistant"),
}


def text_part(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def parse_messages(value: Any, default_role: str) -> list[dict[str, Any]]:
    """Messages from a GenAI messages attribute: a JSON string or a structured value.

    Text that is not JSON becomes one text message of ``default_role``.
    """
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value, parsed = _loads(value)
        if not parsed:
            return [{"role": default_role, "parts": [text_part(value)]}]
    if isinstance(value, dict):
        inner = value.get("messages")
        value = inner if isinstance(inner, list) else [value]
    if not isinstance(value, list):
        return [{"role": default_role, "parts": [text_part(str(value))]}]
    messages = []
    for item in value:
        message = coerce_message(item, default_role)
        if message is not None:
            messages.append(message)
    return messages


def _loads(text: str) -> tuple[Any, bool]:
    """``(value, True)`` for JSON text; ``(text, False)`` for anything else (including nesting too deep)."""
    try:
        return json.loads(text), True
    except (ValueError, RecursionError):
        return text, False


def parse_parts(value: Any) -> list[dict[str, Any]]:
    """A bare parts array (``gen_ai.system_instructions``), JSON or structured.

    Plain text becomes one text part; messages given instead of parts are flattened.
    """
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value, _ = _loads(value)
        if isinstance(value, str):
            return [text_part(value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return [text_part(str(value))]
    parts: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("parts"), list):
            parts.extend(normalize_parts(item["parts"]))
        elif isinstance(item, dict) and "type" not in item and "content" in item:
            parts.extend(content_parts(item["content"]))
        else:
            parts.extend(normalize_parts([item]))
    return parts


def coerce_message(item: Any, default_role: str | None = None) -> dict[str, Any] | None:
    """One message in the parts model, from a parts-model or OpenAI-style dict (or plain text)."""
    if isinstance(item, str):
        return {"role": default_role, "parts": [text_part(item)]}
    if not isinstance(item, dict):
        return None
    parts = item.get("parts")
    if isinstance(parts, list):
        fixed = normalize_parts(parts)
        if fixed is parts and item.get("role"):
            return item
        message = dict(item)
        message["parts"] = fixed
        message["role"] = item.get("role") or default_role
        return message
    return openai_message(item, default_role)


def openai_message(item: dict[str, Any], default_role: str | None) -> dict[str, Any]:
    """A parts-model message from ``{"role", "content", "tool_calls", "tool_call_id"|"id", "name"}``."""
    role = item.get("role") or default_role
    parts: list[dict[str, Any]] = []
    content = item.get("content")
    call_id = item.get("tool_call_id")
    if call_id is None and role == "tool":
        call_id = item.get("id")
    if content is not None:
        if role == "tool" and call_id is not None:
            parts.append({"type": "tool_call_response", "id": call_id, "response": content})
        else:
            parts.extend(content_parts(content))
    tool_calls = item.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            if isinstance(call, dict):
                parts.append(tool_call_part(call))
    message: dict[str, Any] = {"role": role, "parts": parts}
    name = item.get("name")
    if isinstance(name, str) and name:
        message["name"] = name
    finish_reason = item.get("finish_reason")
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    return message


def tool_call_part(call: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_call`` part from an OpenAI ``{id, function: {name, arguments}}`` or flat call."""
    function = call.get("function")
    source = function if isinstance(function, dict) else call
    return {
        "type": "tool_call",
        "id": call.get("id"),
        "name": source.get("name"),
        "arguments": json_value(source.get("arguments")),
    }


def content_parts(content: Any) -> list[dict[str, Any]]:
    """Parts from an OpenAI ``content``: a string, a list of content blocks, or one block."""
    if content is None:
        return []
    if isinstance(content, str):
        if content.startswith("[{"):
            blocks, _ = _loads(content)
            if isinstance(blocks, list) and all(isinstance(b, dict) and "type" in b for b in blocks):
                return normalize_parts(blocks)
        return [text_part(content)]
    if isinstance(content, dict):
        return normalize_parts([content])
    if isinstance(content, list):
        return normalize_parts(content)
    return [text_part(str(content))]


def normalize_parts(parts: list[Any]) -> list[dict[str, Any]]:
    """Parts with aliases resolved; returns ``parts`` itself when nothing needed changing."""
    out: list[dict[str, Any]] | None = None
    for i, part in enumerate(parts):
        fixed = _fix_part(part)
        if fixed is not part and out is None:
            out = list(parts[:i])
        if out is not None:
            out.append(fixed)
    return parts if out is None else out


def _fix_part(part: Any) -> Any:
    if isinstance(part, str):
        return text_part(part)
    if not isinstance(part, dict):
        return text_part(str(part))
    kind = part.get("type")
    if kind == "text":
        if "content" not in part and "text" in part:
            fixed = dict(part)
            fixed["content"] = fixed.pop("text")
            return fixed
        return part
    if kind == "tool_call":
        arguments = part.get("arguments")
        if isinstance(arguments, str):
            parsed = json_value(arguments)
            if parsed is not arguments:
                fixed = dict(part)
                fixed["arguments"] = parsed
                return fixed
        return part
    if kind == "tool_call_response":
        if "response" not in part and "result" in part:
            fixed = dict(part)
            fixed["response"] = fixed.pop("result")
            return fixed
        return part
    if kind is None and "content" in part and isinstance(part["content"], str):
        fixed = dict(part)
        fixed["type"] = "text"
        return fixed
    if kind == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        return {"type": "uri", "modality": "image", "uri": url}
    return part


def flattened_messages(items: list[tuple[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """OpenInference ``{prefix}N.message.{role,content,contents.M.*,tool_calls.M.*,tool_call_id,name}``."""
    messages = []
    for _, fields in indexed(items, prefix):
        role = fields.get("message.role")
        parts: list[dict[str, Any]] = []
        content = fields.get("message.content")
        call_id = fields.get("message.tool_call_id")
        if content is not None:
            if role == "tool" and call_id is not None:
                parts.append({"type": "tool_call_response", "id": call_id, "response": content})
            else:
                parts.extend(content_parts(content))
        entries = list(fields.items())
        for _, block in indexed(entries, "message.contents."):
            text = block.get("message_content.text")
            image = block.get("message_content.image.image.url")
            if text is not None:
                parts.append(text_part(text))
            elif image is not None:
                parts.append({"type": "uri", "modality": "image", "uri": image})
        for _, call in indexed(entries, "message.tool_calls."):
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("tool_call.id"),
                    "name": call.get("tool_call.function.name"),
                    "arguments": json_value(call.get("tool_call.function.arguments")),
                }
            )
        message: dict[str, Any] = {"role": role, "parts": parts}
        name = fields.get("message.name")
        if name:
            message["name"] = name
        messages.append(message)
    return messages


def legacy_messages(items: list[tuple[str, Any]], prefix: str, default_role: str) -> list[dict[str, Any]]:
    """OpenLLMetry ``{prefix}N.{role,content,tool_call_id,finish_reason,tool_calls.M.{id,name,arguments}}``."""
    messages = []
    for _, fields in indexed(items, prefix):
        message: dict[str, Any] = {
            "role": fields.get("role") or default_role,
            "content": fields.get("content"),
            "tool_call_id": fields.get("tool_call_id"),
            "finish_reason": fields.get("finish_reason"),
            "tool_calls": [
                {"id": call.get("id"), "name": call.get("name"), "arguments": call.get("arguments")}
                for _, call in indexed(list(fields.items()), "tool_calls.")
            ],
        }
        messages.append(openai_message(message, default_role))
    return messages


def event_message(name: str, payload: Any) -> tuple[str, dict[str, Any]] | None:
    """``(side, message)`` for a deprecated per-message event, else None.

    ``payload`` is the log body or the span event's attributes: ``{content, role,
    tool_calls, id}``, or for ``gen_ai.choice`` ``{index, finish_reason, message}``.
    """
    spec = MESSAGE_EVENTS.get(name)
    if spec is None:
        return None
    side, default_role = spec
    payload = json_value(payload)
    if isinstance(payload, str):
        return side, {"role": default_role, "parts": [text_part(payload)]}
    if not isinstance(payload, dict):
        return side, {"role": default_role, "parts": []}
    if side == "output":
        inner = json_value(payload.get("message"))
        body = dict(inner) if isinstance(inner, dict) else {}
        if "content" not in body and "content" in payload:
            body["content"] = payload["content"]
        if "tool_calls" not in body and "tool_calls" in payload:
            body["tool_calls"] = payload["tool_calls"]
        if payload.get("finish_reason") is not None:
            body["finish_reason"] = payload["finish_reason"]
        return side, openai_message(body, default_role)
    tool_calls = json_value(payload.get("tool_calls"))
    if tool_calls is not payload.get("tool_calls"):
        payload = dict(payload, tool_calls=tool_calls)
    return side, openai_message(payload, default_role)


def message_text(message: dict[str, Any]) -> str | None:
    """The message's text parts joined by newlines, or None when it has none."""
    parts = message.get("parts")
    if not isinstance(parts, list):
        return None
    texts = [
        part["content"]
        for part in parts
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("content"), str)
    ]
    return "\n".join(texts) if texts else None


def last_user_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of the last ``user`` message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return None


def first_output_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of the first output message."""
    return message_text(messages[0]) if messages else None
