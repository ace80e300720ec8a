"""What every strategy shares: it is a ChatModel whose trace nests its children's traces.

A strategy with a decision threshold (route, cascade) also implements `branches()`: it computes
*both* outcomes of its decision for one request, so that calibration can sweep thresholds
offline (RouteLLM-style) instead of re-running models. With the evaluator's call cache, every
model call is made once and reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel, ModelCard
from duetto.strategies._compose import trace_node
from duetto.usage import Usage

MODES = ("pipeline", "route", "cascade", "assist", "fuse", "distill", "baseline")


class Strategy(ChatModel):
    """Base class: subclasses set `mode` and implement `complete`."""

    mode: ClassVar[str] = "baseline"

    def __init__(self, name: str, models: list[ChatModel]) -> None:
        self.models = models
        # Remote/untrusted if any model it may call is; prices are per call, so 0 here.
        remote = any(m.card.is_remote for m in models)
        trusted = all(m.card.trusted for m in models)
        self.card = ModelCard(name=name, location="remote" if remote else "local", trusted=trusted)

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
        return trace_node(
            self.name,
            self.mode,
            children,
            text=text,
            t0=t0,
            role=role,
            decision=decision,
            score=score,
            threshold=threshold,
            extra=extra,
            base=base,
        )

    async def aclose(self) -> None:
        for m in self.models:
            await m.aclose()


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
