"""Time as the HTTP contract, notifications and exports write it: RFC 3339 in UTC, to the nanosecond."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(value: int | datetime | None) -> str | None:
    """RFC 3339 UTC from Unix nanoseconds or an aware datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    seconds, nanos = divmod(int(value), 1_000_000_000)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"
