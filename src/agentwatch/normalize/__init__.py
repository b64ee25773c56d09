"""Span normalization: any instrumentation family's span to one ``NormalizedSpan`` model."""

from __future__ import annotations

from agentwatch.normalize.logs import attach_log_records
from agentwatch.normalize.pricing import ModelPrice, PriceTable
from agentwatch.normalize.spans import DEFAULT_OPTIONS, NormalizeOptions, normalize

__all__ = [
    "DEFAULT_OPTIONS",
    "ModelPrice",
    "NormalizeOptions",
    "PriceTable",
    "attach_log_records",
    "normalize",
]
