"""A circuit breaker per upstream, and the wrapper that puts one in front of a remote model.

    closed ──(N consecutive failures)──▶ open ──(reset_s elapsed)──▶ half-open
       ▲                                   ▲                            │ one probe call
       └────────────(probe succeeds)───────┴──────(probe fails)─────────┘

While open, calls fail at once with `CircuitOpen` (a `ModelUnavailable`), so the gateway goes
straight to its fallback instead of waiting for timeouts. Only failures that say the upstream is
unwell count (timeouts, connection errors, 429/5xx, cut streams); a 400 is the caller's fault.
The state machine is pure (an injected clock); the wrapper only feeds it outcomes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from duetto.errors import CircuitOpen, ModelError
from duetto.messages import ChatRequest, ChatResponse, StreamChunk
from duetto.models.base import ChatModel


class CircuitBreaker:
    def __init__(
        self, failures: int = 5, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self.clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened_count = 0  # how many times it opened (metrics)

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open, exactly one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            if self._opened_at is None or self._probing:
                self.opened_count += 1
            self._opened_at = self.clock()
        self._probing = False

    def abandon(self) -> None:
        """A call ended with no verdict (cancelled): free the probe slot."""
        self._probing = False


def counts_as_failure(exc: BaseException) -> bool:
    return isinstance(exc, ModelError) and bool(exc.retryable)


class BreakerModel(ChatModel):
    """`inner` behind a circuit breaker; same card, same name, so traces do not change."""

    def __init__(self, inner: ChatModel, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.breaker = breaker
        self.card = inner.card

    def __getattr__(self, name: str) -> Any:  # what strategies probe on models (e.g. hits)
        return getattr(self.inner, name)

    def _check(self) -> None:
        if not self.breaker.allow():
            raise CircuitOpen(f"{self.card.name}: circuit open (upstream failing), not called")

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self._check()
        verdict = False
        try:
            response = await self.inner.complete(request)
        except Exception as exc:
            if counts_as_failure(exc):
                self.breaker.failure()
                verdict = True
            raise
        finally:
            if not verdict:
                self.breaker.abandon()
        self.breaker.success()
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        self._check()
        verdict = False
        try:
            async for chunk in self.inner.stream(request):
                if chunk.response is not None:
                    self.breaker.success()
                    verdict = True
                yield chunk
        except Exception as exc:
            if counts_as_failure(exc):
                self.breaker.failure()
                verdict = True
            raise
        finally:
            if not verdict:
                self.breaker.abandon()

    @property
    def children(self) -> Sequence[ChatModel]:
        return (self.inner,)

    async def aclose(self) -> None:
        await self.inner.aclose()


def leaves(model: ChatModel, *, distinct: bool = True) -> list[ChatModel]:
    """The leaf models a model or strategy may call (through wrappers and nested strategies).
    `distinct=False` keeps repeats (a model reached along two paths is listed twice)."""
    out: list[ChatModel] = []
    seen: set[int] = set()

    def walk(m: ChatModel) -> None:
        if distinct and id(m) in seen:
            return
        seen.add(id(m))
        for c in m.children:
            walk(c)
        if not m.children:
            out.append(m)

    walk(model)
    return out
