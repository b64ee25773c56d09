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

from collections.abc import Mapping
from typing import Any

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.faithfulness.canon import dates_in, same_date
from agentwatch.evaluate.faithfulness.embedding import EmbeddingFaithfulness, EmbeddingParams, cosine, sentences
from agentwatch.evaluate.faithfulness.evidence import _answer_texts
from agentwatch.evaluate.faithfulness.extract import CLAIM_KINDS, DEFAULT_KINDS, Claim, claims
from agentwatch.evaluate.faithfulness.support import FaithfulnessParams, _checked_session, unsupported
from agentwatch.evaluate.session import SessionView, Turn

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

#: How a reason counts support, by source and for arithmetic.
_CATEGORY_WORDS = {"turn": "the turn's evidence", "earlier_turns": "earlier turns", "user": "the user",
                   "arguments": "tool arguments", "system": "the system prompt", "arithmetic": "arithmetic"}


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
