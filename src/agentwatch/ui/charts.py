"""Charts drawn on the server as inline SVG: no script, no asset from elsewhere, readable without JS.

A line chart of a rolling mean with its baseline band and vertical markers
(evaluator and agent versions), a paired histogram (now against baseline),
and a bar strip of counts over time. Every mark has a ``<title>``, which the
browser shows on hover.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from markupsafe import Markup, escape

NS = 1_000_000_000


@dataclass(frozen=True)
class Marker:
    time_ns: int
    label: str
    kind: str  # "evaluator" or "agent"


def _time_label(ns: int, span_ns: int) -> str:
    moment = datetime.fromtimestamp(ns / NS, tz=timezone.utc)
    return moment.strftime("%H:%M" if span_ns <= 36 * 3600 * NS else "%m-%d")


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "-"


def line_chart(points: Sequence[tuple[int, float | None, float]], band: Sequence[tuple[int, float, float]],
               markers: Sequence[Marker], *, since_ns: int, until_ns: int, y_label: str, bucket_ns: int = 0,
               width: int = 760, height: int = 200) -> Markup:
    """``points``: (bucket start, value or None, n); ``band``: (bucket start, low, high), drawn at the
    middle of each bucket. The y axis runs from a tenth below the lowest value (at most 0.9, at least 0) to 1."""
    left, right, top, bottom = 40, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(until_ns - since_ns, 1)
    shown = [v for _, v, _ in points if v is not None]  # the band is clipped to the axis, never widens it
    floor = max(0.0, min(int(min(shown, default=0.0) * 10 - 1e-9) / 10, 0.9)) if shown else 0.0

    def x(ns: int) -> float:
        return left + plot_w * min(max((ns - since_ns) / span, 0.0), 1.0)

    def y(value: float) -> float:
        return top + plot_h * (1.0 - min(max((value - floor) / (1.0 - floor), 0.0), 1.0))

    half = bucket_ns // 2
    points = [(t + half, v, n) for t, v, n in points]
    band = [(t + half, lo, hi) for t, lo, hi in band]

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{escape(y_label)} over time">']
    for tick in (floor, (floor + 1.0) / 2, 1.0):
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                     f'<text class="axis" x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    for i in range(5):
        ns = since_ns + span * i // 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text class="axis" x="{x(ns):.1f}" y="{height - 6}" text-anchor="{anchor}">'
                     f'{_time_label(ns, span)}</text>')
    if band:
        upper = " ".join(f"{x(t):.1f},{y(hi):.1f}" for t, _, hi in band)
        lower = " ".join(f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band))
        parts.append(f'<polygon class="band" points="{upper} {lower}"><title>baseline band</title></polygon>')
    run: list[str] = []
    for t, value, _ in [*points, (until_ns, None, 0.0)]:
        if value is None:
            if len(run) > 1:
                parts.append(f'<polyline class="line" points="{" ".join(run)}"/>')
            run = []
            continue
        run.append(f"{x(t):.1f},{y(value):.1f}")
    for t, value, n in points:
        if value is not None:
            stamp = datetime.fromtimestamp(t / NS, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
            parts.append(f'<circle class="dot" cx="{x(t):.1f}" cy="{y(value):.1f}" r="2.5">'
                         f'<title>{stamp}Z {escape(y_label)} {_fmt(value)} (n={_fmt(n)})</title></circle>')
    for marker in markers:
        if since_ns <= marker.time_ns < until_ns:
            mx = x(marker.time_ns)
            parts.append(f'<g class="marker {escape(marker.kind)}"><line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" '
                         f'y2="{top + plot_h}"/><text x="{mx + 3:.1f}" y="{top + 10}">{escape(marker.label)}</text>'
                         f'<title>{escape(marker.kind)} version {escape(marker.label)} first seen</title></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(now: Sequence[int], baseline: Sequence[int], *, width: int = 360, height: int = 150) -> Markup:
    """Paired bars of the share of scores in each bin: the window against its baseline."""
    left, bottom, top = 30, 22, 8
    plot_w, plot_h = width - left - 6, height - top - bottom
    total_now, total_base = max(sum(now), 1), max(sum(baseline), 1)
    shares = [(a / total_now, b / total_base) for a, b in zip(now, baseline, strict=True)]
    peak = max([1e-9, *(max(a, b) for a, b in shares)])
    slot = plot_w / max(len(shares), 1)
    parts = [f'<svg class="chart hist" viewBox="0 0 {width} {height}" width="100%" role="img" '
             'aria-label="score distribution, now against baseline">']
    for i, (a, b) in enumerate(shares):
        x0 = left + i * slot
        for offset, share, cls, count, name in ((0.1, b, "base", baseline[i], "baseline"),
                                                (0.5, a, "now", now[i], "now")):
            h = plot_h * share / peak
            lo, hi = i / len(shares), (i + 1) / len(shares)
            parts.append(f'<rect class="{cls}" x="{x0 + slot * offset:.1f}" y="{top + plot_h - h:.1f}" '
                         f'width="{slot * 0.4:.1f}" height="{h:.1f}"><title>{name}: {count} scores in '
                         f'[{_fmt(lo)}, {_fmt(hi)}) ({share:.1%})</title></rect>')
    for i in (0, len(shares) // 2, len(shares)):
        parts.append(f'<text class="axis" x="{left + i * slot:.1f}" y="{height - 6}" text-anchor="middle">'
                     f'{_fmt(i / max(len(shares), 1))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(counts: Sequence[int], *, since_ns: int, bucket_ns: int, width: int = 240, height: int = 36) -> Markup:
    """A strip of bars, one per bucket, scaled to the largest."""
    peak = max([1, *counts])
    slot = width / max(len(counts), 1)
    parts = [f'<svg class="chart bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             'aria-label="hits over time">']
    for i, count in enumerate(counts):
        h = (height - 2) * count / peak
        stamp = datetime.fromtimestamp((since_ns + i * bucket_ns) / NS, tz=timezone.utc).strftime("%m-%d %H:%M")
        parts.append(f'<rect x="{i * slot:.1f}" y="{height - h:.1f}" width="{max(slot - 1, 1):.1f}" '
                     f'height="{h:.1f}"><title>{stamp}Z: {count}</title></rect>')
    parts.append("</svg>")
    return Markup("".join(parts))
