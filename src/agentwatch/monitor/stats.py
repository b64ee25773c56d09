"""The few statistics the checks need, in closed form (methods.md §2, §3, §5)."""

from __future__ import annotations

import math

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denominator), min(1.0, (centre + margin) / denominator)


def poisson_sf(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu)."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    # 1 - P(X <= k-1), summed in log space for stability.
    term = math.exp(-mu)
    cdf = term
    for i in range(1, k):
        term *= mu / i
        cdf += term
    return max(0.0, 1.0 - cdf) if cdf < 0.999 else _upper_tail(k, mu)


def _upper_tail(k: int, mu: float) -> float:
    """Sum of P(X = i) for i >= k, for tails too small for 1 - cdf."""
    log_term = -mu + k * math.log(mu) - math.lgamma(k + 1)
    total, i = 0.0, k
    while True:
        term = math.exp(log_term)
        total += term
        i += 1
        log_term += math.log(mu) - math.log(i)
        if term < total * 1e-12 or i > k + 10_000:
            return total


def poisson_ci(k: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson mean with k observed events."""
    alpha = 1 - confidence

    def solve(target: float, count: int) -> float:
        # P(X >= count | mu) increases with mu; bisect for it to equal target.
        low, high = 0.0, max(10.0, 10.0 * (count + 1))
        for _ in range(200):
            mid = (low + high) / 2
            if poisson_sf(count, mid) < target:
                low = mid
            else:
                high = mid
        return (low + high) / 2

    lower = 0.0 if k == 0 else solve(alpha / 2, k)
    # Upper: P(X <= k | mu) = alpha/2  <=>  P(X >= k+1 | mu) = 1 - alpha/2.
    upper = solve(1 - alpha / 2, k + 1)
    return lower, upper
