"""Constants and factories of the alert tests."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from agentwatch.alert.types import Candidate

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MINUTE = 60 * 10**9
NOW = datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc)


def candidate(**kw: Any) -> Candidate:
    values: dict[str, Any] = {
        "kind": "drift", "rule": "faithfulness-drop", "severity": "page", "summary": "faithfulness mean fell",
        "dimension": "faithfulness", "evaluator": "faithfulness", "evaluator_version": "v1",
        "labels": {"service": "support-agent", "agent_version": "1.4.0", "intent": "refund"},
        "figures": {"observed": 0.61, "baseline": 0.88, "z": -5.2, "n": 40}, "session_ids": ["s1", "s2"],
        "trace_ids": ["t1"], "owner": "quality-team",
    }
    values.update(kw)
    return Candidate(**values)
