"""How long a server asks to be left alone: one reading of ``Retry-After``, for every client here.

The judge client, the alert dispatcher and the traffic sender all read a 429's
or a 503's wait with :func:`retry_after_s`:

- ``retry-after-ms`` (OpenAI-compatible servers), when valid, wins;
- ``Retry-After`` as delta-seconds (decimals accepted), or as an HTTP date
  (always GMT, a date without a zone is read as GMT), counted from ``now``;
  a date already past asks for no wait;
- anything else (a negative number, text, nothing) answers None: the caller
  falls back to its own backoff. ``at_most`` caps the answer.

>>> retry_after_s({"retry-after": "120"})
120.0
>>> retry_after_s({"retry-after-ms": "250", "retry-after": "9"})
0.25
>>> retry_after_s({"retry-after": "Thu, 01 Jan 2026 00:31:00 GMT"}, now=1767225600.0)
1860.0
>>> retry_after_s({"retry-after": "999999"}, at_most=3600)
3600.0
>>> retry_after_s({"retry-after": "soon"}) is None
True
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import timezone
from typing import Mapping


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None,
                  at_most: float | None = None) -> float | None:
    """Seconds to wait from a response's headers (case-insensitive mappings such as httpx's, or lower-case
    keys), or None when they ask for nothing readable. ``now``: Unix seconds (default: the wall clock)."""
    millis = headers.get("retry-after-ms")
    wait = _seconds(millis.strip()) if millis is not None else None
    if wait is not None:
        wait /= 1000.0
    else:
        raw = (headers.get("retry-after") or "").strip()
        if not raw:
            return None
        wait = _seconds(raw)
        if wait is None:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            wait = max(when.timestamp() - (time.time() if now is None else now), 0.0)
    return wait if at_most is None else float(min(wait, at_most))
