"""Deterministic head sampling, nested across rates.

A session's place in the sample is a number in [0, 1) drawn from a hash of
its id: the same on every node, on every restart and on replay. A session
is in the sample at rate ``r`` when that number is below ``r``, so a session
sampled at 5% is in every larger rate's sample too, and a 5% evaluator and a
20% evaluator agree on the 5%::

    from agentwatch.sample import included, unit

    included("conv-42", 0.05)   # same answer everywhere, always
    unit("conv-42")             # the number behind it, in [0, 1)

Every score records its inclusion probability (the rate), so rates over
scored sessions are Horvitz-Thompson estimates of the whole population.
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def unit(session_id: str) -> float:
    """The session's uniform draw in [0, 1)."""
    digest = hashlib.sha256(session_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def included(session_id: str, rate: float) -> bool:
    """Whether the session is in the head sample at ``rate``."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return unit(session_id) < rate
