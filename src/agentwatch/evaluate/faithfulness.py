"""Offline faithfulness: is the checkable content of the agent's answers backed by what it saw?

No model, no network. Each answer is scanned for *checkable claims*: money
amounts, percentages, plain numbers, dates, times, identifiers, and the terms
of a configured vocabulary (plan and product names). A claim is supported
when its normalized value occurs in the evidence of the same turn (tool
results and retrieved documents) or, by default, in what the user said::

    from agentwatch.evaluate.faithfulness import Faithfulness, claims

    claims("Refunded $42.50 for order A-1001 on March 14")
    # [Claim(kind='money', text='$42.50', value='42.5'), Claim(kind='id', text='A-1001', value='A1001'),
    #  Claim(kind='date', text='March 14', value='--03-14')]

    evaluator = Faithfulness({"terms": ["Premium plan", "basic economy"]})
    result = await evaluator.evaluate(view)
    # EvalResult.ok(0.75, reason="3/4 claims supported; unsupported: turn 1: $241 (money)")

Claims, as written -> their normalized value (``Claim.value``):

- ``money``: ``$42.50``, ``42.50 USD``, ``USD 42.5``, ``€10``, ``$1,200``,
  ``$1.2 million``, ``30 dollars`` -> ``42.5``, ``10``, ``1200``, ``1200000``.
- ``percent``: ``15%``, ``15 percent`` -> ``15``.
- ``number``: numbers with ``min_digits`` (default 2) digits, or decimals:
  ``1,234``, ``3.5`` -> ``1234``, ``3.5``; a single digit ("5 business
  days") is not checkable by default.
- ``date``: ``2026-03-14``, ``03/14/2026``, ``14/03/2026`` (a first number
  above 12 is a day; ``day_first: true`` reads ``03/04`` as 3 April),
  ``14.03.2026``, ``March 14, 2026``, ``14 March 2026`` -> ``2026-03-14``;
  without a year (``Mar. 14th``, ``the 14th of March``) -> ``--03-14``.
  Lower-case "may" and month abbreviations are not months.
- ``time``: ``14:30``, ``2:30 PM``, ``6pm``, ``06:00:00`` -> ``14:30``,
  ``18:00``, ``06:00``.
- ``id``: upper-case tokens with a digit (``A-1001``, ``ABC123``,
  ``HAT069``) and snake_case tokens with a digit (``credit_card_4421486``),
  case, ``-`` and ``_`` ignored -> ``A1001``, ``CREDITCARD4421486``.
- ``term``: a configured term (``terms``), case-insensitive, spaces, ``-``
  and ``_`` alike, longest first (``basic_economy`` in JSON backs "Basic
  Economy") -> ``basic economy``.
- ``name`` (only with ``"name"`` in ``kinds``): runs of two or more
  capitalized words, leading "Dear", "The", ... dropped -> ``mia li``;
  supported when every word occurs in the evidence.

Where two kinds match the same text, the earlier kind in :data:`CLAIM_KINDS`
keeps it (``May 20th`` is a date, not the number 20).

Support rules: numbers compare by value, so ``42.5``, ``42.50``, ``"42.5"``
in JSON and ``$42.50`` are one value, thousands separators are dropped and a
sign is ignored (a payment history's ``-6594`` backs "a refund of $6,594").
A percentage is also backed by its fraction (``15%`` by ``0.15``). A date
without a year is backed by any year's date with the same month and day, and
a date with a year by an evidence date without one. Evidence that is JSON is
read as JSON: its numbers are numbers, its keys and string values are text.
Evidence numbers include single digits and digits after ``_``
(``certificate_7473723``), but not the parts of dates, times or tokens such
as ``HAT069``. A claim repeated in one turn counts once.

Where support may come from (``supported_by``):

- ``turn`` (always on in practice): the tool results and retrieved documents
  of the same turn (``Turn.evidence``; a failed call's result counts: it is
  what the tool said). Tool *arguments* are not evidence: they are the
  agent's own words.
- ``user`` (default on): the user's own messages in the conversation so far.
  Repeating what the user said is not an invention; the price of this choice
  is that an invented figure that happens to equal one the user gave (a
  budget) passes.
- ``earlier_turns``: the evidence of earlier turns (and tool responses in the
  conversation the model saw). Off by default: the issue's rule is "the same
  turn", and a figure carried over from an earlier lookup is flagged.
- ``system``: the system instructions (a policy's fees, for instance).

A computed value (a total that no document states) is unsupported: this
evaluator checks presence, not arithmetic.

Score: supported / checkable claims over all turns (1.0 with reason "no
checkable claims" when there is none); the reason lists unsupported claims
with their turn index (at most ``max_listed``). Every assistant message of a
turn is checked (``answers: all``), or only the turn's final answer
(``answers: final``). A session with no answer text at all (content capture
off) is an evaluation failure.

:class:`EmbeddingFaithfulness` is the optional semantic variant: it needs the
``sentence-transformers`` package (``pip install 'agentwatch[embeddings]'``)
and a model already on disk, loaded with ``local_files_only=True``; it never
downloads. Each answer sentence is supported when its cosine similarity with
some evidence sentence reaches ``threshold``.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules import ParamReader
from agentwatch.evaluate.session import SessionView, Turn
from agentwatch.normalize.messages import message_text

__all__ = [
    "CLAIM_KINDS",
    "DEFAULT_KINDS",
    "Claim",
    "EmbeddingFaithfulness",
    "EmbeddingParams",
    "Faithfulness",
    "FaithfulnessParams",
    "claims",
    "cosine",
    "sentences",
    "unsupported",
]

#: Every kind of claim, in the order they are looked for (earlier kinds win overlaps).
CLAIM_KINDS = ("date", "time", "money", "percent", "id", "number", "term", "name")
#: Kinds checked by default: all but capitalized names, which sentence starts make noisy.
DEFAULT_KINDS = ("date", "time", "money", "percent", "id", "number", "term")
SOURCES = ("turn", "user", "earlier_turns", "system")


@dataclass(frozen=True, slots=True)
class Claim:
    """One checkable statement in an answer: its kind, its text, its normalized value."""

    kind: str
    text: str
    value: str
    start: int = field(default=0, compare=False, repr=False)
    #: The turn it was found in (set by :func:`unsupported` and the evaluators).
    turn: int | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text


# --------------------------------------------------------------------------- patterns

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4, "may": 5,
    "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}
#: Lower-case month words that are too often ordinary words ("you may 2x ...", "mar").
_AMBIGUOUS_LOWER = frozenset({"may", "mar", "march", "jan", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
                              "dec", "feb", "apr"})
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?" \
         r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_I = re.IGNORECASE

_DATE_ISO = re.compile(r"(?<![\d.])(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?!\d)")
_DATE_NUMERIC = re.compile(r"(?<![\d/.-])(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?![\d/])")
_DATE_MONTH_FIRST = re.compile(
    rf"\b({_MONTH})\b\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?!\d|:)(?:,?\s+(\d{{4}})(?!\d))?", _I)
_DATE_DAY_FIRST = re.compile(
    rf"(?<![\d.,:])(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\b\.?(?:,?\s+(\d{{4}})(?!\d))?", _I)
_TIME = re.compile(r"(?<![\d:.])([01]?\d|2[0-3]):([0-5]\d)(?::[0-5]\d(?:\.\d+)?)?(?:\s?([ap])\.?m\b\.?)?(?![\d:])", _I)
_TIME_AMPM = re.compile(r"(?<![\d:.])(1[0-2]|0?[1-9])\s?([ap])\.?m\b\.?", _I)
_SCALE = r"(?:\s?(k|thousand|million|mn|billion|bn)\b)?"
_MONEY_PREFIX = re.compile(
    rf"(?:(?<![\w$€£¥])(?:US|C|A|AU|CA)?\$|€|£|¥|\b(?:USD|EUR|GBP|CAD|AUD|JPY|CHF|INR)\b)\s?-?({_NUM}){_SCALE}")
_MONEY_SUFFIX = re.compile(
    rf"(?<![\w.,])({_NUM}){_SCALE}\s?(?:USD|EUR|GBP|CAD|AUD|JPY|CHF|INR|(?i:dollars?|euros?|pounds?|bucks))\b")
_PERCENT = re.compile(rf"(?<![\w.,])({_NUM})\s?(?:%|(?i:percent|per cent)\b)")
_ID_UPPER = re.compile(r"(?<![\w-])(?=[A-Z0-9_-]*\d)(?=[A-Z0-9_-]*[A-Z])[A-Z0-9]+(?:[-_][A-Z0-9]+)*(?![\w-])")
_ID_SNAKE = re.compile(r"(?<![\w-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w-])")
_NUMBER = re.compile(rf"(?<![\w.,])({_NUM})(?![\w]|[.,]\d)")
_EVIDENCE_NUMBER = re.compile(rf"(?<![A-Za-z0-9.,])({_NUM})(?![A-Za-z0-9]|[.,]\d)")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
_ID_PARTS = re.compile(r"[-_]")
_NAME = re.compile(r"\b[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)+\b")
_NAME_STOP = frozenset(
    "the a an your our my this that these those please dear hi hello thanks thank yes no flight flights here "
    "there it i we you he she they monday tuesday wednesday thursday friday saturday sunday".split()
) | frozenset(_MONTHS)
_SCALES = {"k": 1000, "thousand": 1000, "million": 10**6, "mn": 10**6, "billion": 10**9, "bn": 10**9}
_WORD = re.compile(r"[a-z0-9]+")
_SEPARATORS = re.compile(r"[\s_-]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _canon(text: str, scale: str | None = None) -> str | None:
    """A number's canonical text: no separators, no sign, no trailing zeros (``"1,200.50"`` -> ``"1200.5"``)."""
    try:
        number = abs(Decimal(text.replace(",", "")))
    except InvalidOperation:
        return None
    if scale:
        number *= _SCALES[scale.lower()]
    if number == number.to_integral_value():
        return str(number.quantize(Decimal(1)))
    return format(number.normalize(), "f")


def _date_value(year: int | None, month: int, day: int) -> str | None:
    if not 1 <= month <= 12:
        return None
    last = calendar.monthrange(year, month)[1] if year is not None else (29 if month == 2 else
                                                                          calendar.monthrange(2001, month)[1])
    if not 1 <= day <= last:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}" if year is not None else f"--{month:02d}-{day:02d}"


def _month(word: str) -> int | None:
    lower = word.lower()
    if word == lower and lower in _AMBIGUOUS_LOWER:
        return None
    return _MONTHS.get(lower)


def _dates(text: str, day_first: bool) -> Iterable[tuple[int, int, str]]:
    for m in _DATE_ISO.finditer(text):
        value = _date_value(int(m.group(1)), int(m.group(3)), int(m.group(4)))
        if value:
            yield m.start(), m.end(), value
    for m in _DATE_NUMERIC.finditer(text):
        first, sep, second, year_text = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        if sep == "." and len(year_text) == 2:
            continue
        year = int(year_text) + (2000 if len(year_text) == 2 else 0)
        month, day = (second, first) if day_first or sep == "." or first > 12 else (first, second)
        value = _date_value(year, month, day)
        if value:
            yield m.start(), m.end(), value
    for m in _DATE_MONTH_FIRST.finditer(text):
        named = _month(m.group(1))
        if named is not None:
            value = _date_value(int(m.group(3)) if m.group(3) else None, named, int(m.group(2)))
            if value:
                yield m.start(), m.end(), value
    for m in _DATE_DAY_FIRST.finditer(text):
        named = _month(m.group(2))
        if named is not None:
            value = _date_value(int(m.group(3)) if m.group(3) else None, named, int(m.group(1)))
            if value:
                yield m.start(), m.end(), value


def _times(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _TIME.finditer(text):
        hour, minute, half = int(m.group(1)), int(m.group(2)), m.group(3)
        if half:
            if not 1 <= hour <= 12:
                continue
            hour = hour % 12 + (12 if half.lower() == "p" else 0)
        yield m.start(), m.end(), f"{hour:02d}:{minute:02d}"
    for m in _TIME_AMPM.finditer(text):
        hour = int(m.group(1)) % 12 + (12 if m.group(2).lower() == "p" else 0)
        yield m.start(), m.end(), f"{hour:02d}:00"


def _id_value(text: str) -> str:
    return text.upper().replace("-", "").replace("_", "")


def _term_value(text: str) -> str:
    return _SEPARATORS.sub(" ", text.strip().lower())


class _Spans:
    """Character ranges already claimed: the first kind to match a stretch of text keeps it."""

    def __init__(self) -> None:
        self.taken: list[tuple[int, int]] = []

    def take(self, start: int, end: int) -> bool:
        if any(start < b and a < end for a, b in self.taken):
            return False
        self.taken.append((start, end))
        return True


def _term_patterns(terms: Sequence[str]) -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for term in sorted({_term_value(t) for t in terms if t.strip()}, key=len, reverse=True):
        words = [re.escape(w) for w in term.split(" ")]
        out.append((term, re.compile(r"(?<![\w])" + r"[\s_-]+".join(words) + r"(?![\w])", _I)))
    return out


def _scan(text: str, *, terms: Sequence[tuple[str, re.Pattern[str]]] = (), names: bool = False,
          day_first: bool = False, min_digits: int = 2) -> list[Claim]:
    taken = _Spans()
    found: list[Claim] = []

    def add(kind: str, start: int, end: int, value: str | None) -> None:
        if value is not None and taken.take(start, end):
            found.append(Claim(kind=kind, text=text[start:end], value=value, start=start))

    for start, end, value in _dates(text, day_first):
        add("date", start, end, value)
    for start, end, value in _times(text):
        add("time", start, end, value)
    for m in _MONEY_PREFIX.finditer(text):
        add("money", m.start(), m.end(), _canon(m.group(1), m.group(2)))
    for m in _MONEY_SUFFIX.finditer(text):
        add("money", m.start(), m.end(), _canon(m.group(1), m.group(2)))
    for m in _PERCENT.finditer(text):
        add("percent", m.start(), m.end(), _canon(m.group(1)))
    for pattern in (_ID_UPPER, _ID_SNAKE):
        for m in pattern.finditer(text):
            token = m.group(0)
            if pattern is _ID_SNAKE and not any(c.isdigit() for c in token):
                continue
            if len(_id_value(token)) >= 3:
                add("id", m.start(), m.end(), _id_value(token))
    for m in _NUMBER.finditer(text):
        raw = m.group(1)
        digits = sum(c.isdigit() for c in raw.split(".")[0])
        if digits >= min_digits or "." in raw:
            add("number", m.start(), m.end(), _canon(raw))
    for value, pattern in terms:
        for m in pattern.finditer(text):
            add("term", m.start(), m.end(), value)
    if names:
        for m in _NAME.finditer(text):
            words = list(re.finditer(r"[A-Z][a-z]+", m.group(0)))
            while words and words[0].group(0).lower() in _NAME_STOP:
                words.pop(0)
            if len(words) >= 2:
                add("name", m.start() + words[0].start(), m.end(), " ".join(w.group(0).lower() for w in words))
    found.sort(key=lambda c: c.start)
    return found


def claims(text: str, *, terms: Sequence[str] = (), names: bool = False, day_first: bool = False,
           min_digits: int = 2) -> list[Claim]:
    """The checkable claims of ``text`` in reading order (every occurrence)."""
    return _scan(text, terms=_term_patterns(terms), names=names, day_first=day_first, min_digits=min_digits)


# --------------------------------------------------------------------------- evidence


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
                for item in strings:
                    self._scan_text(item)
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
            for item in value:
                self._walk(item, strings)

    def _scan_text(self, text: str) -> None:
        found = [*_dates(text, self.day_first), *_times(text)]
        masked_text = text
        if found:
            masked = list(text)
            for start, end, value in found:
                if value.startswith("--"):
                    self.dates.add((None, int(value[2:4]), int(value[5:7])))
                elif ":" in value:
                    self.times.add(value)
                else:
                    self.dates.add((int(value[:4]), int(value[5:7]), int(value[8:10])))
                masked[start:end] = " " * (end - start)
            masked_text = "".join(masked)
        for m in _EVIDENCE_NUMBER.finditer(masked_text):
            number = _canon(m.group(1))
            if number is not None:
                self.numbers.add(number)
        ids = self.ids
        for m in _TOKEN.finditer(text):
            token = m.group(0).upper()
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


# --------------------------------------------------------------------------- evaluator


@dataclass(frozen=True, slots=True)
class FaithfulnessParams:
    kinds: tuple[str, ...] = DEFAULT_KINDS
    terms: tuple[str, ...] = ()
    supported_by: tuple[str, ...] = ("turn", "user")
    answers: str = "all"
    day_first: bool = False
    min_digits: int = 2
    max_listed: int = 10

    @classmethod
    def parse(cls, params: Mapping[str, Any] | None, name: str = "faithfulness") -> FaithfulnessParams:
        p = ParamReader(name, params, [f.name for f in cls.__dataclass_fields__.values()], kind="evaluator")
        kinds = p.strings("kinds")
        if kinds is not None:
            unknown = [k for k in kinds if k not in CLAIM_KINDS]
            if unknown:
                raise ValueError(f"{p.owner}: parameter 'kinds' has unknown kind {unknown[0]!r} "
                                 f"(known: {', '.join(CLAIM_KINDS)})")
        sources = p.strings("supported_by")
        if sources is not None:
            unknown = [s for s in sources if s not in SOURCES]
            if unknown:
                raise ValueError(f"{p.owner}: parameter 'supported_by' has unknown source {unknown[0]!r} "
                                 f"(known: {', '.join(SOURCES)})")
        return cls(
            kinds=kinds or DEFAULT_KINDS,
            terms=p.strings("terms", allow_empty=True) or (),
            supported_by=sources or ("turn", "user"),
            answers=p.string("answers", choices=("all", "final")) or "all",
            day_first=p.boolean("day_first", False),
            min_digits=p.integer("min_digits", minimum=1) or 2,
            max_listed=p.integer("max_listed", minimum=1) or 10,
        )


class _Checker:
    """Claims and their support, turn by turn, with each turn's evidence indexed once."""

    def __init__(self, params: FaithfulnessParams, session: SessionView | None) -> None:
        self.params = params
        self.session = session
        self.terms = _term_patterns(params.terms)
        self.names = "name" in params.kinds
        self._turn_index: dict[int, _Index] = {}

    def index(self, turn: Turn) -> _Index:
        found = self._turn_index.get(turn.index)
        if found is None:
            found = self._turn_index[turn.index] = _Index(_evidence_texts(turn), self.params.day_first)
        return found

    def claims(self, turn: Turn) -> list[Claim]:
        """The turn's distinct checkable claims, first occurrence kept."""
        seen: set[tuple[str, str]] = set()
        out = []
        for text in _answer_texts(turn, self.params.answers):
            for claim in _scan(text, terms=self.terms, names=self.names, day_first=self.params.day_first,
                               min_digits=self.params.min_digits):
                key = (claim.kind, claim.value)
                if claim.kind in self.params.kinds and key not in seen:
                    seen.add(key)
                    out.append(replace(claim, turn=turn.index))
        return out

    def sources(self, turn: Turn) -> list[_Index]:
        return list(self._sources(turn))

    def _sources(self, turn: Turn) -> Iterator[_Index]:
        """The sources in order, each indexed only when asked for."""
        params = self.params
        if "turn" in params.supported_by:
            yield self.index(turn)
        if "user" in params.supported_by:
            yield _Index(_user_texts(self.session, turn), params.day_first)
        if "earlier_turns" in params.supported_by:
            if self.session is not None:
                yield from (self.index(t) for t in self.session.turns if t.index < turn.index)
            yield _Index(_seen_tool_responses(turn), params.day_first)
        if "system" in params.supported_by:
            yield _Index(_system_texts(turn), params.day_first)

    def check(self, turn: Turn) -> tuple[list[Claim], list[Claim]]:
        """``(checkable, unsupported)`` claims of ``turn``; a source is indexed only while claims remain."""
        found = self.claims(turn)
        if not found:
            return [], []
        remaining = found
        for source in self._sources(turn):
            remaining = [c for c in remaining if not source.supports(c)]
            if not remaining:
                break
        return found, remaining


def unsupported(turn: Turn, session: SessionView | None = None,
                params: FaithfulnessParams | Mapping[str, Any] | None = None) -> list[Claim]:
    """The claims of ``turn``'s answers that its evidence (and ``supported_by`` sources) do not back.

    ``session`` is needed for the ``user`` source beyond this turn's own model
    calls and for ``earlier_turns``.
    """
    if not isinstance(params, FaithfulnessParams):
        params = FaithfulnessParams.parse(params)
    return _Checker(params, session).check(turn)[1]


class Faithfulness:
    """Share of the answers' checkable claims backed by the same turn's evidence (see the module doc)."""

    name = "faithfulness"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params = FaithfulnessParams.parse(params, self.name)

    def unsupported(self, turn: Turn, session: SessionView | None = None) -> list[Claim]:
        return unsupported(turn, session, self.params)

    async def evaluate(self, session: SessionView) -> EvalResult:
        try:
            return self._evaluate(session)
        except Exception as exc:  # an evaluator error is recorded, never scored 0
            return EvalResult.failure(f"evaluator {self.name!r} failed: {type(exc).__name__}: {exc}")

    def _evaluate(self, session: SessionView) -> EvalResult:
        if not any(_answer_texts(turn, self.params.answers) for turn in session.turns):
            return EvalResult.failure("no agent answer text in the session; is message content capture on?")
        checker = _Checker(self.params, session)
        total = 0
        missing: list[Claim] = []
        for turn in session.turns:
            found, bad = checker.check(turn)
            total += len(found)
            missing.extend(bad)
        if total == 0:
            return EvalResult.ok(1.0, reason="no checkable claims")
        supported = total - len(missing)
        reason = f"{supported}/{total} claims supported"
        if missing:
            limit = self.params.max_listed
            listed = ", ".join(f"turn {c.turn}: {c.text} ({c.kind})" for c in missing[:limit])
            more = f", and {len(missing) - limit} more" if len(missing) > limit else ""
            reason += f"; unsupported: {listed}{more}"
        return EvalResult.ok(supported / total, reason=reason)


# --------------------------------------------------------------------------- embeddings

#: Turns texts into vectors: one vector (a sequence of floats) per text, in order.
Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
EMBEDDINGS_EXTRA = "pip install 'agentwatch[embeddings]'"


def sentences(text: str, min_chars: int = 12) -> list[str]:
    """``text`` split into sentences (and lines); pieces shorter than ``min_chars`` or without letters dropped."""
    out = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip(" \t-*•#>")
        if len(piece) >= min_chars and any(c.isalpha() for c in piece):
            out.append(piece)
    return out


def _evidence_sentences(text: str, min_chars: int) -> list[str]:
    """Evidence as sentences; a JSON document becomes one ``path: value`` line per leaf."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if value is not None:
            lines: list[str] = []
            _flatten(value, "", lines)
            return [line for line in lines if len(line) >= min_chars] or [stripped]
    return sentences(text, min_chars)


def _flatten(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(item, f"{path}.{i}" if path else str(i), out)
    elif value is not None:
        out.append(f"{path.replace('_', ' ')}: {value}" if path else str(value))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors of the same length (0.0 when either is all zeros)."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths: {len(a)} and {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


@dataclass(frozen=True, slots=True)
class EmbeddingParams:
    model: str | None = None
    threshold: float = 0.7
    min_sentence_chars: int = 12
    answers: str = "all"
    supported_by: tuple[str, ...] = ("turn",)
    max_listed: int = 5


class EmbeddingFaithfulness:
    """Share of answer sentences close (cosine) to some evidence sentence of the same turn.

    ``model`` is a local path or the name of a model already in the Hugging
    Face cache; it is loaded with ``local_files_only=True`` and nothing is ever
    downloaded. ``embedder`` replaces the model (tests, or another library).
    Turns without evidence are not scored (chit-chat has nothing to be
    faithful to); a session with no scored sentence scores 1.0.
    """

    name = "faithfulness_embedding"

    def __init__(self, params: Mapping[str, Any] | None = None, *, embedder: Embedder | None = None) -> None:
        p = ParamReader(self.name, params, [f for f in EmbeddingParams.__dataclass_fields__], kind="evaluator")
        threshold = p.number("threshold", minimum=None)
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise p.error("threshold", "a number in [-1, 1]")
        sources = p.strings("supported_by")
        if sources is not None and any(s not in ("turn", "user") for s in sources):
            raise p.error("supported_by", "a list of 'turn' and 'user'")
        self.params = EmbeddingParams(
            model=p.string("model"),
            threshold=0.7 if threshold is None else threshold,
            min_sentence_chars=p.integer("min_sentence_chars", minimum=1) or 12,
            answers=p.string("answers", choices=("all", "final")) or "all",
            supported_by=sources or ("turn",),
            max_listed=p.integer("max_listed", minimum=1) or 5,
        )
        if embedder is None:
            if self.params.model is None:
                raise ValueError(f"{p.owner}: parameter 'model' is required (a local model path or cached name)")
            embedder = _load_model(self.params.model)
        self.embed = embedder

    def similarities(self, answer: Sequence[str], evidence: Sequence[str]) -> list[float]:
        """For each answer sentence, its best cosine similarity with any evidence sentence."""
        if not answer:
            return []
        if not evidence:
            return [0.0] * len(answer)
        vectors = list(self.embed([*answer, *evidence]))
        if len(vectors) != len(answer) + len(evidence):
            raise ValueError(f"the embedder returned {len(vectors)} vectors for {len(answer) + len(evidence)} texts")
        mine, theirs = vectors[: len(answer)], vectors[len(answer):]
        return [max(cosine(a, b) for b in theirs) for a in mine]

    async def evaluate(self, session: SessionView) -> EvalResult:
        try:
            return await asyncio.to_thread(self._evaluate, session)
        except Exception as exc:  # an evaluator error is recorded, never scored 0
            return EvalResult.failure(f"evaluator {self.name!r} failed: {type(exc).__name__}: {exc}")

    def _evaluate(self, session: SessionView) -> EvalResult:
        if not any(_answer_texts(turn, self.params.answers) for turn in session.turns):
            return EvalResult.failure("no agent answer text in the session; is message content capture on?")
        size = self.params.min_sentence_chars
        total = 0
        weak: list[tuple[int, str, float]] = []
        for turn in session.turns:
            texts = list(_evidence_texts(turn))
            if not texts:
                continue
            if "user" in self.params.supported_by:
                texts.extend(_user_texts(session, turn))
            evidence = [s for text in texts for s in _evidence_sentences(text, size)]
            answer = [s for text in _answer_texts(turn, self.params.answers) for s in sentences(text, size)]
            for sentence, score in zip(answer, self.similarities(answer, evidence), strict=True):
                total += 1
                if score < self.params.threshold:
                    weak.append((turn.index, sentence, score))
        if total == 0:
            return EvalResult.ok(1.0, reason="no answer sentence in a turn with evidence")
        reason = f"{total - len(weak)}/{total} sentences supported (cosine >= {self.params.threshold:g})"
        if weak:
            limit = self.params.max_listed
            listed = "; ".join(f"turn {i}: {_clip(s)!r} ({score:.2f})" for i, s, score in weak[:limit])
            more = f"; and {len(weak) - limit} more" if len(weak) > limit else ""
            reason += f"; unsupported: {listed}{more}"
        return EvalResult.ok((total - len(weak)) / total, reason=reason)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_model(model: str) -> Embedder:
    """A sentence-transformers model from local files only, as an :data:`Embedder`."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(f"EmbeddingFaithfulness needs the sentence-transformers package: {EMBEDDINGS_EXTRA}") \
            from None
    try:
        loaded = SentenceTransformer(model, local_files_only=True)
    except Exception as exc:
        raise ValueError(f"evaluator 'faithfulness_embedding': cannot load model {model!r} from local files "
                         f"(nothing is downloaded): {exc}") from exc

    def embed(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return [list(map(float, row)) for row in loaded.encode(list(texts), convert_to_numpy=True)]

    return embed
