"""Recorded conversations in the OpenAI messages format as OTLP sessions (tau-bench trajectories).

A file is a JSON list of records ``{"task_id", "trial", "reward", "info",
"traj": [messages]}``, each message an OpenAI chat message (``system``,
``user``, ``assistant`` with optional ``tool_calls``, ``tool`` with
``tool_call_id``). Each record becomes one session,
``gen_ai.conversation.id = "<prefix>-<task_id>-<trial>"`` (prefix
``tau-airline`` for an airline file), with one trace per user turn: an
``invoke_agent`` root, a ``chat`` span per assistant message (the conversation
so far in ``gen_ai.input.messages``, the message in
``gen_ai.output.messages``) and an ``execute_tool`` span per tool call, whose
result is the tool message's text as recorded ("Error: ..." included, status
left UNSET as the benchmark's tools return it). A trailing user message that
got no answer (tau-bench's ``###STOP###``) makes no trace.

The outcome (``reward``) is never put on the wire: evaluators must not see
it. Reports join it from the file with :func:`load_outcomes`::

    from agentwatch.traffic import import_sessions, load_outcomes, send

    path = "shared/data/tau-bench/gpt-4o-airline-dev.json"
    send(import_sessions(path, start_ns=1_767_225_600 * 10**9), "http://127.0.0.1:4318")
    rewards = load_outcomes(path)      # {"tau-airline-0-0": 0.0, ...}

Timestamps are synthetic (sessions two minutes apart, plausible model, tool
and typing latencies) and deterministic. The file has no token counts, so
none are sent.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentwatch import __version__
from agentwatch.errors import AgentwatchError
from agentwatch.normalize.attributes import json_value
from agentwatch.otlp import TraceBuilder, export_request, sdk_resource
from agentwatch.traffic.generator import NS_PER_MS, NS_PER_S, compact_json, tool_call_part, tool_response_message

SCOPE = ("agentwatch.traffic.importer", __version__)


class ImportFormatError(AgentwatchError):
    """The file is not a list of conversations in the OpenAI messages format."""

    status = 400
    code = "import_format_error"


@dataclass(frozen=True)
class ImportedSession:
    """One recorded conversation as an OTLP request (all its traces)."""

    start_ns: int
    end_ns: int
    session_id: str
    request: ExportTraceServiceRequest
    trace_ids: tuple[str, ...]
    turns: int
    llm_calls: int
    tool_calls: int


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The file's records, checked for the fields the importer reads."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ImportFormatError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ImportFormatError(f"{path}: expected a JSON list of conversations, got {type(data).__name__}")
    for i, record in enumerate(data):
        if not isinstance(record, dict) or not isinstance(record.get("traj"), list):
            raise ImportFormatError(f"{path}: record {i} has no 'traj' list of messages")
        if "task_id" not in record:
            raise ImportFormatError(f"{path}: record {i} has no 'task_id'")
        check_messages(record["traj"], f"{path}: record {i}")
    return data


def default_prefix(path: str | Path) -> str:
    """``tau-<domain>`` from the file name (``tau-airline`` for ``gpt-4o-airline-dev.json``)."""
    name = Path(path).name.lower()
    for domain in ("airline", "retail", "telecom"):
        if domain in name:
            return f"tau-{domain}"
    return "tau"


def session_id_of(record: dict[str, Any], prefix: str) -> str:
    return f"{prefix}-{record['task_id']}-{record.get('trial', 0)}"


def load_outcomes(path: str | Path, *, prefix: str | None = None) -> dict[str, float]:
    """The reward of each session id, for reports to join (never sent)."""
    prefix = prefix or default_prefix(path)
    outcomes: dict[str, float] = {}
    for record in read_records(path):
        reward = record.get("reward")
        if reward is None:
            reward = ((record.get("info") or {}).get("reward_info") or {}).get("reward")
        if reward is not None:
            outcomes[session_id_of(record, prefix)] = float(reward)
    return outcomes


def import_sessions(
    path: str | Path,
    start_ns: int,
    *,
    prefix: str | None = None,
    spacing_s: float = 120.0,
    model: str = "gpt-4o",
    provider: str = "openai",
    agent_version: str = "1.0.0",
) -> Iterator[ImportedSession]:
    """Each conversation of ``path`` as a session, the first starting at ``start_ns``."""
    prefix = prefix or default_prefix(path)
    records = read_records(path)
    service = f"{prefix}-agent"
    instance = str(uuid.UUID(int=random.Random(f"agentwatch.import:{prefix}").getrandbits(128), version=4))
    resource = sdk_resource(service, agent_version, instance, "benchmark")
    t = start_ns
    for record in records:
        session_id = session_id_of(record, prefix)
        rng = random.Random(f"agentwatch.import:{session_id}")
        t += int(spacing_s * rng.uniform(0.6, 1.4) * NS_PER_S)
        user_id = ((record.get("info") or {}).get("task") or {}).get("user_id")
        writer = _SessionWriter(rng, session_id, service, model, provider,
                                user_id if isinstance(user_id, str) else None, t)
        writer.write(record["traj"])
        yield writer.session(resource)


def check_messages(messages: Any, where: str) -> list[dict[str, Any]]:
    """``messages`` if it is a list of OpenAI chat messages; ImportFormatError names the first that is not."""
    if not isinstance(messages, list):
        raise ImportFormatError(f"{where}: expected a list of OpenAI chat messages")
    for j, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise ImportFormatError(f"{where}, message {j}: expected an OpenAI chat message "
                                    "(role system, user, assistant or tool)")
    return messages


def conversation_request(session_id: str, messages: Any, start_ns: int, *, service: str = "agent",
                         model: str = "gpt-4o", provider: str = "openai",
                         agent_version: str = "1.0.0") -> ExportTraceServiceRequest:
    """One conversation's messages as the OTLP request of a session, as :func:`import_sessions` sends them."""
    check_messages(messages, f"session {session_id!r}")
    rng = random.Random(f"agentwatch.import:{session_id}")
    instance = str(uuid.UUID(int=random.Random(f"agentwatch.import:{service}").getrandbits(128), version=4))
    writer = _SessionWriter(rng, session_id, service, model, provider, None, start_ns)
    writer.write(messages)
    return writer.session(sdk_resource(service, agent_version, instance, "candidate")).request


def _parts(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat message in the GenAI parts model."""
    role = message["role"]
    content = message.get("content")
    if role == "tool":
        return tool_response_message(str(message.get("tool_call_id", "")), _text(content))
    parts: list[dict[str, Any]] = []
    if content:
        parts.append({"type": "text", "content": _text(content)})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(tool_call_part(str(call.get("id", "")), str(function.get("name", "")),
                                    json_value(function.get("arguments"))))
    return {"role": role, "parts": parts}


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return json.dumps(content)


def _answer_of(messages: Sequence[dict[str, Any]], after: int, call_id: str, consumed: set[int]) -> int | None:
    """Index of the first tool message after ``after`` answering ``call_id`` (ids repeat in recorded data)."""
    for index in range(after + 1, len(messages)):
        message = messages[index]
        if message["role"] == "tool" and index not in consumed and str(message.get("tool_call_id")) == call_id:
            consumed.add(index)
            return index
    return None


class _SessionWriter:
    """Turns one conversation's messages into traces, one per user turn."""

    def __init__(self, rng: random.Random, session_id: str, agent: str, model: str, provider: str,
                 user_id: str | None, start_ns: int) -> None:
        self.rng = rng
        self.session_id = session_id
        self.agent = agent
        self.model = model
        self.provider = provider
        self.user_id = user_id
        self.start_ns = start_ns
        self.t = start_ns
        self.traces: list[TraceBuilder] = []
        self.history: list[dict[str, Any]] = []
        self.llm_calls = 0
        self.tool_calls = 0

    def write(self, messages: Sequence[dict[str, Any]]) -> None:
        turns: list[list[dict[str, Any]]] = []
        for message in messages:
            if message["role"] == "system" and not turns:
                self.history.append(_parts(message))
            elif message["role"] == "user" and (not turns or turns[-1][-1]["role"] != "user"):
                turns.append([message])
            elif turns:
                turns[-1].append(message)
            else:  # the agent speaks first
                turns.append([message])
        for index, turn in enumerate(turns):
            if all(m["role"] == "user" for m in turn):
                break  # unanswered: the user ended the conversation
            if index:
                typed = sum(len(_text(m.get("content"))) for m in turn if m["role"] == "user")
                self.t += int(min(120.0, self.rng.uniform(3, 10) + typed * self.rng.uniform(0.08, 0.2)) * NS_PER_S)
            self._turn(turn)

    def _turn(self, messages: list[dict[str, Any]]) -> None:
        trace = TraceBuilder(self.rng)
        self.traces.append(trace)
        root = trace.new_span_id()
        start = self.t
        self.t += self.rng.randint(2, 8) * NS_PER_MS
        consumed: set[int] = set()
        for index, message in enumerate(messages):
            role = message["role"]
            if role == "assistant":
                self._chat(trace, root, message)
                for call in message.get("tool_calls") or []:
                    answer = _answer_of(messages, index, str(call.get("id")), consumed)
                    self._tool(trace, root, call, None if answer is None else messages[answer])
            elif role != "tool" or index not in consumed:
                self.history.append(_parts(message))  # user text, or a tool answer no call asked for
        self.t += self.rng.randint(1, 4) * NS_PER_MS
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.agent,
            "gen_ai.request.model": self.model,
            "gen_ai.conversation.id": self.session_id,
        }
        if self.user_id:
            attributes["user.id"] = self.user_id
        trace.add(root, None, f"invoke_agent {self.agent}", Span.SPAN_KIND_INTERNAL, start, self.t, attributes)

    def _chat(self, trace: TraceBuilder, root: bytes, message: dict[str, Any]) -> None:
        output = _parts(message)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        out_chars = len(_text(message.get("content"))) + sum(
            len(str((c.get("function") or {}).get("arguments", ""))) for c in message.get("tool_calls") or [])
        ms = 450 + out_chars / 4 * self.rng.uniform(12, 22) + self.rng.uniform(0, 400)
        start = self.t
        end = start + int(ms * NS_PER_MS)
        trace.add(trace.new_span_id(), root, f"chat {self.model}", Span.SPAN_KIND_CLIENT, start, end, {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            "gen_ai.provider.name": self.provider,
            "gen_ai.conversation.id": self.session_id,
            "gen_ai.response.finish_reasons": [finish],
            "gen_ai.input.messages": compact_json(self.history),
            "gen_ai.output.messages": compact_json([{**output, "finish_reason": finish}]),
        })
        self.history.append(output)
        self.llm_calls += 1
        self.t = end + self.rng.randint(1, 5) * NS_PER_MS

    def _tool(self, trace: TraceBuilder, root: bytes, call: dict[str, Any], response: dict[str, Any] | None) -> None:
        function = call.get("function") or {}
        name = str(function.get("name", ""))
        arguments = function.get("arguments")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": str(call.get("id", "")),
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.arguments": arguments if isinstance(arguments, str) else compact_json(arguments),
        }
        if response is not None:
            attributes["gen_ai.tool.call.result"] = _text(response.get("content"))
        start = self.t
        end = start + int(self.rng.lognormvariate(4.6, 0.5) * NS_PER_MS)
        trace.add(trace.new_span_id(), root, f"execute_tool {name}", Span.SPAN_KIND_INTERNAL, start, end, attributes)
        if response is not None:
            self.history.append(_parts(response))
        self.tool_calls += 1
        self.t = end + self.rng.randint(1, 4) * NS_PER_MS

    def session(self, resource: dict[str, Any]) -> ImportedSession:
        spans = [span for trace in self.traces for span in trace.spans]
        end_ns = max((span.end_time_unix_nano for span in spans), default=self.start_ns)
        return ImportedSession(self.start_ns, end_ns, self.session_id, export_request(resource, spans, SCOPE),
                               tuple(trace.trace_id.hex() for trace in self.traces), len(self.traces),
                               self.llm_calls, self.tool_calls)
