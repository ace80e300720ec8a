"""`duetto serve` freezes what start-up loaded (gc.freeze), after the lifespan started: a
process-wide step that belongs to the server, not to a library call such as the detector's."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette

from duetto.cli.serve import freeze_after_startup


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()  # the rest of the test run collects as usual


async def test_loaded_objects_are_frozen_once_the_lifespan_started(unfrozen: None) -> None:
    seen: list[int] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, str]]:
        seen.append(gc.get_freeze_count())  # while loading: nothing frozen yet
        yield {"state": "kept"}
        seen.append(gc.get_freeze_count())

    app = Starlette(lifespan=lifespan)
    freeze_after_startup(app)
    async with app.router.lifespan_context(app) as state:
        assert state == {"state": "kept"}
        frozen = gc.get_freeze_count()
    assert seen[0] == 0 and frozen > 0 and seen[1] > 0  # frozen before the first request
