"""Differential compatibility suite: unmodified third-party clients, each case run directly
against an OpenAI-compatible upstream and through a `duetto` gateway in front of it.

A case that passes directly must pass through duetto: the through-duetto runs are ordinary
tests. Known differences are listed in `gaps.py` and marked `xfail(strict=True)`, so a fix
flips them to a failure until the mark is removed. `scripts/compat_table.py` runs this suite
and writes the measured table into docs/gateway.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from compat import gaps
from compat.env import TARGETS, CompatEnv, Target, compat_env, stop_env

HERE = Path(__file__).parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_env()


def case_of(item: pytest.Item) -> tuple[str, str | None]:
    """("file::case", target) of a compat test item, e.g. ("openai_client::test_n_2", "duetto");
    target None when it has none."""
    name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
    name = f"{Path(str(item.fspath)).stem.removeprefix('test_')}::{name}"
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("target") if callspec is not None else None
    if target is None:  # LangChain's classes carry their target as a class attribute
        target = getattr(getattr(item, "cls", None), "TARGET", None)
    return name, target


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.compat)
        name, target = case_of(item)
        if name in gaps.UPSTREAM:
            reason = f"upstream lacks it: {gaps.UPSTREAM[name]}"
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
        elif target is not None and target != "direct" and name in gaps.THROUGH_DUETTO:
            reason = f"through duetto: {gaps.THROUGH_DUETTO[name]}"
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat: differential third-party client suite")


@pytest.fixture(scope="session")
def env() -> CompatEnv:
    return compat_env()


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest, env: CompatEnv) -> Iterator[Target]:
    env.upstream.reset()
    yield env.target(request.param)
