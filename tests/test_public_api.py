"""The package's public surface is deliberate, and every command is documented."""

from __future__ import annotations

from pathlib import Path

import click

import agentwatch
from agentwatch.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(agentwatch) if not name.startswith("_") and name not in ("annotations",)}
    modules = {name for name in public if type(getattr(agentwatch, name)).__name__ == "module"}
    assert agentwatch.__all__ == sorted(agentwatch.__all__, key=str.casefold)
    assert set(agentwatch.__all__) - {"__version__"} == public - modules


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out.extend(_commands(command, full + " "))
        else:
            out.append(full)
    return out


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in _commands(main):
        group = command.split()[0]
        assert f"agentwatch {group}" in readme and command in readme, \
            f"README.md does not document 'agentwatch {command}'"
