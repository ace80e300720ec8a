"""What every strategy shares: it is a ChatModel whose trace nests its children's traces.

A strategy with a decision threshold (route, cascade) also implements `branches()`: it computes
*both* outcomes of its decision for one request, so that calibration can sweep thresholds
offline (RouteLLM-style) instead of re-running models. With the evaluator's call cache, every
model call is made once and reused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, runtime_checkable

from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel, ModelCard
from duetto.trace import Step
from duetto.usage import Usage

MODES = ("pipeline", "route", "cascade", "assist", "fuse", "fallback", "distill", "baseline")


class Strategy(ChatModel):
    """Base class: subclasses set `mode` and implement `complete`."""

    mode: ClassVar[str] = "baseline"
    kind: ClassVar[Literal["model", "strategy"]] = "strategy"

    def __init__(self, name: str, models: list[ChatModel]) -> None:
        self.models = models
        # Remote/untrusted if any model it may call is; prices are per call, so 0 here.
        remote = any(m.card.is_remote for m in models)
        trusted = all(m.card.trusted for m in models)
        self.card = ModelCard(name=name, location="remote" if remote else "local", trusted=trusted)

    @property
    def children(self) -> Sequence[ChatModel]:
        """The sub-models this strategy may call, in order (each once)."""
        return tuple(self.models)

    def respond(
        self,
        text: str,
        t0: float,
        children: list[ChatResponse],
        *,
        decision: str | None = None,
        score: float | None = None,
        threshold: float | None = None,
        role: str | None = None,
        extra: dict[str, object] | None = None,
        base: ChatResponse | None = None,
    ) -> ChatResponse:
        """Build this strategy's response: a trace node over its children's traces, usage summed,
        latency measured from `t0` (a time.perf_counter() value taken at the start)."""
        latency_ms = (time.perf_counter() - t0) * 1000
        step = Step(
            name=self.name,
            kind="strategy",
            mode=self.mode,
            role=role,
            decision=decision,
            score=score,
            threshold=threshold,
            latency_ms=latency_ms,
            children=[c.trace for c in children],
            extra=dict(extra or {}),
        )
        usage = step.total()
        src = base or (children[-1] if children else None)
        return ChatResponse(
            text=text,
            model=self.name,
            usage=usage,
            trace=step,
            finish_reason=src.finish_reason if src else "stop",
            logprobs=src.logprobs if src else None,
            score=score,
        )

    async def aclose(self) -> None:
        for m in self.models:
            await m.aclose()


def stream_ttft(resp: ChatResponse, out: ChatResponse, t0: float, t_call: float) -> None:
    """A streamed strategy's TTFT: its own work before the answering call (t0 → t_call, both
    perf_counter values) plus that call's TTFT."""
    if out.usage.ttft_ms is not None:
        resp.usage.ttft_ms = (t_call - t0) * 1000 + out.usage.ttft_ms


@dataclass(slots=True)
class Branches:
    """Both outcomes of a thresholded decision on one request.

    `score` is higher when the cheap branch is more likely good enough. The decision rule is:
    take `cheap` when score >= threshold, else `strong`. `strong` already includes the cost of
    anything spent before escalating (e.g. the SLM draft in a cascade)."""

    score: float
    cheap: ChatResponse
    strong: ChatResponse


@runtime_checkable
class Thresholded(Protocol):
    threshold: float | None

    async def branches(self, request: ChatRequest) -> Branches: ...


def zero_usage() -> Usage:
    return Usage()
