"""JSON shapes of the HTTP contract: sessions, spans and span trees."""

from __future__ import annotations

import dataclasses
from typing import Any

from agentwatch.normalize import NormalizeOptions
from agentwatch.sessions.rebuild import normalized_span
from agentwatch.timefmt import rfc3339


def session_json(row: dict[str, Any], project: str) -> dict[str, Any]:
    if row["usage_spans"]:
        tokens_in, tokens_out = row["tokens_in"], row["tokens_out"]
    else:
        tokens_in, tokens_out = row["agent_tokens_in"], row["agent_tokens_out"]
    return {
        "session_id": row["session_id"],
        "project": project,
        "service": row["service"],
        "agent_name": row["agent_name"],
        "agent_version": row["agent_version"],
        "intent": row["intent"],
        "user_id": row["user_id"],
        "start_time": rfc3339(row["start_ns"]),
        "end_time": rfc3339(row["end_ns"]),
        "duration_ms": round((row["end_ns"] - row["start_ns"]) / 1e6, 3),
        "turns": max(row["turns"], 1),
        "spans": row["spans"],
        "llm_calls": row["llm_calls"],
        "tool_calls": row["tool_calls"],
        "tool_errors": row["tool_errors"],
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": round(row["cost_usd"], 8),
        "work_ms": round(float(row.get("work_ms") or 0.0), 3),
        "error": row["errors"] > 0,
        "flagged": bool(row["flagged"]),
        "sampled": bool(row["sampled"]),
        "complete": bool(row["complete"]),
        "trace_ids": row.get("trace_ids", []),
    }


def span_json(row: dict[str, Any], options: NormalizeOptions) -> dict[str, Any]:
    """The whole normalized span, rebuilt from the stored row and its log records."""
    out = dataclasses.asdict(normalized_span(row, options))
    out["start_time"] = rfc3339(out.pop("start_ns"))
    out["end_time"] = rfc3339(out.pop("end_ns"))
    out["duration_ms"] = round((row["end_ns"] - row["start_ns"]) / 1e6, 3)
    out["status"] = {"code": row["status_code"], "message": row["status_message"]}
    out["resource"] = row["resource"] or {}
    out["scope"] = {"name": row["scope_name"], "version": row["scope_version"]}
    out["events"] = row["events"] or []
    return out


def span_tree(rows: list[dict[str, Any]], options: NormalizeOptions) -> list[dict[str, Any]]:
    """Spans nested under their parents; roots (or orphans) in start order, with turns numbered."""
    spans = [span_json(r, options) for r in rows]
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    roots = []
    for s in spans:
        s["children"] = []
    for s in spans:
        parent = by_id.get((s["trace_id"], s["parent_span_id"])) if s["parent_span_id"] else None
        if parent is None:
            roots.append(s)
        else:
            parent["children"].append(s)
    for index, root in enumerate(roots):
        _number_turn(root, index, f"{root['trace_id']}:{root['span_id']}")
    return roots


def _number_turn(node: dict[str, Any], index: int, turn_id: str) -> None:
    stack = [node]
    while stack:
        current = stack.pop()
        current["turn_index"] = index
        current["turn_id"] = turn_id
        stack.extend(current["children"])


def score_json(row: dict[str, Any]) -> dict[str, Any]:
    """A score as the HTTP contract names its fields."""
    return {
        "session_id": row["session_id"],
        "span_id": row["span_id"] or None,
        "evaluator": row["evaluator"],
        "evaluator_version": row["evaluator_version"],
        "status": row["status"],
        "score": row["score"],
        "passed": row["passed"],
        "threshold": row["threshold"],
        "direction": row["direction"],
        "reason": row["reason"],
        "error": row["error"],
        "raw": row.get("raw"),
        "judge_model": row["judge_model"],
        "prompt_hash": row["prompt_hash"],
        "dataset_version": row["dataset_version"],
        "inclusion_probability": row["inclusion_probability"],
        "latency_ms": row["latency_ms"],
        "cost_usd": row["cost_usd"],
        "tokens_in": row.get("tokens_in"),
        "tokens_out": row.get("tokens_out"),
        "shadow": bool(row.get("shadow")),
        "event_time": rfc3339(row["event_time_ns"]),
        "created_at": rfc3339(row["created_at"]) if row.get("created_at") else None,
    }
