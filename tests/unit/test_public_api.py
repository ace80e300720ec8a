"""The public surface: `duetto.__all__` is pinned, every name resolves, and `import duetto`
stays light (httpx's tests/test_exported_members.py, plus a subprocess import check)."""

from __future__ import annotations

import subprocess
import sys

import duetto

EXPECTED = {
    # plain data and the seam
    "ChatModel", "ChatRequest", "ChatResponse", "LeafModel", "Message", "ModelCard", "RawResult",
    "Step", "StreamChunk", "Usage", "__version__",
    # real backends and verifiers
    "LlamaCppModel", "OpenAIModel", "ReplayModel", "JudgeVerifier", "LogprobVerifier",
    "SelfVerifier",
    # strategies (models too)
    "Cascade", "CompressAssist", "Fallback", "Fuse", "HintAssist", "Pipeline", "RedactAssist",
    "Route", "Stage", "Strategy",
    # assembly
    "Config", "Engine", "load_config", "load_default_config",
    # the whole error tree (errors.py's docstring)
    "DuettoError", "UserError", "ConfigError", "UnknownModel", "DataError", "ModelError",
    "ModelUnavailable", "CircuitOpen", "ModelTimeout", "UpstreamError", "RateLimited",
    "BrokenStream", "FallbackFailed", "GatewayError", "Rejected", "OverBudget", "GatewayFailure",
    "MissingCapability",
}  # fmt: skip


def test_all_is_pinned_and_resolves() -> None:
    assert set(duetto.__all__) == EXPECTED
    for name in duetto.__all__:
        assert getattr(duetto, name) is not None, name


def test_every_error_of_the_tree_is_exported_and_drawn() -> None:
    import duetto.errors as errors

    tree = {
        n
        for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, errors.DuettoError)
    }
    assert tree <= set(duetto.__all__)
    for name in tree:
        assert name in errors.__doc__, f"{name} missing from the tree in errors.py's docstring"


def test_import_duetto_stays_light() -> None:
    heavy = ["llama_cpp", "torch", "fastapi", "presidio_analyzer", "matplotlib", "sklearn", "spacy"]
    code = f"import sys, duetto; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
