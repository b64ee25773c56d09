"""Figures a reader can work out: sums, differences and per-count products of figures on the table.

An agent that says "after the $329 booking, $171 is left on your $500
certificate" states a figure no document holds, and a person reading the
conversation accepts it at once: 500 - 329 = 171. :func:`explain` finds such
a derivation::

    from decimal import Decimal
    from agentwatch.evaluate.arithmetic import Operand, explain

    table = [Operand(Decimal(500), "$500"), Operand(Decimal(329), "$329")]
    explain(Decimal(171), table)                  # '$500 - $329'
    explain(Decimal(150), [Operand(Decimal(50), "$50")], counts=(3,))   # '3 x $50'
    explain(Decimal(172), table)                  # None

The operands are meant to be few: the figures already *on the table* (said
in the conversation and themselves supported), not every number of every
tool result. Over a hundred evidence numbers almost any figure is a sum or
difference of two of them, so arithmetic over the whole evidence would back
invented figures by chance; over the handful of figures a conversation has
shown, a match is rarely an accident.

Derivations tried, shortest first: ``a + b``, ``a - b``, ``k x a`` (``k`` one
of ``counts``: how many passengers, items, nights ... the evidence lists),
then with ``max_terms`` >= 3 every signed sum of three operands, and with 4
the sums of four (each mention of a figure is used once per derivation). Values compare
exactly (``Decimal``), so 0.1 + 0.2 is 0.3.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["MAX_OPERANDS", "Operand", "explain"]

#: At most this many operands are combined (the latest ones): the search stays small and chance matches rare.
MAX_OPERANDS = 24


@dataclass(frozen=True, slots=True)
class Operand:
    """A figure on the table and how a reason names it (``$500``)."""

    value: Decimal
    text: str


def _signed(terms: Sequence[tuple[int, Operand]]) -> str:
    out = ""
    for i, (sign, operand) in enumerate(terms):
        if i == 0:
            out = operand.text if sign > 0 else f"-{operand.text}"
        else:
            out += f" {'+' if sign > 0 else '-'} {operand.text}"
    return out


def explain(value: Decimal, operands: Iterable[Operand], *, max_terms: int = 3,
            counts: Iterable[int] = ()) -> str | None:
    """A derivation of ``value`` from ``operands`` (``"$500 - $329"``), or None when there is none.

    ``value`` and the operands are compared by absolute value (a refund of 50
    is backed by -50); an operand equal to ``value`` is not a derivation. A
    figure said twice (two $250 certificates) may be used twice.
    """
    target = abs(value)
    pool: list[Operand] = []
    seen: dict[Decimal, int] = {}
    for operand in operands:
        number = abs(operand.value)
        if number and number != target and seen.get(number, 0) < 2:
            seen[number] = seen.get(number, 0) + 1
            pool.append(Operand(number, operand.text))
    pool = pool[-MAX_OPERANDS:]
    if max_terms >= 2:
        by_value = {op.value: op for op in pool}
        for a in pool:
            rest = target - a.value
            if rest > 0 and rest in by_value and by_value[rest] is not a and a.value >= rest:
                return f"{a.text} + {by_value[rest].text}"
        for a in pool:
            rest = a.value - target
            if rest > 0 and rest in by_value and by_value[rest] is not a:
                return f"{a.text} - {by_value[rest].text}"
        for k in sorted(set(counts)):
            if k >= 2:
                for a in pool:
                    if a.value * k == target:
                        return f"{k} x {a.text}"
    for size in range(3, max_terms + 1):
        for group in itertools.combinations(pool, size):
            for signs in itertools.product((1, -1), repeat=size):
                if all(sign < 0 for sign in signs):
                    continue
                total = sum((sign * op.value for sign, op in zip(signs, group, strict=True)), Decimal(0))
                if total == target:
                    return _signed(sorted(zip(signs, group, strict=True), key=lambda t: -t[0]))
    return None
