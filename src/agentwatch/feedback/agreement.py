"""Agreement of an evaluator with human labels (methods.md §5).

Verdicts are compared as categories; "positive" means a failure (the human
says the session violates the objective, the evaluator flags it)::

    >>> m = binary_metrics([True, True, False, False], [True, False, False, False])
    >>> m["confusion"], m["accuracy"]
    ({'tp': 1, 'fp': 0, 'tn': 2, 'fn': 1}, 0.75)

- accuracy p_o and Cohen's kappa (p_o - p_e) / (1 - p_e), with p_e from the
  two raters' marginals (any categories: :func:`cohen_kappa`);
- the confusion matrix with TPR and TNR (at low prevalence accuracy is high
  while kappa is low);
- Spearman's rho and the mean absolute error of scores against the
  expected scores a reviewer gave;
- bootstrap 95% intervals that resample cases, paired across evaluator and
  human (``scipy.stats.bootstrap``, BCa, percentile where BCa is undefined);
- :func:`recommend_threshold`: the threshold with the lowest false-positive
  rate whose Clopper-Pearson upper bound on the false-negative rate meets a
  target (or the other way round), with its intervals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy import stats

#: Resamples of a bootstrap interval.
BOOTSTRAP_RESAMPLES = 9999
#: Fixed, so a run on the same cases gives the same intervals.
BOOTSTRAP_SEED = 20261203


def accuracy(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Share of items on which the two raters agree."""
    _same_length(a, b)
    if not a:
        return math.nan
    return sum(1 for x, y in zip(a, b, strict=True) if x == y) / len(a)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters over the same items (nan when undefined)."""
    _same_length(a, b)
    n = len(a)
    if not n:
        return math.nan
    p_o = accuracy(a, b)
    categories = set(a) | set(b)
    p_e = sum((sum(1 for x in a if x == k) / n) * (sum(1 for y in b if y == k) / n) for k in categories)
    if p_e >= 1.0:
        return 1.0 if p_o >= 1.0 else math.nan
    return (p_o - p_e) / (1.0 - p_e)


def _same_length(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"the raters label different numbers of items: {len(a)} and {len(b)}")


def confusion(human_fail: Sequence[bool], flagged: Sequence[bool]) -> dict[str, int]:
    """tp: both say failure; fp: flagged, human says fine; fn: a failure the evaluator missed."""
    _same_length(human_fail, flagged)
    out = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for h, f in zip(human_fail, flagged, strict=True):
        out["tp" if h and f else "fp" if f else "fn" if h else "tn"] += 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (nan with fewer than 3 pairs or a constant side)."""
    _same_length(x, y)
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def mean_absolute_error(x: Sequence[float], y: Sequence[float]) -> float:
    _same_length(x, y)
    if not x:
        return math.nan
    return sum(abs(a - b) for a, b in zip(x, y, strict=True)) / len(x)


def clopper_pearson(k: int, n: int, confidence: float = 0.95, *, one_sided: bool = False) -> tuple[float, float]:
    """Exact binomial interval of k in n; ``one_sided`` puts all of alpha on each side (an upper bound)."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1 - confidence
    tail = alpha if one_sided else alpha / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return low, high


# -- bootstrap -----------------------------------------------------------------


def _v_accuracy(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(a == b, axis=axis))


def _v_kappa(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    # Categories are coded 0..K-1 by the caller.
    p_o = np.mean(a == b, axis=axis)
    k = int(max(a.max(initial=0), b.max(initial=0))) + 1
    p_e = sum(np.mean(a == c, axis=axis) * np.mean(b == c, axis=axis) for c in range(k))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(p_e < 1.0, (p_o - p_e) / (1.0 - p_e), np.where(p_o >= 1.0, 1.0, np.nan)))


def _v_spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((rx * ry).sum(axis=axis) / np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis)))


def _v_mae(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(np.abs(x - y), axis=axis))


_STATISTICS = {"accuracy": _v_accuracy, "kappa": _v_kappa, "spearman": _v_spearman, "mae": _v_mae}


def bootstrap_ci(statistic: str, a: Sequence[Any], b: Sequence[Any], *, confidence: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """Paired bootstrap interval of ``statistic`` (accuracy, kappa, spearman, mae); None when undefined."""
    _same_length(a, b)
    if len(a) < 2:
        return None
    func = _STATISTICS[statistic]
    if statistic in ("accuracy", "kappa"):
        codes: dict[Hashable, int] = {}
        xa = np.array([codes.setdefault(v, len(codes)) for v in a])
        xb = np.array([codes.setdefault(v, len(codes)) for v in b])
    else:
        xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    point = float(func(xa, xb))
    if math.isnan(point):
        return None
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = stats.bootstrap((xa, xb), func, paired=True, vectorized=True, n_resamples=resamples,
                                         confidence_level=confidence, method=method,
                                         random_state=np.random.default_rng(BOOTSTRAP_SEED))
            except (ValueError, FloatingPointError):
                continue
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return [round(low, 6), round(high, 6)]
    return [round(point, 6), round(point, 6)]


# -- metrics of an evaluator against labels ---------------------------------


def binary_metrics(human_fail: Sequence[bool], flagged: Sequence[bool], *, intervals: bool = False,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """Accuracy, kappa, confusion matrix, TPR/TNR of flags against human failures (+ bootstrap CIs)."""
    cm = confusion(human_fail, flagged)
    positives, negatives = cm["tp"] + cm["fn"], cm["tn"] + cm["fp"]
    out: dict[str, Any] = {
        "n": len(human_fail),
        "accuracy": _round(accuracy(human_fail, flagged)),
        "kappa": _round(cohen_kappa(human_fail, flagged)),
        "confusion": cm,
        "tpr": _round(cm["tp"] / positives) if positives else None,
        "tnr": _round(cm["tn"] / negatives) if negatives else None,
    }
    if intervals:
        out["ci95"] = {"accuracy": bootstrap_ci("accuracy", human_fail, flagged, resamples=resamples),
                       "kappa": bootstrap_ci("kappa", human_fail, flagged, resamples=resamples)}
    return out


def score_metrics(expected: Sequence[float], scores: Sequence[float], *, intervals: bool = False,
                  resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """Spearman and MAE of scores against the expected scores reviewers gave (+ bootstrap CIs)."""
    out: dict[str, Any] = {"n": len(expected), "spearman": _round(spearman(expected, scores)),
                           "mae": _round(mean_absolute_error(expected, scores))}
    if intervals:
        out["ci95"] = {"spearman": bootstrap_ci("spearman", expected, scores, resamples=resamples),
                       "mae": bootstrap_ci("mae", expected, scores, resamples=resamples)}
    return out


def _round(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def recommend_threshold(scores: Sequence[float], human_fail: Sequence[bool], *, direction: str = "higher_is_better",
                        target_fnr: float | None = 0.05, target_fpr: float | None = None,
                        confidence: float = 0.95) -> dict[str, Any] | None:
    """The threshold that meets a target error rate with confidence (methods.md §5).

    With ``target_fnr`` (the default): among thresholds whose one-sided
    Clopper-Pearson upper bound on the false-negative rate is at most the
    target, the one with the lowest false-positive rate. With ``target_fpr``:
    the mirror image. A session is flagged when it would fail the threshold
    (``score < t`` when higher is better, ``score > t`` when lower is).
    ``met`` is false when no threshold meets the target; the answer is then
    the one closest to it. None without both failures and passes labelled.
    """
    _same_length(scores, human_fail)
    positives = sum(1 for h in human_fail if h)
    negatives = len(human_fail) - positives
    if not positives or not negatives:
        return None
    flip = direction == "lower_is_better"
    values = [1.0 - s for s in scores] if flip else list(scores)
    unique = sorted(set(values))
    # Flag iff value < t: t at each distinct value, and past the largest one (flag everything).
    candidates = unique + ([(unique[-1] + 1.0) / 2.0] if unique[-1] < 1.0 else [])
    rows = []
    for t in candidates:
        flagged = [v < t for v in values]
        cm = confusion(human_fail, flagged)
        rows.append((t, cm))
    bound_fnr = target_fpr is None
    target = target_fnr if bound_fnr else target_fpr
    assert target is not None

    def rates(cm: dict[str, int]) -> tuple[float, float, float, float]:
        fnr, fpr = cm["fn"] / positives, cm["fp"] / negatives
        fnr_hi = clopper_pearson(cm["fn"], positives, confidence, one_sided=True)[1]
        fpr_hi = clopper_pearson(cm["fp"], negatives, confidence, one_sided=True)[1]
        return fnr, fpr, fnr_hi, fpr_hi

    def key(row: tuple[float, dict[str, int]]) -> tuple[float, float]:
        fnr, fpr, _, _ = rates(row[1])
        return (fpr, fnr) if bound_fnr else (fnr, fpr)

    meeting = [r for r in rows if (rates(r[1])[2] if bound_fnr else rates(r[1])[3]) <= target]
    met = bool(meeting)
    if meeting:
        best = min(meeting, key=key)
    else:
        best = min(rows, key=lambda r: (rates(r[1])[2] if bound_fnr else rates(r[1])[3], key(r)))
    t, cm = best
    fnr, fpr, _, _ = rates(cm)
    threshold = 1.0 - t if flip else t
    return {
        "threshold": round(min(1.0, max(0.0, threshold)), 6),
        "target": {"fnr" if bound_fnr else "fpr": target, "confidence": confidence},
        "met": met,
        "fnr": round(fnr, 6), "fpr": round(fpr, 6),
        "fnr_ci95": [round(x, 6) for x in clopper_pearson(cm["fn"], positives, confidence)],
        "fpr_ci95": [round(x, 6) for x in clopper_pearson(cm["fp"], negatives, confidence)],
        "fnr_upper": round(clopper_pearson(cm["fn"], positives, confidence, one_sided=True)[1], 6),
        "fpr_upper": round(clopper_pearson(cm["fp"], negatives, confidence, one_sided=True)[1], 6),
        "confusion": cm,
        "positives": positives, "negatives": negatives,
    }
