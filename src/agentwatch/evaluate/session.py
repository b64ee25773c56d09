"""The normalized session that evaluators read.

A :class:`SessionView` holds the session's summary, its normalized spans in
start order and its turns. A turn is one exchange: a user message and what
the agent did for it. Usually that is one root span with every span below
it; a root whose model calls see a new user message (an agent span that
serves a whole conversation) is split there::

    view.turns[0].user_text        # what the user asked
    view.turns[0].answer           # what the agent answered
    view.turns[0].tool_calls       # ToolCall(name, arguments, result, success, ...)
    view.turns[0].evidence         # tool results and retrieved documents, as text
    view.called("refund_api")      # did any turn call it?
    view.transcript()              # the conversation as plain text, for a judge
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentwatch._types import NormalizedSpan
from agentwatch.normalize import NormalizeOptions
from agentwatch.sessions.rebuild import normalized_span


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Any
    result: Any
    success: bool
    error_type: str | None
    error_message: str | None
    call_id: str | None
    span_id: str
    start_ns: int
    end_ns: int


@dataclass(slots=True)
class Turn:
    index: int
    spans: list[NormalizedSpan] = field(default_factory=list)

    @property
    def llm_spans(self) -> list[NormalizedSpan]:
        return [s for s in self.spans if s.kind == "llm"]

    @property
    def user_text(self) -> str:
        """The user's last message as the first model call of the turn saw it."""
        for span in self.llm_spans:
            if span.input_text:
                return span.input_text
        root = self.spans[0] if self.spans else None
        return (root.input_text or "") if root else ""

    @property
    def answer(self) -> str:
        """The agent's final text of the turn: the last model output with text."""
        for span in reversed(self.llm_spans):
            if span.output_text:
                return span.output_text
        root = self.spans[0] if self.spans else None
        return (root.output_text or "") if root else ""

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(name=s.tool_name or s.name, arguments=s.tool_args, result=s.tool_result, success=s.success,
                     error_type=s.error_type, error_message=s.error_message, call_id=s.tool_call_id,
                     span_id=s.span_id, start_ns=s.start_ns, end_ns=s.end_ns)
            for s in self.spans if s.kind == "tool"
        ]

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [doc for s in self.spans for doc in s.retrieved_documents]

    @property
    def evidence(self) -> list[str]:
        """What the agent could know this turn: tool results and retrieved document contents, as text."""
        out = []
        for call in self.tool_calls:
            if call.result is not None:
                out.append(call.result if isinstance(call.result, str) else json.dumps(call.result, default=str))
        for doc in self.documents:
            content = doc.get("content")
            if content:
                out.append(content if isinstance(content, str) else json.dumps(content, default=str))
        return out


@dataclass(slots=True)
class SessionView:
    session_id: str
    project: str
    summary: dict[str, Any]
    spans: list[NormalizedSpan]
    turns: list[Turn]

    @property
    def intent(self) -> str | None:
        return self.summary.get("intent")

    @property
    def service(self) -> str | None:
        return self.summary.get("service")

    @property
    def agent_version(self) -> str | None:
        return self.summary.get("agent_version")

    @property
    def end_ns(self) -> int:
        return int(self.summary["end_ns"])

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [call for turn in self.turns for call in turn.tool_calls]

    def called(self, tool: str) -> bool:
        return any(call.name == tool for call in self.tool_calls)

    @property
    def answer(self) -> str:
        """The agent's last answer in the session."""
        for turn in reversed(self.turns):
            if turn.answer:
                return turn.answer
        return ""

    def transcript(self) -> str:
        """The conversation as plain text: user, tool calls with results, agent answers."""
        lines = []
        for turn in self.turns:
            if turn.user_text:
                lines.append(f"User: {turn.user_text}")
            for call in turn.tool_calls:
                status = "ok" if call.success else f"error {call.error_type or ''}".strip()
                lines.append(f"Tool {call.name}({_compact(call.arguments)}) -> [{status}] {_compact(call.result)}")
            if turn.answer:
                lines.append(f"Agent: {turn.answer}")
        return "\n".join(lines)

    @classmethod
    def from_rows(cls, summary: dict[str, Any], span_rows: list[dict[str, Any]], options: NormalizeOptions,
                  project: str = "default") -> SessionView:
        """Build from :meth:`Store.get_session` and :meth:`Store.spans_of_session` rows."""
        spans = [normalized_span(row, options) for row in span_rows]
        return cls.from_spans(summary, spans, project)

    @classmethod
    def from_spans(cls, summary: dict[str, Any], spans: list[NormalizedSpan], project: str = "default") -> SessionView:
        spans = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
        by_id = {(s.trace_id, s.span_id): s for s in spans}
        roots: list[NormalizedSpan] = []
        root_of: dict[tuple[str, str], NormalizedSpan] = {}
        for span in spans:
            node = span
            seen = 0
            while node.parent_span_id and (node.trace_id, node.parent_span_id) in by_id and seen < 1000:
                node = by_id[(node.trace_id, node.parent_span_id)]
                seen += 1
            root_of[(span.trace_id, span.span_id)] = node
            if node is span:
                roots.append(span)
        groups: dict[tuple[str, str], list[NormalizedSpan]] = {(r.trace_id, r.span_id): [] for r in roots}
        for span in spans:
            root = root_of[(span.trace_id, span.span_id)]
            groups[(root.trace_id, root.span_id)].append(span)
        turns: list[Turn] = []
        for root in roots:
            turn_id = f"{root.trace_id}:{root.span_id}"
            for part in _split_by_user_message(groups[(root.trace_id, root.span_id)]):
                turn = Turn(index=len(turns), spans=part)
                for span in part:
                    span.turn_index = turn.index
                    span.turn_id = f"{turn_id}:{turn.index}"
                turns.append(turn)
        return cls(session_id=str(summary["session_id"]), project=project, summary=summary, spans=spans,
                   turns=turns)


def _split_by_user_message(spans: list[NormalizedSpan]) -> list[list[NormalizedSpan]]:
    """One root can hold several exchanges: a model call that sees a new user message starts a turn."""
    parts: list[list[NormalizedSpan]] = [[]]
    user: str | None = None
    for span in spans:
        if span.kind == "llm" and span.input_text:
            if user is not None and span.input_text != user:
                parts.append([])
            user = span.input_text
        parts[-1].append(span)
    return parts


def _compact(value: Any, limit: int = 2000) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."
