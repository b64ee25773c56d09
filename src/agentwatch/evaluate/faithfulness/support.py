"""Support: which claims of a session the evidence backs, turn by turn, and by what.

:class:`FaithfulnessParams` reads the evaluator's parameters; :class:`_Checker`
tries the sources of support in order (the turn's evidence, the user, earlier
turns, tool arguments, the system prompt), checks amounts reported as an
action's outcome against that action's result, and derives the remaining
figures by arithmetic over the figures already on the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from agentwatch.evaluate.arithmetic import Operand, explain
from agentwatch.evaluate.faithfulness.canon import _COUNT_WORDS, _TAIL_CONTEXT, _WORD
from agentwatch.evaluate.faithfulness.evidence import (
    _answer_texts,
    _dump,
    _Index,
    _seen_tool_responses,
    _system_texts,
    _user_texts,
)
from agentwatch.evaluate.faithfulness.extract import CLAIM_KINDS, DEFAULT_KINDS, Claim, _scan, _term_patterns
from agentwatch.evaluate.rules import ParamReader, ToolError
from agentwatch.evaluate.rules.common import matches_any
from agentwatch.evaluate.session import SessionView, Turn

#: Where support may come from, in the order they are tried (a claim's support names the first that holds it).
SOURCES = ("turn", "user", "earlier_turns", "arguments", "system")
DEFAULT_SOURCES = SOURCES
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
    #: Sums, differences and products over the figures on the table back a figure
    #: (see :mod:`agentwatch.evaluate.arithmetic`).
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
        worked = [call for call in turn.tool_calls if matches_any(call.name, self.params.outcome_tools)
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
