"""Shared fixtures. Every test runs behind the network guard: a connection to anything but
loopback fails loudly (mark a test `allow_remote_network` to opt out)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from duetto.testing import FakeOpenAIServer
from duetto.testing.guard import block_remote_network, blocked_attempts

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_remote_network: run without the network guard")


@pytest.fixture(autouse=True)
def _network_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("allow_remote_network"):
        yield
        return
    undo = block_remote_network()
    blocked_attempts(clear=True)
    try:
        yield
    finally:
        undo()
    refused = blocked_attempts(clear=True)
    if refused:  # even if the code under test swallowed the error
        pytest.fail(f"test tried to reach the network: {refused}", pytrace=False)


@pytest.fixture
def shared_datasets() -> Path:
    """/work/shared/datasets (../shared from the repo root); skips when absent."""
    path = SHARED / "datasets"
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A fresh FakeOpenAIServer on loopback (echo script, no faults)."""
    with FakeOpenAIServer() as server:
        yield server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Free shared llama.cpp models while the interpreter is whole (else noisy __del__ at exit)."""
    import sys

    local = sys.modules.get("duetto.models.local")
    if local is not None:
        local.release_models()
