"""Refresh the dashboard screenshots in docs/img/ (the README shows them).

Starts ``agentwatch serve`` on a temporary SQLite file with the dashboard
tests' configuration, replays 26 hours of the simulated shop with the demo's
two incidents near the end (a tool failing with a new error, an off-policy
refund), flushes, and photographs the pages in headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright; no browser is downloaded).

    .venv/bin/python scripts/screenshots.py            # writes docs/img/*.png
    .venv/bin/python scripts/screenshots.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from agentwatch.testing import CHROMIUM_ARGS, CHROMIUM_PATH, ServerProcess
from agentwatch.traffic import INCIDENTS, Generator, flush, send

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "ui" / "agentwatch.yaml"
NS = 1_000_000_000
MINUTE = 60 * NS
START = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
END = START + 26 * 60 * MINUTE
#: (file, path, what to wait for, height of the shot): the viewport, not the whole page, keeps the files small.
SHOTS = [
    ("overview.png", "/", "#slos", 760),
    ("dimensions.png", "/dimensions?evaluator=faithfulness", ".dimension", 900),
    ("alert.png", "/alerts/{alert}", "h1", 760),
    ("session.png", "/traces/{trace}", ".turn.highlight", 820),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNG files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="agentwatch-shots-") as folder:
        server = ServerProcess(f"sqlite:///{Path(folder) / 'agentwatch.db'}", config=CONFIG, grpc=False, cwd=folder)
        server.start(timeout=120)
        try:
            incidents = [INCIDENTS["new_tool_error"](END - 45 * MINUTE),
                         INCIDENTS["off_policy_refund"](END - 20 * MINUTE)]
            sent = send(Generator(seed=1, start_ns=START, sessions_per_hour=120, incidents=incidents).sessions(
                until_ns=END), server.url, concurrency=8)
            flush(server.url, timeout=900)
            alerts = httpx.get(server.url + "/api/v1/alerts", params={"state": "firing"}, timeout=30).json()["items"]
            pick = next((a for a in alerts if a["kind"] == "rare_event" and a["trace_ids"]), None) or next(
                a for a in alerts if a["trace_ids"])
            print(f"replayed {sent.sessions} sessions; {len(alerts)} firing alerts")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
                for name, path, ready, height in SHOTS:
                    page = browser.new_page(viewport={"width": 1280, "height": height})
                    page.goto(server.url + path.format(alert=pick["id"], trace=pick["trace_ids"][0]))
                    page.wait_for_selector(ready)
                    if name == "session.png":
                        page.evaluate("window.scrollTo(0, 0)")
                    if name == "dimensions.png":  # the evaluator's card alone
                        page.locator(ready).first.screenshot(path=str(args.out / name))
                    else:
                        page.screenshot(path=str(args.out / name))
                    page.close()
                    print(f"{args.out / name}: {(args.out / name).stat().st_size / 1000:.0f} kB")
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
