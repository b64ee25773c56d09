"""The dashboard tests' filled servers (see ui_harness), one per engine for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ui_harness import Replays


@pytest.fixture(scope="session")
def replays(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Replays]:
    found = Replays(tmp_path_factory, request)
    yield found
    found.close()
