"""Call cache for evaluations: each (model, request) is computed once and reused by every
strategy that asks for it, so a report over many strategies costs one pass of real calls.

A hit returns a copy of the originally measured response (its usage and latency are those of
the real call, which is what a strategy making that call in production would pay). Copies,
because strategies annotate their children's trace steps (roles) in place."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence

from duetto.messages import ChatRequest, ChatResponse, StreamChunk
from duetto.models.base import ChatModel


class CachedModel(ChatModel):
    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.card = inner.card
        self._done: dict[str, ChatResponse] = {}
        self._pending: dict[str, asyncio.Future[ChatResponse]] = {}
        self.hits = 0
        self.misses = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        key = request.key()
        if key in self._done:
            self.hits += 1
            return copy.deepcopy(self._done[key])
        if key in self._pending:  # the same call is in flight: wait for it
            self.hits += 1
            return copy.deepcopy(await asyncio.shield(self._pending[key]))
        self.misses += 1
        fut: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            resp = await self.inner.complete(request)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it, nobody else needs it
            raise
        finally:
            self._pending.pop(key, None)
        self._done[key] = resp
        fut.set_result(resp)
        return copy.deepcopy(resp)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in self.inner.stream(request):
            yield chunk

    @property
    def children(self) -> Sequence[ChatModel]:
        return (self.inner,)

    async def aclose(self) -> None:
        await self.inner.aclose()
