"""An in-process pipeline for tests: a migrated database and a configuration written to a folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def configured_pipeline(database_url: str, folder: Path, config: str,
                        modules: dict[str, str] | None = None) -> Any:
    """An in-process pipeline on a migrated database, configured by ``config`` written to ``folder``.

    ``modules`` are Python files (name -> source) written beside the config,
    for ``kind: python`` evaluators; an earlier import of the same name is
    forgotten first. Decoding stays in-process (no worker processes).
    """
    from agentwatch.pipeline import Pipeline
    from agentwatch.settings import load_settings
    from agentwatch.store.store import Store

    for name, source in (modules or {}).items():
        sys.modules.pop(name, None)
        (folder / f"{name}.py").write_text(source)
    (folder / "agentwatch.yaml").write_text(config)
    store = Store(database_url)
    store.migrate()
    settings = load_settings(folder / "agentwatch.yaml", environ={}, database_url=database_url, decode_workers=0)
    return Pipeline(settings, store)
