"""Attribute values: OTLP ``AnyValue`` to plain Python, and typed reads.

``any_value`` and ``attributes_to_dict`` run once per attribute on the ingest
path, so they dispatch on ``WhichOneof`` once and special-case strings, the
commonest type. The ``as_*`` readers coerce what instrumentations actually
send (ints as strings or floats, numbers as strings) and never raise.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any


def any_value(value: Any) -> Any:
    """Convert an OTLP ``AnyValue`` message to a plain Python value.

    string, bool, int and double map to themselves, arrays to lists, kvlists
    to dicts, bytes to a base64 string; an unset value is None.
    """
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes_to_dict(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def attributes_to_dict(kvs: Iterable[Any]) -> dict[str, Any]:
    """Convert repeated ``KeyValue`` messages to a dict (a repeated key: last wins)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.value
        if value.WhichOneof("value") == "string_value":
            out[kv.key] = value.string_value
        else:
            out[kv.key] = any_value(value)
    return out


def as_str(value: Any) -> str | None:
    """A non-empty string, or None. Numbers are formatted; containers are rejected."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def as_int(value: Any) -> int | None:
    """An integer read from an int, a whole float or a decimal string, else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


def as_float(value: Any) -> float | None:
    """A float read from a number or a numeric string, else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def json_value(value: Any) -> Any:
    """Parse a string holding JSON; anything else (or unparseable text) is returned as is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def json_text(value: Any) -> str | None:
    """The value as display text: strings as they are, other values as compact JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def indexed(items: Iterable[tuple[str, Any]], prefix: str) -> list[tuple[int, dict[str, Any]]]:
    """Regroup flattened list attributes: ``prefix.N.rest = v`` -> ``[(N, {rest: v})]``.

    Indices sort numerically (10 after 9); keys whose segment after ``prefix``
    is not a number are ignored.
    """
    groups: dict[int, dict[str, Any]] = {}
    start = len(prefix)
    for key, value in items:
        if not key.startswith(prefix):
            continue
        index, sep, rest = key[start:].partition(".")
        if sep and index.isdigit():
            group = groups.get(int(index))
            if group is None:
                groups[int(index)] = {rest: value}
            else:
                group[rest] = value
    return sorted(groups.items())
