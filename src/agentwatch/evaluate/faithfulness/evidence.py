"""Evidence: the values a body of text backs (:class:`_Index`), and the texts a turn offers.

A turn offers its tool results and documents (its evidence), its answers,
the user's messages, the system instructions and the tool responses its
model calls saw; the checker indexes each body of evidence once per session.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from agentwatch.evaluate.faithfulness.canon import (
    _DIGIT_RUN,
    _EVIDENCE_NUMBER,
    _ID_PARTS,
    _TOKEN,
    _WORD,
    _canon,
    _dates,
    _term_value,
    _times,
)
from agentwatch.evaluate.faithfulness.extract import Claim
from agentwatch.evaluate.session import SessionView, Turn
from agentwatch.normalize.messages import message_text


class _Index:
    """The normalized values found in a body of evidence text.

    JSON evidence is read as JSON: its numbers are taken as numbers (so the
    compact ``[100,200]`` is two numbers, not 100200) and its keys and string
    values are scanned as text (ids are often keys: ``payment_methods`` by id).
    """

    def __init__(self, texts: Iterable[str], day_first: bool) -> None:
        self.numbers: set[str] = set()
        self.dates: set[tuple[int | None, int, int]] = set()
        self.times: set[str] = set()
        self.ids: set[str] = set()
        self.words: set[str] = set()
        #: Digit runs of 4 or more (in ids and numbers), for "ending in 7803".
        self.digit_runs: set[str] = set()
        #: Lengths of JSON lists (2 passengers, 3 flights): the counts a per-item figure may be multiplied by.
        self.list_lengths: set[int] = set()
        self.day_first = day_first
        self._chunks: list[str] = []
        for text in texts:
            if text:
                self._add(text)
        self.text = "\n".join(self._chunks)

    def _add(self, text: str) -> None:
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                value = json.loads(stripped)
            except (ValueError, RecursionError):
                pass
            else:
                strings: list[str] = []
                self._walk(value, strings)
                # One scan of all the strings, NUL between them: no pattern matches across a NUL (none
                # takes it as a space, a digit or a word character), so this finds what one scan of each
                # would, without a dozen pattern calls per key and value.
                self._scan_text("\x00".join(strings))
                return
        self._scan_text(text)

    def _walk(self, value: Any, strings: list[str]) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                number = _canon(str(value))
                if number is not None:
                    self.numbers.add(number)
        elif isinstance(value, str):
            strings.append(value)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                strings.append(str(key))
                self._walk(item, strings)
        elif isinstance(value, list):
            self.list_lengths.add(len(value))
            for item in value:
                self._walk(item, strings)

    def _scan_text(self, text: str) -> None:
        found = [*_dates(text, self.day_first), *_times(text)]
        masked_text = text
        if found:
            pieces = []
            at = 0
            for start, end, value in sorted(found):
                if value.startswith("--"):
                    self.dates.add((None, int(value[2:4]), int(value[5:7])))
                elif ":" in value:
                    self.times.add(value)
                else:
                    self.dates.add((int(value[:4]), int(value[5:7]), int(value[8:10])))
                if end > at:
                    start = max(start, at)
                    pieces += [text[at:start], " " * (end - start)]
                    at = end
            pieces.append(text[at:])
            masked_text = "".join(pieces)
        for number in _EVIDENCE_NUMBER.findall(masked_text):
            canonical = _canon(number)
            if canonical is not None:
                self.numbers.add(canonical)
        self.digit_runs.update(_DIGIT_RUN.findall(text))
        ids = self.ids
        # Upper-casing first is the same as upper-casing each token when the text is ASCII (elsewhere
        # upper() may turn a letter the token pattern skips into one it takes: "ı" -> "I").
        tokens = (_TOKEN.findall(text.upper()) if text.isascii()
                  else [token.upper() for token in _TOKEN.findall(text)])
        for token in tokens:
            if "-" not in token and "_" not in token:
                ids.add(token)  # one part: its only sub-run is itself
                continue
            parts = _ID_PARTS.split(token)[:8]
            for i in range(len(parts)):
                for j in range(i + 1, len(parts) + 1):
                    ids.add("".join(parts[i:j]))
        lower = text.lower()
        self.words.update(_WORD.findall(lower))
        self._chunks.append(_term_value(lower))

    def supports(self, claim: Claim) -> bool:
        kind, value = claim.kind, claim.value
        if kind in ("money", "number"):
            if claim.tail and len(value) >= 3 and value.isdigit():
                return any(run.endswith(value) for run in self.digit_runs) or any(
                    number.endswith(value) for number in self.numbers if len(number) > len(value))
            return value in self.numbers
        if kind == "percent":
            fraction = _canon(str(Decimal(value) / 100))
            return value in self.numbers or fraction in self.numbers
        if kind == "date":
            year = None if value.startswith("--") else int(value[:4])
            month, day = int(value[-5:-3]), int(value[-2:])
            return any(m == month and d == day and (year is None or y is None or y == year)
                       for y, m, d in self.dates)
        if kind == "time":
            return value in self.times
        if kind == "id":
            return value in self.ids
        if kind == "term":
            return re.search(r"(?<![a-z0-9])" + re.escape(value) + r"(?![a-z0-9])", self.text) is not None
        if kind == "name":
            return all(word in self.words for word in value.split())
        return False


def _dump(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _evidence_texts(turn: Turn) -> list[str]:
    """``Turn.evidence`` with non-ASCII text kept as it is."""
    out = [_dump(call.result) for call in turn.tool_calls if call.result is not None]
    out.extend(_dump(doc["content"]) for doc in turn.documents if doc.get("content"))
    return out


def _answer_texts(turn: Turn, which: str) -> list[str]:
    if which == "final":
        return [turn.answer] if turn.answer else []
    texts: list[str] = []
    for span in turn.llm_spans:
        for message in span.output_messages:
            if message.get("role") in (None, "assistant"):
                text = message_text(message)
                if text and text not in texts:
                    texts.append(text)
    if not texts and turn.answer:
        texts.append(turn.answer)
    return texts


def _user_texts(session: SessionView | None, turn: Turn) -> list[str]:
    texts: list[str] = []
    if session is not None:
        texts.extend(t.user_text for t in session.turns if t.index <= turn.index and t.user_text)
    elif turn.user_text:
        texts.append(turn.user_text)
    for span in turn.llm_spans:
        for message in span.input_messages:
            if message.get("role") == "user":
                text = message_text(message)
                if text:
                    texts.append(text)
    return texts


def _system_texts(turn: Turn) -> list[str]:
    texts: list[str] = []
    for span in turn.llm_spans:
        texts.extend(str(part.get("content")) for part in span.system_instructions
                     if isinstance(part, dict) and part.get("content"))
        for message in span.input_messages:
            if message.get("role") in ("system", "developer"):
                text = message_text(message)
                if text:
                    texts.append(text)
    return texts


def _seen_tool_responses(turn: Turn) -> list[str]:
    """Tool results the turn's model calls saw in their input messages (earlier turns' included)."""
    texts: list[str] = []
    for span in turn.llm_spans:
        for message in span.input_messages:
            parts = message.get("parts")
            if not isinstance(parts, list):
                continue
            for part in parts:
                if isinstance(part, dict) and part.get("type") == "tool_call_response" \
                        and part.get("response") is not None:
                    texts.append(_dump(part["response"]))
            if message.get("role") == "tool":
                text = message_text(message)
                if text:
                    texts.append(text)
    return texts
