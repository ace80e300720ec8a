"""Differential compatibility suite: unmodified third-party clients, each case run directly
against an OpenAI-compatible upstream and through a `duetto` gateway in front of it.

A case that passes directly must pass through duetto: the through-duetto runs are ordinary
tests. Known differences are listed in `gaps.py` and marked `xfail(strict=True)`, so a fix
flips them to a failure until the mark is removed. `scripts/compat_table.py` runs this suite
and writes the measured table into docs/gateway.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat import gaps
from compat.env import TARGETS, CompatEnv, Target, compat_env, stop_env

HERE = Path(__file__).parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_env()


def case_of(item: pytest.Item) -> tuple[str, str | None]:
    """("file::case", target) of a compat test item, e.g. ("openai_client::test_n_2",
    "duetto") or ("instructor::test_extract[tools]", "direct"): the test id without its target.
    Target None when the item has none."""
    name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
    callspec = getattr(item, "callspec", None)
    ids = callspec.id if callspec is not None else ""
    target = callspec.params.get("target") if callspec is not None else None
    if target is None:  # LangChain's classes carry their target as a class attribute
        target = getattr(getattr(item, "cls", None), "TARGET", None)
    elif ids == target:
        ids = ""
    elif ids.startswith(f"{target}-"):
        ids = ids[len(target) + 1 :]
    elif ids.endswith(f"-{target}"):
        ids = ids[: -len(target) - 1]
    stem = Path(str(item.fspath)).stem.removeprefix("test_")
    return f"{stem}::{name}" + (f"[{ids}]" if ids else ""), target


def gap_for(case: str, target: str | None) -> str | None:
    """Why `case` is expected to fail on `target`, or None (see gaps.py)."""
    if case in gaps.UPSTREAM:
        return f"upstream lacks it: {gaps.UPSTREAM[case]}"
    if target is None or target == "direct":
        return None
    reason = gaps.THROUGH_DUETTO.get(f"{case}@{target}") or gaps.THROUGH_DUETTO.get(case)
    return f"through duetto: {reason}" if reason else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # COMPAT_RAW=1 (scripts/compat_table.py): no xfail marks, every outcome as measured.
    raw = os.environ.get("COMPAT_RAW") == "1"
    for item in items:
        if HERE not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.compat)
        case, target = case_of(item)
        item.user_properties += [("compat_case", case), ("compat_target", target or "")]
        reason = gap_for(case, target)
        if reason and not raw:
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
