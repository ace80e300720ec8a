"""Usage: what one call (or a whole request) cost on each axis. Usages add up."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(slots=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    bytes_sent: int = 0  # bytes that crossed to a remote model (HTTP request bodies + headers)
    bytes_received: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cost_usd: float = 0.0
    energy_j: float = 0.0  # an estimate: see duetto.models.base.estimate_energy
    pii_sent: int = 0  # PII entities of the user's input that reached an untrusted model
    calls: int = 0
    remote_calls: int = 0  # calls to models outside this process (the "LLM calls")
    # OpenAI's token details, as the answering models reported them (0: none reported).
    cached_tokens: int = 0  # prompt tokens served from the provider's prompt cache
    audio_tokens_in: int = 0
    reasoning_tokens: int = 0
    audio_tokens_out: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        out = Usage()
        for f in fields(Usage):
            a, b = getattr(self, f.name), getattr(other, f.name)
            # Latency of a composite is measured by the composite itself (Step.latency_ms);
            # the sum here is the sequential upper bound used when nothing better is known.
            if f.name == "ttft_ms":
                setattr(out, f.name, a if a is not None else b)
            else:
                setattr(out, f.name, a + b)
        return out

    def to_dict(self) -> dict[str, Any]:
        # every field is a number: no recursive asdict (it deep-copies; twice per gateway request)
        return {name: getattr(self, name) for name in _NAMES}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Usage:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


_NAMES = tuple(f.name for f in fields(Usage))
