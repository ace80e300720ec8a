"""What every strategy shares: it is a ChatModel whose trace nests its children's traces.

A strategy with a decision threshold (route, cascade) is `Tunable`: its `branches()` computes
*both* outcomes of its decision for one request, so that calibration can sweep thresholds
offline (RouteLLM-style) instead of re-running models (with the evaluator's call cache, every
model call is made once and reused), and its fitted state can be saved and restored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from duetto.capabilities import combine
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel, ModelCard
from duetto.strategies._compose import trace_node
from duetto.strategies.capable import reasons, refusal, sort_capable


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

    # -- capabilities: a chooser by default (some answering candidate must be capable) ----------

    @property
    def answerers(self) -> Sequence[ChatModel]:
        """The models whose output can be the answer (not verifiers, judges or teachers)."""
        return self.models

    def lacks(self, request: ChatRequest) -> list[str]:
        ok, lacks = sort_capable(self.answerers, request)
        return [] if ok else reasons(self.answerers, lacks)

    def capabilities(self) -> dict[str, Any]:
        """The union of what the answering candidates offer: a chooser can serve a request
        when one of them can (a pipeline overrides this)."""
        return combine([m.capabilities() for m in self.answerers], "union")

    def require(self, request: ChatRequest) -> None:
        """Raise MissingCapability (a 400) when no candidate can answer `request`."""
        if why := self.lacks(request):
            raise refusal(self.name, self.mode, why)


@dataclass(slots=True)
class Branches:
    """Both outcomes of a thresholded decision on one request.

    `score` is higher when the cheap branch is more likely good enough. The decision rule is:
    take `cheap` when score >= threshold, else `strong`. `strong` already includes the cost of
    anything spent before escalating (e.g. the SLM draft in a cascade)."""

    score: float
    cheap: ChatResponse
    strong: ChatResponse


# Grades an answer to the i-th calibration request: (i, answer text) -> quality in [0, 1].
Grade = Callable[[int, str], float]


@runtime_checkable
class Tunable(Protocol):
    """A strategy with a decision threshold and state that calibration fits (`duetto eval`),
    saved and re-applied by duetto.fitted. Calibration runs, in order:

    1. `await fit(requests, grade)`: the learned parts (a route's task prior, a cascade's
       learned verifier) learn from graded answers; a no-op when nothing learns.
    2. `branches(request, calibrated=False)` on every request, then
       `calibrate_scores(raw, correct)`: fits the score calibration (a cascade's isotonic or
       Platt calibrator; identity otherwise) and returns the calibrated scores.
    3. `threshold` is set to the one chosen on those scores for the target.

    `state()` is everything fitted, as JSON-ready data; `load_state(state)` restores it (and
    restarts an adaptive policy from the saved threshold)."""

    threshold: float | None

    async def branches(self, request: ChatRequest, *, calibrated: bool = True) -> Branches: ...

    async def fit(
        self, requests: Sequence[ChatRequest], grade: Grade, *, concurrency: int = 1
    ) -> None: ...

    def calibrate_scores(self, raw: Sequence[float], correct: Sequence[bool]) -> list[float]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: Mapping[str, Any]) -> None: ...


T = TypeVar("T")


async def bounded(calls: Iterable[Awaitable[T]], concurrency: int) -> list[T]:
    """Await `calls` at most `concurrency` at a time, results in order."""
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(call: Awaitable[T]) -> T:
        async with sem:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))
