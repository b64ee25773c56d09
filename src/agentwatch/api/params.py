"""Query parameters of the REST API: times, booleans, page sizes, and the check for unknown ones."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from agentwatch.errors import BadRequest


def parse_time(name: str, value: str | None) -> int | None:
    """Unix nanoseconds from an RFC 3339 time (``Z`` or an offset; naive means UTC)."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: {value!r} is not an RFC 3339 time such as 2026-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000


def query_bool(name: str, value: str | None) -> bool | None:
    """true/1/yes or false/0/no; None when absent."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name}: expected true or false, got {value!r}")


def query_limit(value: str | None) -> int:
    """A page size from 1 to 1000 (default 100)."""
    if value is None or value == "":
        return 100
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"limit: expected an integer from 1 to 1000, got {value!r}") from None
    if not 1 <= limit <= 1000:
        raise BadRequest(f"limit: expected an integer from 1 to 1000, got {limit}")
    return limit


def only_params(query: Any, known: Iterable[str]) -> None:
    """BadRequest naming the query parameters an endpoint does not take."""
    unknown = set(query) - set(known)
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
