"""Evaluators against real outcomes: tau-bench airline sessions, scored, split by reward.

The 100 recorded GPT-4o airline conversations (``shared/data/tau-bench``)
go through the normal ingest path of a real server (``agentwatch import``'s
code: OTLP over HTTP, the outcome never sent), the rule and offline
faithfulness evaluators score them, and this report joins each score with
the session's real reward from the file and prints, per evaluator:

- the score distribution for the sessions that succeeded (reward 1) and those
  that did not (reward 0);
- the AUC: the chance that a successful session scores higher than a failed
  one (ties count half; 0.5 is a coin), with a 95% bootstrap interval
  (sessions resampled within each outcome, fixed seed);
- its flags (sessions that did not pass) against the failures: precision
  (flagged sessions that failed) and recall (failed sessions flagged).

    .venv/bin/python bench/taubench.py [--data ../shared/data/tau-bench/gpt-4o-airline-dev.json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from agentwatch.testing import ServerProcess
from agentwatch.traffic import flush, send
from agentwatch.traffic.importer import import_sessions, load_outcomes

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tau-bench" / "gpt-4o-airline-dev.json"
T0 = 1_767_225_600 * 10**9

CONFIG = """
sampling: {default_rate: 1.0}
evaluators:
  - {name: tool_use, kind: rule, rule: tool_error, threshold: 1.0}
  - {name: confirmation, kind: rule, rule: confirmation, threshold: 1.0,
     params: {tools: [book_reservation, cancel_reservation, update_reservation_flights,
                      update_reservation_passengers, update_reservation_baggages, send_certificate]}}
  - {name: budget, kind: rule, rule: budget, params: {max_turns: 20, max_tool_calls: 30}, threshold: 1.0}
  - {name: faithfulness, kind: faithfulness, threshold: 1.0,
     params: {outcome_tools: [book_reservation, cancel_reservation, "update_reservation_*", send_certificate]}}
  # The airline's policy as configuration: the ids and amounts of an action were on the record (a tool
  # result, the user, or what the agent told the user), and one action per reservation in a session.
  - {name: grounded_actions, kind: rule, rule: grounded_arguments, threshold: 1.0,
     params: {tools: [book_reservation, cancel_reservation, "update_reservation_*", send_certificate],
              fields: [reservation_id, user_id, "flights.*.flight_number", "flights.*.date",
                       "payment_methods.*.payment_id", "payment_methods.*.amount", payment_id, amount,
                       "passengers.*.first_name", "passengers.*.last_name", "passengers.*.dob"]}}
  - {name: one_action_each, kind: rule, rule: call_limit, threshold: 1.0,
     params: {tools: [book_reservation, cancel_reservation, "update_reservation_*"], key: [reservation_id],
              per: session}}
"""


def scores_by_session(url: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/api/v1/scores", params=params, timeout=60).json()
        for score in page["items"]:
            out.setdefault(score["session_id"], {})[score["evaluator"]] = score
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a positive scores higher than a negative), ties half: the Mann-Whitney U over the pair count."""
    if not positive or not negative:
        return float("nan")
    ranked = sorted([(v, 1) for v in positive] + [(v, 0) for v in negative])
    rank_sum = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid = (i + 1 + j) / 2  # the average 1-based rank of a run of ties
        rank_sum += mid * sum(1 for _, label in ranked[i:j] if label)
        i = j
    u = rank_sum - len(positive) * (len(positive) + 1) / 2
    return u / (len(positive) * len(negative))


def bootstrap_auc(positive: list[float], negative: list[float], *, rounds: int = 2000,
                  seed: int = 14) -> tuple[float, float]:
    """A 95% percentile interval for :func:`auc`, resampling each outcome's sessions with replacement."""
    if not positive or not negative:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    values = sorted(auc(rng.choices(positive, k=len(positive)), rng.choices(negative, k=len(negative)))
                    for _ in range(rounds))
    return values[int(0.025 * rounds)], values[int(0.975 * rounds) - 1]


def separation(scores: dict[str, dict[str, Any]], outcomes: dict[str, float], name: str) -> dict[str, Any]:
    """AUC (with interval) of ``name``'s scores, and its flags' precision and recall against failure."""
    rows = [(by_name[name], outcomes.get(sid, 0.0) >= 1.0) for sid, by_name in scores.items()
            if name in by_name and by_name[name]["status"] == "ok"]
    positive = [r["score"] for r, success in rows if success]
    negative = [r["score"] for r, success in rows if not success]
    flagged = [success for r, success in rows if not r["passed"]]
    true_flags = sum(1 for success in flagged if not success)
    low, high = bootstrap_auc(positive, negative)
    return {"auc": auc(positive, negative), "low": low, "high": high, "flags": len(flagged),
            "true_flags": true_flags, "failures": len(negative),
            "precision": true_flags / len(flagged) if flagged else float("nan"),
            "recall": true_flags / len(negative) if negative else float("nan")}


def report(scores: dict[str, dict[str, Any]], outcomes: dict[str, float]) -> list[str]:
    evaluators = sorted({name for by_name in scores.values() for name in by_name})
    lines = [f"{'evaluator':<18} {'outcome':<8} {'n':>3} {'mean':>6} {'p10':>6} {'median':>6} {'pass':>6} "
             f"{'errors':>6}"]
    for name in evaluators:
        for label, wanted in (("success", True), ("failure", False)):
            rows = [by_name[name] for sid, by_name in scores.items()
                    if name in by_name and (outcomes.get(sid, 0.0) >= 1.0) is wanted]
            values = sorted(r["score"] for r in rows if r["status"] == "ok")
            errors = sum(1 for r in rows if r["status"] == "error")
            if not values:
                lines.append(f"{name:<18} {label:<8} {len(rows):>3}      -      -      - {'-':>6} {errors:>6}")
                continue
            passed = sum(1 for r in rows if r["passed"]) / len(values)
            p10 = values[max(0, int(0.1 * len(values)) - 1)]
            lines.append(f"{name:<18} {label:<8} {len(rows):>3} {statistics.fmean(values):>6.3f} {p10:>6.3f} "
                         f"{statistics.median(values):>6.3f} {passed:>6.1%} {errors:>6}")
    return lines


def separation_report(scores: dict[str, dict[str, Any]], outcomes: dict[str, float]) -> list[str]:
    """Per evaluator: AUC [95% interval], and flags (not passed) against failure."""
    evaluators = sorted({name for by_name in scores.values() for name in by_name})
    lines = [f"{'evaluator':<18} {'AUC':>5} {'95% interval':>14} {'flags':>5} {'failed':>6} {'precision':>9} "
             f"{'recall':>6}"]
    for name in evaluators:
        s = separation(scores, outcomes, name)
        interval = f"[{s['low']:.2f}, {s['high']:.2f}]"
        lines.append(f"{name:<18} {s['auc']:>5.3f} {interval:>14} {s['flags']:>5} {s['true_flags']:>6} "
                     f"{s['precision']:>9.2f} {s['recall']:>6.2f}")
    return lines


def run(data: Path) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    outcomes = load_outcomes(data)
    with tempfile.TemporaryDirectory(prefix="agentwatch-taubench-") as folder:
        root = Path(folder)
        (root / "agentwatch.yaml").write_text(CONFIG)
        server = ServerProcess(f"sqlite:///{root / 'agentwatch.db'}", config=root / "agentwatch.yaml", grpc=False,
                               cwd=root)
        server.start(timeout=120.0)  # a loaded machine (a CI runner) can take a while to start it
        try:
            send(import_sessions(data, T0), server.url)
            flush(server.url)
            return scores_by_session(server.url), outcomes
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    scores, outcomes = run(args.data)
    successes = sum(1 for v in outcomes.values() if v >= 1.0)
    print(f"tau-bench airline: {len(outcomes)} sessions, {successes} with reward 1; "
          f"{len(scores)} scored through the ingest path")
    print("\n".join(report(scores, outcomes)))
    print()
    print("AUC = P(a successful session scores higher than a failed one); flags = sessions that did not pass,")
    print("precision = flags that failed, recall = failures flagged")
    print("\n".join(separation_report(scores, outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
