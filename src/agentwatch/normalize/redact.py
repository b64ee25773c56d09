"""Redaction at ingest: e-mail addresses, card numbers and configured patterns.

Applied in the normalize stage, before anything is stored (see ``docs/redaction.md``).

Speed is the constraint: a span's attributes, events and links are redacted
as their serialized JSON text, in one pass per text with cheap pre-checks
(``'@' in text`` before the e-mail regex; a plain digit-run scan finds card
candidates, each Luhn-checked in Python). E-mail and card marks never contain JSON
syntax characters, a match that starts inside an escape sequence is trimmed, and a
digit run that is a JSON number (a timestamp) is left alone, so the text stays valid
JSON. Configured patterns run on a shadow of the text with escape sequences blanked:
a match never crosses a quote, newline or backslash. After a pattern replacement the
text is parsed once (a pattern may match inside a number or ``true``); if it no longer
parses, the value is redacted string by string instead.

Marks:

* e-mail: ``[email:<first 8 hex of sha256 of the lower-cased address>]``, deterministic,
  so a user id or session id that is an e-mail still groups and can still be erased;
* card number (13-19 digits, single spaces or dashes between, Luhn-valid): ``[card:****1234]``;
* configured pattern ``name``: ``[redacted:name]``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from agentwatch.errors import ConfigError
from agentwatch.settings import Section, config_line

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
_decode = json.loads

# No lookbehinds (they would cost per position): a match that starts inside a JSON escape
# (\n, \u0001) is trimmed in _email_sub.
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
# Candidate runs of digits, spaces and dashes (at least 13 characters); each is then split into digit
# groups, and groups that together hold 13-19 digits and pass the Luhn check are replaced. A plain
# character-class scan: lookbehinds here would cost tens of microseconds per span.
_DIGIT_RUN = re.compile(r"[0-9][0-9 \-]{11,}[0-9]")
_GROUPS = re.compile(r"[0-9]+|[ \-]+")
_ESCAPES = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)", re.DOTALL)


def _blank(match: re.Match[str]) -> str:
    return "\x00" * len(match.group())


_NUMBER_BEFORE = frozenset(":,[.+-eE")
_NUMBER_AFTER = frozenset(",]}.eE")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def email_mark(address: str) -> str:
    """The deterministic mark of one e-mail address."""
    return f"[email:{hashlib.sha256(address.lower().encode('utf-8')).hexdigest()[:8]}]"


_MARK_PREFIXES = ("[email:", "[card:", "[redacted:")


def _touches_mark(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` overlaps a mark already written (a later pattern never rewrites one)."""
    if "[" not in text:
        return False
    for pos in (start, end - 1):
        opening = text.rfind("[", max(0, pos - 80), pos + 1)
        if opening >= 0 and text.startswith(_MARK_PREFIXES, opening) and text.find("]", opening) >= pos:
            return True
    found = text[start:end]
    return any(prefix in found for prefix in _MARK_PREFIXES)


def _card_sub(match: re.Match[str]) -> str:
    found = match.group()
    text = match.string
    start = match.start()
    skip = 0
    if "\\" in text[max(0, start - 5):start]:
        end = _escaped_at(text, start)
        if end > start:  # the run starts inside \uXXXX: only what follows the escape counts
            skip = end - start
            while skip < len(found) and not found[skip].isdigit():
                skip += 1
            if len(found) - skip < 13:
                return found
    marked = _cards(found[skip:], text, start + skip)
    return found if marked is None else found[:skip] + marked


def _email_sub(match: re.Match[str]) -> str:
    found = match.group()
    text = match.string
    start = match.start()
    if "\\" in text[max(0, start - 5):start]:
        end = _escaped_at(text, start)
        if end > start:
            rest = found[end - start:]
            if _EMAIL.fullmatch(rest) is None:
                return found
            return found[:end - start] + email_mark(rest)
    return email_mark(found)


def _escaped_at(text: str, start: int) -> int:
    """The end of the escape sequence (``\\n``, ``\\u00e9``) of JSON text that covers ``start``, or -1."""
    lo = max(0, start - 5)
    window = text.rfind("\\", lo, start)
    while window >= 0:
        run = 0
        i = window
        while i >= 0 and text[i] == "\\":
            run += 1
            i -= 1
        if run % 2 == 1:  # text[window] opens an escape
            end = window + (6 if text[window + 1:window + 2] == "u" else 2)
            return end if start < end else -1
        window = text.rfind("\\", lo, i + 1)  # an escaped backslash: look further left
    return -1


def _in_string(text: str, pos: int) -> bool:
    """Whether ``pos`` of JSON text lies inside a string (a linear scan: rare ambiguous cases only)."""
    inside = False
    i = 0
    while True:
        quote = text.find('"', i, pos)
        if quote < 0:
            return inside
        if inside:
            run = 0
            j = quote - 1
            while j >= 0 and text[j] == "\\":
                run += 1
                j -= 1
            if run % 2 == 0:
                inside = False
        else:
            inside = True
        i = quote + 1


def _cards(run: str, text: str | None, start: int) -> str | None:
    """``run`` (a candidate digit run found at ``start`` of ``text``) with its card numbers marked, or None."""
    groups = _GROUPS.findall(run)
    out: list[str] = []
    changed = False
    i = 0
    n = len(groups)
    while i < n:
        piece = groups[i]
        if not piece[0].isdigit():
            out.append(piece)
            i += 1
            continue
        # the longest run of whole groups from i, single separators between, with 13-19 digits that passes Luhn
        best = -1
        digits = ""
        j = i
        while j < n:
            digits += groups[j]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                best = j
            if j + 1 < n and len(groups[j + 1]) == 1 and j + 2 < n:
                j += 2
            else:
                break
        if best < 0:
            out.append(piece)
            i += 1
            continue
        card = "".join(groups[i:best + 1:2])
        if text is not None and n == 1:
            # a bare digit run: it may be a JSON number literal (a timestamp) rather than text
            before = text[start - 1] if start else ""
            after_pos = start + len(run)
            after = text[after_pos] if after_pos < len(text) else ""
            if (not before or before in _NUMBER_BEFORE) and (not after or after in _NUMBER_AFTER) \
                    and not _in_string(text, start):
                return None
        out.append(f"[card:****{card[-4:]}]")
        changed = True
        i = best + 1
    return "".join(out) if changed else None


class Redactor:
    """Replaces e-mail addresses, Luhn-valid card numbers and configured patterns.

    Picklable (decode worker processes receive it): it pickles as its settings and
    compiles again on the other side.
    """

    __slots__ = ("emails", "cards", "patterns", "_compiled", "active")

    def __init__(self, emails: bool = True, cards: bool = True,
                 patterns: tuple[tuple[str, str], ...] = ()) -> None:
        self.emails = bool(emails)
        self.cards = bool(cards)
        self.patterns = tuple((str(n), str(r)) for n, r in patterns)
        self._compiled = tuple((re.compile(r), f"[redacted:{n}]") for n, r in self.patterns)
        self.active = self.emails or self.cards or bool(self.patterns)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Redactor, (self.emails, self.cards, self.patterns))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redactor) and (self.emails, self.cards, self.patterns) == (
            other.emails, other.cards, other.patterns)

    def __hash__(self) -> int:
        return hash((self.emails, self.cards, self.patterns))

    def __repr__(self) -> str:
        names = [n for n, _ in self.patterns]
        return f"Redactor(emails={self.emails}, cards={self.cards}, patterns={names})"

    # -- configuration -------------------------------------------------------------------------

    @classmethod
    def from_section(cls, section: Any, where: str = "agentwatch.yaml") -> Redactor:
        """The ``redaction`` section of the config file; e-mails and cards are on by default.

        ``redaction: {emails: true, cards: true, patterns: [{name: ssn, regex: '\\b\\d{3}-\\d{2}-\\d{4}\\b'}]}``
        """
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}, key redaction: expected a mapping of emails, cards, patterns")
        read = Section(where, section, "redaction").only(("emails", "cards", "patterns"))
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key in ("emails", "cards"):
                if not isinstance(value, bool):
                    raise read.error(key, f"expected true or false, got {value!r}")
                values[key] = value
            else:
                values["patterns"] = _patterns(value, where, config_line(section, key))
        return cls(**values)

    # -- redaction -----------------------------------------------------------------------------

    def _core(self, text: str) -> tuple[str, bool]:
        """``text`` (JSON text) redacted, and whether a replacement could have broken the JSON."""
        risky = False
        if self.emails and "@" in text:
            text = _EMAIL.sub(_email_sub, text)
        if self.cards:
            text = _DIGIT_RUN.sub(_card_sub, text)
        if self._compiled:
            # Patterns run on a shadow of the text with every escape sequence (\n, \", \u0001) blanked
            # to NULs: a match never includes or starts inside one, and \b sees a boundary there.
            shadow = _ESCAPES.sub(_blank, text) if "\\" in text else text
            for regex, mark in self._compiled:
                pieces: list[str] = []
                last = 0
                for match in regex.finditer(shadow):
                    start, end = match.span()
                    found = match.group()
                    if not found or '"' in found or "\x00" in found or _touches_mark(shadow, start, end):
                        continue
                    pieces.append(text[last:start])
                    pieces.append(mark)
                    last = end
                if pieces:
                    pieces.append(text[last:])
                    text = "".join(pieces)
                    shadow = _ESCAPES.sub(_blank, text) if "\\" in text else text
                    risky = True
        return text, risky

    def json_text(self, text: str) -> str:
        """Redacted JSON text (as written by ``store.statements.dumps``); the result is valid JSON."""
        if not self.active:
            return text
        out, risky = self._core(text)
        if not risky or out == text:
            return out
        try:
            _decode(out)
        except ValueError:
            # A replacement landed outside a string value (a number that reads like a card, a pattern
            # matching inside a literal): redact value by value instead.
            return _encoder.encode(self._walk(_decode(text)))
        return out

    def text(self, value: str) -> str:
        """One string redacted (the same matching as inside JSON: patterns see it JSON-escaped)."""
        if not self.active:
            return value
        encoded = _encoder.encode(value)
        out, _ = self._core(encoded)
        if out == encoded:
            return value
        decoded: str = _decode(out)  # one JSON string: no match can leave it, so it always parses
        return decoded

    def value(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) redacted; unchanged values are returned as is."""
        if not self.active or value is None:
            return value
        if type(value) is str:
            return self.text(value)
        try:
            encoded = _encoder.encode(value)
        except ValueError:  # a non-finite float: walk it
            return self._walk(value)
        out = self.json_text(encoded)
        return value if out == encoded else _decode(out)

    def _walk(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is dict:
            return {self.text(str(k)): self._walk(v) for k, v in value.items()}
        if kind is list or kind is tuple:
            return [self._walk(v) for v in value]
        return value  # numbers stay: timestamps and ids would read as card numbers

    def columns(self, row: dict[str, Any], keys: tuple[str, ...]) -> None:
        """Redact the text columns ``keys`` of ``row`` in place, with one pre-check over all of them."""
        if not self.active:
            return
        joined = "\x1f".join([v for k in keys if (v := row[k]) is not None])
        if not self._might_match(joined):
            return
        for key in keys:
            value = row[key]
            if value is not None:
                row[key] = self.text(value)

    def _might_match(self, text: str) -> bool:
        if self.emails and "@" in text:
            return True
        if self.cards and _DIGIT_RUN.search(text) is not None:
            return True
        return any(regex.search(text) is not None for regex, _ in self._compiled)


def _patterns(value: Any, where: str, line: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}, line {line}, key redaction.patterns: expected a list of {{name, regex}}")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        key = f"redaction.patterns[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}, line {line}, key {key}: expected a mapping {{name, regex}}, got {item!r}")
        lines = getattr(item, "lines", {})
        item_line = next(iter(lines.values()), line)
        for k in item:
            if k not in ("name", "regex"):
                raise ConfigError(f"{where}, line {lines.get(k, item_line)}, key {key}.{k}: unknown setting "
                                  "(known: name, regex)")
        name, regex = item.get("name"), item.get("regex")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}, line {lines.get('name', item_line)}, key {key}.name: expected a name of "
                              f"letters, digits, '_', '.' or '-' (it goes into the mark [redacted:name]), "
                              f"got {name!r}")
        if name in seen:
            raise ConfigError(f"{where}, line {lines.get('name', item_line)}, key {key}.name: "
                              f"pattern {name!r} is defined twice")
        seen.add(name)
        if not isinstance(regex, str) or not regex:
            raise ConfigError(f"{where}, line {lines.get('regex', item_line)}, key {key}.regex: expected a "
                              f"regular expression, got {regex!r}")
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"{where}, line {lines.get('regex', item_line)}, key {key}.regex: "
                              f"not a valid regular expression: {exc}") from exc
        if compiled.match(""):
            raise ConfigError(f"{where}, line {lines.get('regex', item_line)}, key {key}.regex: "
                              "the pattern matches the empty string")
        out.append((name, regex))
    return tuple(out)


NO_REDACTION = Redactor(emails=False, cards=False)
