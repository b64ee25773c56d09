"""One reading of Retry-After for the judge client, the alert dispatcher and the traffic sender."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from agentwatch.alert.notify import MAX_RETRY_AFTER_S
from agentwatch.retry_after import retry_after_s

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_delta_seconds_and_dates() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": " 0.5 "}) == 0.5
    assert retry_after_s({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, now=NOW) == pytest.approx(30)
    assert retry_after_s({"retry-after": "Thu, 01 Jan 2026 00:01:00 GMT"}, now=NOW) == 60.0
    # An HTTP date is GMT: one written without a zone ("-0000") is read as GMT too.
    assert retry_after_s({"retry-after": "Thu, 01 Jan 2026 00:01:00 -0000"}, now=NOW) == 60.0
    # A date already past asks for no wait.
    assert retry_after_s({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, now=NOW) == 0.0


def test_milliseconds_win_when_valid() -> None:
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0
    assert retry_after_s({"retry-after-ms": "-5", "retry-after": "9"}) == 9.0


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", "", "   "])
def test_what_cannot_be_read_asks_for_nothing(value: str) -> None:
    assert retry_after_s({"retry-after": value}) is None


def test_no_header_asks_for_nothing() -> None:
    assert retry_after_s({}) is None


def test_the_caller_caps_the_wait() -> None:
    assert retry_after_s({"retry-after": "999999"}, at_most=MAX_RETRY_AFTER_S) == 3600.0
    assert retry_after_s({"retry-after": "12"}, at_most=60) == 12.0


def test_httpx_headers_are_read_whatever_their_case() -> None:
    headers = httpx.Response(429, headers={"Retry-After": "7"}).headers
    assert retry_after_s(headers) == 7.0
