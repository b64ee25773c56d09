"""Figures, dates, times, identifiers and terms as written, and the canonical values they compare by.

The evaluator's shared patterns and tables live here, so that claim
extraction and evidence indexing read a value the same way: ``$1,200.00``
and ``1200`` are both ``1200`` (:func:`_canon`), ``March 14`` is
``--03-14``, ``A-1001`` is ``A1001``. :func:`dates_in` and
:func:`same_date` serve the policy checks too.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

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


def dates_in(text: str, *, day_first: bool = False) -> list[str]:
    """The dates written in ``text``, normalized (``2026-03-14``; ``--03-14`` without a year), in any form
    :func:`claims` reads."""
    return [value for _, _, value in sorted(_dates(text, day_first))]


def same_date(a: str, b: str) -> bool:
    """Two normalized dates are one day: same month and day, and the same year where both have one."""
    return a[-5:] == b[-5:] and (a.startswith("--") or b.startswith("--") or a[:4] == b[:4])
