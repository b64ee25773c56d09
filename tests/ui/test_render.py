"""The dashboard's pure pieces: SLO states, times, messages, safe redirects and the SVG charts."""

from __future__ import annotations

import re

from agentwatch.ui import charts
from agentwatch.ui.pages import _local, _when, message_text, slo_state

NS = 1_000_000_000
HOUR = 3600 * NS
T0 = 1_767_225_600 * NS


def entry(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "goal", "value": 0.99, "error_budget_left": 0.5, "burn_rates": {"1h": 0.5}}
    return {**base, **kw}


def test_slo_states() -> None:
    assert slo_state(entry(), set()) == "ok"
    assert slo_state(entry(burn_rates={"1h": 2.0, "6h": None}), set()) == "burning"
    assert slo_state(entry(error_budget_left=0.0), set()) == "breached"
    assert slo_state(entry(value=None), set()) == "no-data"
    assert slo_state(entry(), {"slo:goal"}) == "firing"


def test_times_read_the_apis_rfc3339_and_nanoseconds() -> None:
    assert _when("2026-01-01T07:05:00.123456789Z") == "2026-01-01 07:05:00"
    assert _when("2026-01-01T07:05:00Z") == "2026-01-01 07:05:00"
    assert _when(T0 + HOUR) == "2026-01-01 01:00:00"
    assert _when(None) == "" and _when("") == ""


def test_messages_show_text_tool_calls_and_responses() -> None:
    message = {"role": "assistant", "parts": [{"type": "text", "content": "Checking."},
                                              {"type": "tool_call", "name": "lookup_order",
                                               "arguments": {"order_id": "A-1"}},
                                              {"type": "tool_call_response", "response": {"status": "shipped"}}]}
    text = message_text(message)
    assert "Checking." in text and "lookup_order" in text and '"order_id": "A-1"' in text and "shipped" in text


def test_redirects_stay_on_this_server() -> None:
    assert _local("https://evil.example/sessions?x=1") == "/sessions?x=1"
    assert _local("//evil.example/x") == "/x"  # its path, on this server
    assert _local("/alerts/3?notice=ok") == "/alerts/3?notice=ok"
    assert _local("javascript:alert(1)") == "/"


def test_line_chart_breaks_at_empty_buckets_and_draws_the_band_and_markers() -> None:
    points = [(T0, 0.95, 30.0), (T0 + HOUR, 0.9, 28.0), (T0 + 2 * HOUR, None, 0.0), (T0 + 3 * HOUR, 0.97, 31.0),
              (T0 + 4 * HOUR, 0.96, 30.0)]
    band = [(t, 0.0 if t == T0 else 0.8, 1.0) for t, v, _ in points if v is not None]  # a wide band: clipped
    svg = charts.line_chart(points, band, [charts.Marker(T0 + 3 * HOUR, "v2", "agent"),
                                           charts.Marker(T0 - HOUR, "old", "evaluator")],
                            since_ns=T0, until_ns=T0 + 5 * HOUR, y_label="pass rate", bucket_ns=HOUR)
    assert svg.count('<polyline class="line"') == 2  # the empty bucket breaks the line
    assert svg.count('<circle class="dot"') == 4
    assert '<polygon class="band"' in svg
    assert "v2" in svg and "old" not in svg  # a marker outside the range is not drawn
    assert ">0.8</text>" in svg and ">0</text>" not in svg  # a tenth below the lowest value, whatever the band
    assert "(n=30)" in svg


def test_histogram_compares_shares_and_escapes_nothing_it_should_not() -> None:
    svg = charts.histogram([0, 0, 0, 0, 0, 0, 0, 0, 10, 90], [0, 0, 0, 0, 0, 0, 0, 0, 5, 195])
    assert svg.count('<rect class="now"') == 10 and svg.count('<rect class="base"') == 10
    assert "90 scores in [0.9, 1) (90.0%)" in svg and "195 scores in [0.9, 1) (97.5%)" in svg
    bars = charts.bars([0, 3, 1], since_ns=T0, bucket_ns=HOUR)
    assert len(re.findall(r"<rect ", bars)) == 3 and "01-01 01:00Z: 3" in bars
    marked = charts.line_chart([], [], [charts.Marker(T0, "<script>", "agent")], since_ns=T0, until_ns=T0 + HOUR,
                               y_label="x")
    assert "<script>" not in marked and "&lt;script&gt;" in marked
