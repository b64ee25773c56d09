"""Write docs/cli.md from the commands themselves: ``python scripts/cli_reference.py > docs/cli.md``.

``tests/test_docs.py`` regenerates it and compares, so the page cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from agentwatch.cli import main

HEADER = """# Command-line reference

Generated from the commands (`python scripts/cli_reference.py > docs/cli.md`; a test checks it is
current). Every command also answers `--help`. Commands that read the store take `--config` and
`--database-url` (or `AGENTWATCH_DATABASE_URL`); durations are written `30s`, `5m`, `1h`, `7d`.
"""


def _commands(group: click.Group, prefix: str = "agentwatch") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, full)
        else:
            yield full, command


def _default(option: click.Option) -> str:
    if option.required:
        return "required"
    if option.is_flag or option.default is None or type(option.default).__name__ == "Sentinel":
        return ""
    if isinstance(option.default, (tuple, list)):
        return "" if not option.default else ", ".join(f"`{d}`" for d in option.default)
    return f"`{option.default}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference() -> str:
    lines = [HEADER]
    for full, command in _commands(main):
        lines.append(f"## `{full}`\n")
        lines.append(_cell((command.help or "").split("\n\n")[0]) + "\n")
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            lines.append("Arguments: " + ", ".join(f"`{a.human_readable_name}`" for a in arguments) + "\n")
        options = [p for p in command.params if isinstance(p, click.Option)]
        if options:
            lines.append("| option | default | meaning |\n|---|---|---|")
            for option in options:
                names = ", ".join(f"`{name}`" for name in option.opts + option.secondary_opts)
                meaning = _cell(option.help or "")
                if isinstance(option.type, click.Choice) and option.name != "scenario":
                    meaning += (" " if meaning else "") + "One of " + ", ".join(
                        f"`{choice}`" for choice in option.type.choices) + "."
                if option.envvar:
                    meaning += f" Environment: `{option.envvar}`."
                lines.append(f"| {names} | {_default(option)} | {meaning.strip()} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
