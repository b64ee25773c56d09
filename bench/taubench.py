"""Evaluators against real outcomes: tau-bench airline sessions, scored, split by reward.

The 100 recorded GPT-4o airline conversations (``shared/data/tau-bench``)
go through the normal ingest path of a real server (``agentwatch import``'s
code: OTLP over HTTP, the outcome never sent), the rule and offline
faithfulness evaluators score them, and this report joins each score with
the session's real reward from the file and prints every evaluator's score
distribution for the sessions that succeeded (reward 1) and those that did
not (reward 0).

    .venv/bin/python bench/taubench.py [--data ../shared/data/tau-bench/gpt-4o-airline-dev.json]
"""

from __future__ import annotations

import argparse
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
  - {name: faithfulness, kind: faithfulness, threshold: 0.8}
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


def report(scores: dict[str, dict[str, Any]], outcomes: dict[str, float]) -> list[str]:
    evaluators = sorted({name for by_name in scores.values() for name in by_name})
    lines = [f"{'evaluator':<14} {'outcome':<8} {'n':>3} {'mean':>6} {'p10':>6} {'median':>6} {'pass':>6} "
             f"{'errors':>6}"]
    for name in evaluators:
        for label, wanted in (("success", True), ("failure", False)):
            rows = [by_name[name] for sid, by_name in scores.items()
                    if name in by_name and (outcomes.get(sid, 0.0) >= 1.0) is wanted]
            values = sorted(r["score"] for r in rows if r["status"] == "ok")
            errors = sum(1 for r in rows if r["status"] == "error")
            if not values:
                lines.append(f"{name:<14} {label:<8} {len(rows):>3}      -      -      - {'-':>6} {errors:>6}")
                continue
            passed = sum(1 for r in rows if r["passed"]) / len(values)
            p10 = values[max(0, int(0.1 * len(values)) - 1)]
            lines.append(f"{name:<14} {label:<8} {len(rows):>3} {statistics.fmean(values):>6.3f} {p10:>6.3f} "
                         f"{statistics.median(values):>6.3f} {passed:>6.1%} {errors:>6}")
    return lines


def run(data: Path) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    outcomes = load_outcomes(data)
    with tempfile.TemporaryDirectory(prefix="agentwatch-taubench-") as folder:
        root = Path(folder)
        (root / "agentwatch.yaml").write_text(CONFIG)
        with ServerProcess(f"sqlite:///{root / 'agentwatch.db'}", config=root / "agentwatch.yaml", grpc=False,
                           cwd=root) as server:
            send(import_sessions(data, T0), server.url)
            flush(server.url)
            return scores_by_session(server.url), outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    scores, outcomes = run(args.data)
    successes = sum(1 for v in outcomes.values() if v >= 1.0)
    print(f"tau-bench airline: {len(outcomes)} sessions, {successes} with reward 1; "
          f"{len(scores)} scored through the ingest path")
    print("\n".join(report(scores, outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
