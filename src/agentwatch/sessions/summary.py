"""A session's summary, built from its spans' stored columns.

The same function gives the delta of a batch of new spans (merged into the
stored row by the writer's upsert: counts add up, start takes the minimum,
end the maximum, the first known service, agent, intent and user stay) and,
on the rare paths where spans move or are replaced, the whole summary again.

Tokens and cost count only llm and embedding spans, never the agent spans
that repeat their usage; agent or chain spans count only for a session that
has no llm or embedding span at all (``agent_tokens_*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from agentwatch._types import USAGE_KINDS

_AGENT_USAGE_KINDS = frozenset({"agent", "chain"})
#: Spans whose time is the agent's own work (not the user's pauses between turns).
WORK_KINDS = frozenset({"llm", "tool", "retrieval", "embedding"})


@dataclass(slots=True)
class Summary:
    start_ns: int
    end_ns: int
    spans: int = 0
    turns: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    agent_tokens_in: int = 0
    agent_tokens_out: int = 0
    usage_spans: int = 0
    cost_usd: float = 0.0
    #: Time the agent spent working: the summed durations of model, tool, retrieval and embedding spans.
    work_ms: float = 0.0
    service: str | None = None
    agent_name: str | None = None
    agent_version: str | None = None
    intent: str | None = None
    user_id: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


#: Span columns the summary reads.
SPAN_COLUMNS = (
    "parent_span_id", "kind", "start_ns", "end_ns", "success", "tokens_in", "tokens_out", "cost_usd",
    "service", "agent_name", "agent_version", "intent", "user_id",
)


def summarize(rows: Iterable[Mapping[str, Any]]) -> Summary | None:
    """The summary of these spans; None when there are none."""
    ordered = sorted(rows, key=lambda r: r["start_ns"])
    if not ordered:
        return None
    s = Summary(start_ns=ordered[0]["start_ns"], end_ns=max(r["end_ns"] for r in ordered))
    agent_name_from_agent: str | None = None
    for r in ordered:
        kind = r["kind"]
        s.spans += 1
        if r["parent_span_id"] is None:
            s.turns += 1
        ok = r["success"]
        if not ok:
            s.errors += 1
        if kind == "llm":
            s.llm_calls += 1
        elif kind == "tool":
            s.tool_calls += 1
            if not ok:
                s.tool_errors += 1
        if kind in WORK_KINDS:
            s.work_ms += max(r["end_ns"] - r["start_ns"], 0) / 1e6
        if kind in USAGE_KINDS:
            s.usage_spans += 1
            s.tokens_in += r["tokens_in"] or 0
            s.tokens_out += r["tokens_out"] or 0
            s.cost_usd += r["cost_usd"] or 0.0
        elif kind in _AGENT_USAGE_KINDS:
            s.agent_tokens_in += r["tokens_in"] or 0
            s.agent_tokens_out += r["tokens_out"] or 0
        if kind == "agent" and agent_name_from_agent is None and r["agent_name"]:
            agent_name_from_agent = r["agent_name"]
        s.service = s.service or r["service"]
        s.agent_name = s.agent_name or r["agent_name"]
        s.agent_version = s.agent_version or r["agent_version"]
        s.intent = s.intent or r["intent"]
        s.user_id = s.user_id or r["user_id"]
    s.agent_name = agent_name_from_agent or s.agent_name
    return s
