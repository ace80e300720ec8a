"""A bounded background queue with its workers: what answers shadow and audit jobs.

`offer(job)` never waits and never raises: a full queue drops the job and counts it, so the
loop cannot slow a user's request or grow without bound under load. Each worker runs one job
at a time; a failing job is logged and counted, never propagated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("duetto.loop")

J = TypeVar("J")


class Background(Generic[J]):
    def __init__(
        self, name: str, size: int, workers: int, run: Callable[[J], Awaitable[None]]
    ) -> None:
        self.name = name
        self.size = size
        self.run = run
        self.n_workers = workers
        self._queue: asyncio.Queue[J] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.offered = 0
        self.dropped = 0
        self.done = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        if self._queue is not None:
            return
        self._queue = asyncio.Queue(self.size)
        self._workers = [
            asyncio.create_task(self._work(), name=f"duetto-loop-{self.name}-{i}")
            for i in range(self.n_workers)
        ]

    def offer(self, job: J) -> bool:
        """Queue `job` if there is room; False (and counted as dropped) otherwise."""
        self.offered += 1
        if self._queue is None:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued job has run (tests, and a graceful close)."""
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Give queued jobs `grace_s` seconds, then cancel the workers."""
        if self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self.drain()
        for w in self._workers:
            w.cancel()
        for w in self._workers:
            with contextlib.suppress(BaseException):
                await w
        self._workers = []
        self._queue = None

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            job = await queue.get()
            try:
                await self.run(job)
                self.done += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed += 1
                log.warning("loop %s: a background job failed", self.name, exc_info=True)
            finally:
                queue.task_done()
