"""Offline faithfulness: is the checkable content of the agent's answers backed by what it saw?

No model, no network. Each answer is scanned for *checkable claims*: money
amounts, percentages, plain numbers, dates, times, identifiers, and the terms
of a configured vocabulary (plan and product names). A claim is supported
the way a person reviewing the conversation would accept it: its normalized
value occurs in what the agent could know (the turn's tool results, the
user's words, earlier turns, the arguments of calls that worked, the system
prompt), or it is a sum, difference or per-count product of figures already
on the table::

    from agentwatch.evaluate.faithfulness import Faithfulness, claims

    claims("Refunded $42.50 for order A-1001 on March 14")
    # [Claim(kind='money', text='$42.50', value='42.5'), Claim(kind='id', text='A-1001', value='A1001'),
    #  Claim(kind='date', text='March 14', value='--03-14')]

    evaluator = Faithfulness({"terms": ["Premium plan", "basic economy"]})
    result = await evaluator.evaluate(view)
    # EvalResult.ok(0.75, reason="3/4 claims supported (2 by the turn's evidence, 1 by arithmetic); "
    #               "unsupported, in no evidence: turn 1: $241 (money); supported beyond the turn: "
    #               "turn 1: $171 (= $500 - $329)")
    evaluator.claims(view)     # every claim, each with its support: "get_booking result, turn 0", "= $500 - $329"

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

Where support may come from (``supported_by``, all on by default, tried in
this order; a claim's ``support`` names the first that holds it):

- ``turn``: the tool results and retrieved documents of the same turn
  (``Turn.evidence``; a failed call's result counts: it is what the tool
  said).
- ``user``: the user's own messages in the conversation so far. Repeating
  what the user said is not an invention; the price is that an invented
  figure equal to one the user gave (a budget) passes, unless it is reported
  as an action's outcome (below).
- ``earlier_turns``: the evidence of earlier turns (and tool responses in the
  conversation the model saw): a figure carried over from an earlier lookup.
- ``arguments``: the arguments of tool calls that worked (no error status, no
  error-shaped result), this turn or earlier: the date that was searched,
  the amount that was refunded. A refused call's arguments are only the
  agent's own words.
- ``system``: the system instructions (a policy's fees, for instance).

``arithmetic`` (default on): a money or number claim no source holds is
supported when :func:`~agentwatch.evaluate.arithmetic.explain` derives it
from the figures on the table: the supported figures of the answers so far
(this answer's included) and the user's figures, with sums and differences
of up to ``max_terms`` (default 3, at most 4) of them or one of them times a
count 2-9 the evidence lists (list lengths) or the conversation names. Not
every number of the evidence: over a hundred of them almost any figure is a
sum of two, and invented figures would pass by chance.

A number after "ending in", "last four" and the like (``tail``) is the end of
a longer one: backed by an evidence number or id ending with its digits.

``outcome_tools`` (globs, default none): an amount in a sentence that reports
what an action did (``outcome_patterns``: processed, charged, refunded,
paid, "refund of", ...) in a turn where one of these tools worked is checked
against those calls' results alone, or a sum or difference of two of their
figures; the reason marks it "not what the action returned".

Score: supported / checkable claims over all turns (1.0 with reason "no
checkable claims" when there is none); the reason counts the support by
source and lists the unsupported claims and those supported from beyond the
turn's own evidence, with their turn index and support (at most
``max_listed`` each). Every assistant message of a
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
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from agentwatch.evaluate.arithmetic import Operand, explain
from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.rules import ParamReader, ToolError, _matches
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
    "dates_in",
    "same_date",
    "sentences",
    "unsupported",
]

#: Every kind of claim, in the order they are looked for (earlier kinds win overlaps).
CLAIM_KINDS = ("date", "time", "money", "percent", "id", "number", "term", "name")
#: Kinds checked by default: all but capitalized names, which sentence starts make noisy.
DEFAULT_KINDS = ("date", "time", "money", "percent", "id", "number", "term")


@dataclass(frozen=True, slots=True)
class Claim:
    """One checkable statement in an answer: its kind, its text, its normalized value."""

    kind: str
    text: str
    value: str
    start: int = field(default=0, compare=False, repr=False)
    #: The turn it was found in (set by :func:`unsupported` and the evaluators).
    turn: int | None = field(default=None, compare=False, repr=False)
    #: What backs it once checked (``"get_reservation_details result, turn 1"``, ``"$500 - $329"``);
    #: ``""`` when nothing does; None when not checked.
    support: str | None = field(default=None, compare=False, repr=False)
    #: The digits end a longer number or id ("the card ending in 7803"): backed by an evidence number
    #: or id that ends with them.
    tail: bool = field(default=False, compare=False, repr=False)
    #: An amount stated as what an action did ("$600 has been charged"): checked against the action's result
    #: when ``outcome_tools`` are configured.
    outcome: bool = field(default=False, compare=False, repr=False)

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

# Each pattern below that opens with a look-behind starts with a look-ahead for what its first character can
# be: a no-op for what it matches, but it lets the regular-expression engine skip ahead to such characters
# instead of trying the whole pattern at every position (two to three times faster on prose).
_DATE_ISO = re.compile(r"(?=\d)(?<![\d.])(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?!\d)")
_DATE_NUMERIC = re.compile(r"(?=\d)(?<![\d/.-])(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?![\d/])")
_DATE_MONTH_FIRST = re.compile(
    rf"(?=[jfmasond])\b({_MONTH})\b\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?!\d|:)(?:,?\s+(\d{{4}})(?!\d))?", _I)
_DATE_DAY_FIRST = re.compile(
    rf"(?=\d)(?<![\d.,:])(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\b\.?(?:,?\s+(\d{{4}})(?!\d))?", _I)
_TIME = re.compile(
    r"(?=\d)(?<![\d:.])([01]?\d|2[0-3]):([0-5]\d)(?::[0-5]\d(?:\.\d+)?)?(?:\s?([ap])\.?m\b\.?)?(?![\d:])", _I)
_TIME_AMPM = re.compile(r"(?=\d)(?<![\d:.])(1[0-2]|0?[1-9])\s?([ap])\.?m\b\.?", _I)
_SCALE = r"(?:\s?(k|thousand|million|mn|billion|bn)\b)?"
_MONEY_PREFIX = re.compile(
    rf"(?=[$€£¥UCAEGJI])(?:(?<![\w$€£¥])(?:US|C|A|AU|CA)?\$|€|£|¥|\b(?:USD|EUR|GBP|CAD|AUD|JPY|CHF|INR)\b)\s?-?({_NUM}){_SCALE}")
_MONEY_SUFFIX = re.compile(
    rf"(?=\d)(?<![\w.,])({_NUM}){_SCALE}\s?(?:USD|EUR|GBP|CAD|AUD|JPY|CHF|INR|(?i:dollars?|euros?|pounds?|bucks))\b")
_PERCENT = re.compile(rf"(?=\d)(?<![\w.,])({_NUM})\s?(?:%|(?i:percent|per cent)\b)")
_ID_UPPER = re.compile(
    r"(?=[A-Z0-9])(?<![\w-])(?=[A-Z0-9_-]*\d)(?=[A-Z0-9_-]*[A-Z])[A-Z0-9]+(?:[-_][A-Z0-9]+)*(?![\w-])")
_ID_SNAKE = re.compile(r"(?<![\w-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w-])")
_NUMBER = re.compile(rf"(?=\d)(?<![\w.,])({_NUM})(?![\w]|[.,]\d)")
_EVIDENCE_NUMBER = re.compile(rf"(?=\d)(?<![A-Za-z0-9.,])({_NUM})(?![A-Za-z0-9]|[.,]\d)")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
_DIGIT_RUN = re.compile(r"\d{4,}")
#: Words before a figure that say it is the end of a longer number: "card ending in 7803", "last four 6710".
_TAIL_CONTEXT = re.compile(r"\b(?:ending (?:in|with)|ends (?:in|with)|last (?:four|4|three|3|five|5)"
                           r"(?: digits)?(?: of)?|(?:number|no\.?) \W*(?:x+|\*+)|[x*]{3,}[-\s]?)\W*$", _I)
#: Number words a per-item figure may be multiplied by ("for two passengers").
_COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "both": 2, "twice": 2, "double": 2, "triple": 3}
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


@functools.lru_cache(maxsize=65_536)
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


def dates_in(text: str, *, day_first: bool = False) -> list[str]:
    """The dates written in ``text``, normalized (``2026-03-14``; ``--03-14`` without a year), in any form
    :func:`claims` reads."""
    return [value for _, _, value in sorted(_dates(text, day_first))]


def same_date(a: str, b: str) -> bool:
    """Two normalized dates are one day: same month and day, and the same year where both have one."""
    return a[-5:] == b[-5:] and (a.startswith("--") or b.startswith("--") or a[:4] == b[:4])


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


# --------------------------------------------------------------------------- evaluator

#: Where support may come from, in the order they are tried (a claim's support names the first that holds it).
SOURCES = ("turn", "user", "earlier_turns", "arguments", "system")
DEFAULT_SOURCES = SOURCES
#: How a reason counts support, by source and for arithmetic.
_CATEGORY_WORDS = {"turn": "the turn's evidence", "earlier_turns": "earlier turns", "user": "the user",
                   "arguments": "tool arguments", "system": "the system prompt", "arithmetic": "arithmetic"}
_ARITHMETIC_KINDS = frozenset({"money", "number"})
#: A sentence that reports what an action did with money.
DEFAULT_OUTCOME_PATTERNS = (
    r"\b(?:processed|charged|refunded|deducted|credited|debited|billed|paid|reimbursed)\b",
    r"\brefund of\b",
)
_ACTION_ERRORS = ToolError()


@dataclass(frozen=True, slots=True)
class FaithfulnessParams:
    kinds: tuple[str, ...] = DEFAULT_KINDS
    terms: tuple[str, ...] = ()
    supported_by: tuple[str, ...] = DEFAULT_SOURCES
    #: Sums, differences and products over the figures on the table back a figure (see :mod:`.arithmetic`).
    arithmetic: bool = True
    max_terms: int = 3
    #: Tools whose result states what an action did (globs); amounts reported as outcomes are checked against it.
    outcome_tools: tuple[str, ...] = ()
    outcome_patterns: tuple[str, ...] = DEFAULT_OUTCOME_PATTERNS
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
        p.regexes("outcome_patterns", p.strings("outcome_patterns") or (), re.IGNORECASE)
        max_terms = p.integer("max_terms", minimum=2)
        if max_terms is not None and max_terms > 4:
            raise p.error("max_terms", "an integer from 2 to 4")
        return cls(
            kinds=kinds or DEFAULT_KINDS,
            terms=p.strings("terms", allow_empty=True) or (),
            supported_by=sources or DEFAULT_SOURCES,
            arithmetic=p.boolean("arithmetic", True),
            max_terms=max_terms or 3,
            outcome_tools=p.strings("outcome_tools", allow_empty=True) or (),
            outcome_patterns=p.strings("outcome_patterns") or DEFAULT_OUTCOME_PATTERNS,
            answers=p.string("answers", choices=("all", "final")) or "all",
            day_first=p.boolean("day_first", False),
            min_digits=p.integer("min_digits", minimum=1) or 2,
            max_listed=p.integer("max_listed", minimum=1) or 10,
        )


@dataclass(frozen=True, slots=True)
class _Source:
    """One body of evidence: where it comes from (``category``), how a reason names it, its index."""

    category: str
    label: str
    index: _Index


class _Checker:
    """Claims and their support, turn by turn in conversation order, each body of evidence indexed once.

    Turns are checked in order because arithmetic reads the figures already on
    the table: the supported figures of earlier answers and what the user said.
    """

    def __init__(self, params: FaithfulnessParams, session: SessionView | None) -> None:
        self.params = params
        self.session = session
        self.terms = _term_patterns(params.terms)
        self.names = "name" in params.kinds
        self._outcome = [re.compile(pattern, re.IGNORECASE) for pattern in params.outcome_patterns]
        self._results: dict[int, list[_Source]] = {}
        self._arguments: dict[int, list[_Source]] = {}
        self._texts: dict[str, _Index] = {}
        #: Figures on the table so far (supported figures of answers, the user's figures), in order.
        self.table: list[Operand] = []
        self.counts: set[int] = set()
        self._users_tabled: set[int] = set()

    def _indexed(self, category: str, label: str, texts: Sequence[str]) -> list[_Source]:
        """One source per distinct text, each text indexed once per session."""
        out: list[_Source] = []
        for text in dict.fromkeys(t for t in texts if t):
            index = self._texts.get(text)
            if index is None:
                index = self._texts[text] = _Index([text], self.params.day_first)
            out.append(_Source(category, label, index))
        return out

    def results(self, turn: Turn) -> list[_Source]:
        """The turn's tool results and retrieved documents, one source each."""
        found = self._results.get(turn.index)
        if found is None:
            found = []
            for call in turn.tool_calls:
                if call.result is not None:
                    found.extend(self._indexed("turn", f"{call.name} result, turn {turn.index}",
                                               [_dump(call.result)]))
            for doc in turn.documents:
                if doc.get("content"):
                    name = doc.get("id") or doc.get("title") or "document"
                    found.extend(self._indexed("turn", f"retrieved {name}, turn {turn.index}",
                                               [_dump(doc["content"])]))
            self._results[turn.index] = found
        return found

    def arguments(self, turn: Turn) -> list[_Source]:
        """The arguments of the turn's tool calls that worked: what was searched, booked, refunded."""
        found = self._arguments.get(turn.index)
        if found is None:
            found = [source for call in turn.tool_calls
                     if call.arguments is not None and _ACTION_ERRORS.problem(call) is None
                     for source in self._indexed("arguments", f"{call.name} arguments, turn {turn.index}",
                                                 [_dump(call.arguments)])]
            self._arguments[turn.index] = found
        return found

    def _earlier(self, turn: Turn) -> list[Turn]:
        if self.session is None:
            return []
        return [t for t in self.session.turns if t.index < turn.index]

    def sources(self, turn: Turn) -> list[_Source]:
        params = self.params
        out: list[_Source] = []
        if "turn" in params.supported_by:
            out.extend(self.results(turn))
        if "user" in params.supported_by:
            out.extend(self._indexed("user", "the user", _user_texts(self.session, turn)))
        if "earlier_turns" in params.supported_by:
            for earlier in reversed(self._earlier(turn)):
                out.extend(_Source("earlier_turns", s.label, s.index) for s in self.results(earlier))
            out.extend(self._indexed("earlier_turns", "a tool response the model saw", _seen_tool_responses(turn)))
        if "arguments" in params.supported_by:
            for t in [turn, *reversed(self._earlier(turn))]:
                out.extend(self.arguments(t))
        if "system" in params.supported_by:
            out.extend(self._indexed("system", "the system prompt", _system_texts(turn)))
        return out

    def claims(self, turn: Turn) -> list[Claim]:
        """The turn's distinct checkable claims, first occurrence kept (an outcome if any occurrence is one)."""
        seen: dict[tuple[str, str], int] = {}
        out: list[Claim] = []
        for text in _answer_texts(turn, self.params.answers):
            outcomes = self._outcome_spans(text)
            for claim in self._scan(text):
                key = (claim.kind, claim.value)
                if claim.kind not in self.params.kinds:
                    continue
                outcome = claim.kind == "money" and any(a <= claim.start < b for a, b in outcomes)
                if key not in seen:
                    seen[key] = len(out)
                    out.append(replace(claim, turn=turn.index, outcome=outcome))
                elif outcome:
                    out[seen[key]] = replace(out[seen[key]], outcome=True)
        return out

    def _outcome_spans(self, text: str) -> list[tuple[int, int]]:
        """Where the sentences (and list lines) that report an action's outcome are."""
        if not self.params.outcome_tools:
            return []
        spans = []
        start = 0
        for m in [*re.finditer(r"(?<=[.!?])\s+|\n+", text), None]:
            end = m.start() if m is not None else len(text)
            if any(p.search(text[start:end]) for p in self._outcome):
                spans.append((start, end))
            if m is not None:
                start = m.end()
        return spans

    def _scan(self, text: str) -> list[Claim]:
        found = _scan(text, terms=self.terms, names=self.names, day_first=self.params.day_first,
                      min_digits=self.params.min_digits)
        return [replace(c, tail=True) if c.kind == "number" and _TAIL_CONTEXT.search(text[:c.start]) else c
                for c in found]

    def _table_user(self, turn: Turn) -> None:
        """The user's figures up to ``turn`` join the table (once per turn)."""
        turns = [*self._earlier(turn), turn]
        for t in turns:
            if t.index in self._users_tabled:
                continue
            self._users_tabled.add(t.index)
            for claim in self._scan(t.user_text):
                if claim.kind in _ARITHMETIC_KINDS and not claim.tail:
                    self.table.append(Operand(Decimal(claim.value), claim.text))
            self.counts.update(_small_counts(t.user_text))
            for source in self.results(t):
                self.counts.update(n for n in source.index.list_lengths if 2 <= n <= 9)

    def check(self, turn: Turn) -> tuple[list[Claim], list[Claim]]:
        """``(checkable, unsupported)`` claims of ``turn``, each with its ``support``.

        Call it for the turns in conversation order: arithmetic reads the figures of earlier answers.
        """
        found = self.claims(turn)
        if self.params.arithmetic:
            self._table_user(turn)
        if not found:
            return [], []
        sources = self.sources(turn)
        acted = self._acted(turn)
        checked: list[Claim] = []
        for claim in found:
            if claim.outcome and acted:
                checked.append(replace(claim, support=self._outcome_support(claim, acted)))
                continue
            source = next((s for s in sources if s.index.supports(claim)), None)
            checked.append(replace(claim, support=_support_text(source) if source else "", outcome=False))
        if self.params.arithmetic:
            for text in _answer_texts(turn, self.params.answers):
                self.counts.update(_small_counts(text))
            checked = self._arithmetic(checked)
        return checked, [c for c in checked if not c.support]

    def _acted(self, turn: Turn) -> list[_Source]:
        """The results of the turn's ``outcome_tools`` calls that worked: what its actions did."""
        if not self.params.outcome_tools:
            return []
        worked = [call for call in turn.tool_calls if _matches(call.name, self.params.outcome_tools)
                  and call.result is not None and _ACTION_ERRORS.problem(call) is None]
        return [source for call in worked
                for source in self._indexed("turn", f"{call.name} result, turn {turn.index}", [_dump(call.result)])]

    def _outcome_support(self, claim: Claim, acted: list[_Source]) -> str:
        """What backs an amount reported as an action's outcome: the action's result, or a sum or difference
        of two of its figures (the new fare of two flights), never other evidence."""
        source = next((s for s in acted if s.index.supports(claim)), None)
        if source is not None:
            return _support_text(source)
        if not self.params.arithmetic:
            return ""
        for source in acted:
            operands = [Operand(Decimal(n), f"{n} ({source.label})") for n in sorted(source.index.numbers,
                                                                                     key=Decimal)]
            how = explain(Decimal(claim.value), operands, max_terms=2)
            if how is not None:
                return f"= {how}"
        return ""

    def _arithmetic(self, checked: list[Claim]) -> list[Claim]:
        """Unsupported figures that the figures on the table (this answer's included) add up to."""
        def operand(claim: Claim) -> Operand:
            return Operand(Decimal(claim.value), claim.text)

        mine = [operand(c) for c in checked if c.support and c.kind in _ARITHMETIC_KINDS and not c.tail]
        changed = True
        while changed:
            changed = False
            for i, claim in enumerate(checked):
                if claim.support or claim.kind not in _ARITHMETIC_KINDS or claim.tail or claim.outcome:
                    continue
                how = explain(Decimal(claim.value), [*self.table, *mine], max_terms=self.params.max_terms,
                              counts=self.counts)
                if how is not None:
                    checked[i] = replace(claim, support=f"= {how}")
                    mine.append(operand(claim))
                    changed = True
        self.table.extend(mine)
        return checked


def _support_text(source: _Source) -> str:
    return source.label


def _small_counts(text: str) -> set[int]:
    """Counts 2-9 written in ``text`` as digits or words ("2 bags", "three passengers", "both")."""
    out = {int(d) for d in re.findall(r"(?<![\d.,$])\b([2-9])\b(?![\d.,])", text)}
    out.update(_COUNT_WORDS[w] for w in _WORD.findall(text.lower()) if w in _COUNT_WORDS)
    return out


def _category(claim: Claim) -> str:
    support = claim.support or ""
    if support.startswith("= "):
        return "arithmetic"
    if support == "the user":
        return "user"
    if support == "the system prompt":
        return "system"
    if " arguments, turn " in support:
        return "arguments"
    if claim.turn is not None and support.endswith(f", turn {claim.turn}"):
        return "turn"
    return "earlier_turns"


def _checked_session(params: FaithfulnessParams, session: SessionView) -> list[Claim]:
    checker = _Checker(params, session)
    out: list[Claim] = []
    for turn in session.turns:
        out.extend(checker.check(turn)[0])
    return out


def unsupported(turn: Turn, session: SessionView | None = None,
                params: FaithfulnessParams | Mapping[str, Any] | None = None) -> list[Claim]:
    """The claims of ``turn``'s answers that its evidence (and ``supported_by`` sources) do not back.

    ``session`` is needed for every source beyond this turn's own model calls
    and for arithmetic over the figures of earlier answers.
    """
    if not isinstance(params, FaithfulnessParams):
        params = FaithfulnessParams.parse(params)
    checker = _Checker(params, session)
    if session is not None:
        for earlier in session.turns:
            if earlier.index >= turn.index:
                break
            checker.check(earlier)
    return checker.check(turn)[1]


class Faithfulness:
    """Share of the answers' checkable claims that the evidence backs, as a reader would (see the module doc)."""

    name = "faithfulness"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params = FaithfulnessParams.parse(params, self.name)

    def unsupported(self, turn: Turn, session: SessionView | None = None) -> list[Claim]:
        return unsupported(turn, session, self.params)

    def claims(self, session: SessionView) -> list[Claim]:
        """Every checkable claim of the session, in order, each with its ``turn`` and ``support``."""
        return _checked_session(self.params, session)

    async def evaluate(self, session: SessionView) -> EvalResult:
        try:
            return self._evaluate(session)
        except Exception as exc:  # an evaluator error is recorded, never scored 0
            return EvalResult.failure(f"evaluator {self.name!r} failed: {type(exc).__name__}: {exc}")

    def _evaluate(self, session: SessionView) -> EvalResult:
        if not any(_answer_texts(turn, self.params.answers) for turn in session.turns):
            return EvalResult.failure("no agent answer text in the session; is message content capture on?")
        found = _checked_session(self.params, session)
        if not found:
            return EvalResult.ok(1.0, reason="no checkable claims")
        missing = [c for c in found if not c.support]
        supported = len(found) - len(missing)
        by: dict[str, int] = {}
        for claim in found:
            if claim.support:
                by[_category(claim)] = by.get(_category(claim), 0) + 1
        reason = f"{supported}/{len(found)} claims supported"
        if set(by) - {"turn"}:
            reason += " (" + ", ".join(f"{by[c]} by {_CATEGORY_WORDS[c]}" for c in _CATEGORY_WORDS if c in by) + ")"
        limit = self.params.max_listed
        if missing:
            listed = ", ".join(f"turn {c.turn}: {c.text} ({c.kind}"
                               f"{', not what the action returned' if c.outcome else ''})" for c in missing[:limit])
            more = f", and {len(missing) - limit} more" if len(missing) > limit else ""
            reason += f"; unsupported, in no evidence: {listed}{more}"
        beyond = [c for c in found if c.support and _category(c) not in ("turn", "user")]
        if beyond:
            listed = ", ".join(f"turn {c.turn}: {c.text} ({_because(c)})" for c in beyond[:limit])
            more = f", and {len(beyond) - limit} more" if len(beyond) > limit else ""
            reason += f"; supported beyond the turn: {listed}{more}"
        return EvalResult.ok(supported / len(found), reason=reason)


def _because(claim: Claim) -> str:
    support = claim.support or ""
    return support if support.startswith("= ") else f"in {support}"


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
