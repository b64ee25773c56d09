"""Claim extraction: the checkable claims of an answer, each kind found where no earlier kind was."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentwatch.evaluate.faithfulness.canon import (
    _I,
    _ID_SNAKE,
    _ID_UPPER,
    _MONEY_PREFIX,
    _MONEY_SUFFIX,
    _NAME,
    _NAME_STOP,
    _NUMBER,
    _PERCENT,
    _canon,
    _dates,
    _id_value,
    _term_value,
    _times,
)

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
