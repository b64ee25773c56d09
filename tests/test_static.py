"""The package type-checks under mypy --strict, and ruff finds nothing (both configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_mypy_strict_on_the_package() -> None:
    result = run("mypy", "--no-incremental", "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_on_everything() -> None:
    result = run("ruff", "check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
